# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write GGUF headers for tests (metadata only, no tensor data).

``build_gguf([(key, type, value), ...])`` returns the bytes of a GGUF file. ``type`` is one of the
GGUF value type numbers (``T.UINT32``, ``T.STRING``, ...); for arrays the value is
``(element_type, [items])`` (nested arrays use the same shape for their items); ``typed(dict)``
gives these triples for plain Python values. ``tensors`` are ``(name, dims, ggml_type, offset)``
infos after the metadata. ``gguf_model`` writes a small but realistic model header (architecture,
file type, context length, chat template).
"""
from __future__ import annotations

import struct


class T:
    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)


_FMT = {T.UINT8: "B", T.INT8: "b", T.UINT16: "H", T.INT16: "h", T.UINT32: "I", T.INT32: "i", T.FLOAT32: "f",
        T.BOOL: "?", T.UINT64: "Q", T.INT64: "q", T.FLOAT64: "d"}


def _string(value: str | bytes, e: str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack(e + "Q", len(data)) + data


def _value(vtype: int, value, e: str) -> bytes:
    if vtype in _FMT:
        return struct.pack(e + _FMT[vtype], value)
    if vtype == T.STRING:
        return _string(value, e)
    if vtype == T.ARRAY:
        etype, items = value
        return struct.pack(e + "IQ", etype, len(items)) + b"".join(_value(etype, item, e) for item in items)
    raise ValueError(f"unknown GGUF value type {vtype}")


def typed(metadata: dict) -> list:
    """``(key, type, value)`` for plain values: bool, int (UINT32, else INT64), float (FLOAT32), str,
    a list of str (ARRAY of STRING) or of int (ARRAY of INT32)."""
    out = []
    for key, v in metadata.items():
        if isinstance(v, bool):
            out.append((key, T.BOOL, v))
        elif isinstance(v, int):
            out.append((key, T.UINT32, v) if 0 <= v < 1 << 32 else (key, T.INT64, v))
        elif isinstance(v, float):
            out.append((key, T.FLOAT32, v))
        elif isinstance(v, str):
            out.append((key, T.STRING, v))
        elif isinstance(v, list):
            out.append((key, T.ARRAY, (T.STRING if all(isinstance(x, str) for x in v) else T.INT32, v)))
        else:
            raise TypeError(f"no GGUF type for {v!r}")
    return out


def build_gguf(kvs, version: int = 3, endian: str = "<", tensor_count: int | None = None, tensors=()) -> bytes:
    count = len(tensors) if tensor_count is None else tensor_count
    out = [b"GGUF", struct.pack(endian + "IQQ", version, count, len(kvs))]
    for key, vtype, value in kvs:
        out.append(_string(key, endian) + struct.pack(endian + "I", vtype) + _value(vtype, value, endian))
    for name, dims, ggml_type, offset in tensors:
        out.append(_string(name, endian) + struct.pack(endian + "I" + "Q" * len(dims), len(dims), *dims)
                   + struct.pack(endian + "IQ", ggml_type, offset))
    return b"".join(out)


def gguf_model(arch: str = "llama", file_type: int | None = 15, context_length: int | None = 8192,
               chat_template: str | None = None, extra=()) -> bytes:
    kvs = [("general.architecture", T.STRING, arch), ("general.name", T.STRING, f"test {arch}")]
    if file_type is not None:
        kvs.append(("general.file_type", T.UINT32, file_type))
    if context_length is not None:
        kvs.append((f"{arch}.context_length", T.UINT32, context_length))
    kvs.append((f"{arch}.block_count", T.UINT32, 2))
    kvs.append(("tokenizer.ggml.tokens", T.ARRAY, (T.STRING, ["<unk>", "<s>", "</s>", "hi"])))
    kvs.append(("tokenizer.ggml.scores", T.ARRAY, (T.FLOAT32, [0.0, 0.0, 0.0, -1.5])))
    kvs.append(("tokenizer.ggml.bos_token_id", T.UINT32, 1))
    kvs.append(("tokenizer.ggml.eos_token_id", T.UINT32, 2))
    if chat_template is not None:
        kvs.append(("tokenizer.chat_template", T.STRING, chat_template))
    kvs.extend(extra)
    return build_gguf(kvs, tensor_count=3)
