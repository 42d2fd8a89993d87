# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small, bounded reader of GGUF metadata (the header of llama.cpp / Ollama model files).

Layout (GGUF versions 2 and 3, little- or big-endian)::

    magic "GGUF" | version u32 | tensor_count u64 | metadata_kv_count u64 | kv * count | tensor infos ...
    kv    = key (string) | value_type u32 | value
    string = length u64 | UTF-8 bytes
    array  = element_type u32 | count u64 | element * count

Value types: 0 uint8, 1 int8, 2 uint16, 3 int16, 4 uint32, 5 int32, 6 float32, 7 bool, 8 string,
9 array, 10 uint64, 11 int64, 12 float64.

Only the metadata is read, never the tensors. Files are untrusted: every length is checked against
the bytes left in the file and against fixed bounds before anything is allocated, arrays keep at
most ``max_array_items`` elements (the rest is skipped and its length recorded), and the total
number of values is bounded, so a hostile file cannot make the reader allocate gigabytes or loop
for long. Anything malformed raises ``GGUFError`` naming the file and the offset.
"""
from __future__ import annotations

import os
import struct

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_KEY_BYTES = 64 * 1024
MAX_STRING_BYTES = 16 * 1024 * 1024
MAX_KV_COUNT = 100_000
MAX_TOTAL_VALUES = 5_000_000
MAX_ARRAY_DEPTH = 4
DEFAULT_MAX_ARRAY_ITEMS = 4096

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
TYPE_NAMES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array",
              "uint64", "int64", "float64")
_FIXED = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i", FLOAT32: "f", BOOL: "B",
          UINT64: "Q", INT64: "q", FLOAT64: "d"}

# llama.cpp's ``enum llama_ftype`` (include/llama.h; gguf-py LlamaFileType), the value of
# ``general.file_type``, by the names Ollama reports as ``quantization_level``.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}
FILE_TYPE_GUESSED = 1024


class GGUFError(VenomError):
    """A file is not GGUF, or its metadata is malformed or beyond the reader's bounds."""


def file_type_name(value) -> str | None:
    """The quantization name of a ``general.file_type`` value; None when unknown or only guessed."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return FILE_TYPES.get(value)


class GGUFMetadata:
    """The parsed header: ``version``, ``tensor_count``, ``metadata`` (key → value), ``types``
    (key → type name) and ``truncated_arrays`` (key → full length for arrays cut at the bound)."""

    def __init__(self, path, version, tensor_count, endian, metadata, types, truncated_arrays):
        self.path = path
        self.version = version
        self.tensor_count = tensor_count
        self.endian = endian
        self.metadata = metadata
        self.types = types
        self.truncated_arrays = truncated_arrays

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) and arch else None

    @property
    def file_type(self) -> int | None:
        value = self.metadata.get("general.file_type")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def quantization(self) -> str | None:
        return file_type_name(self.file_type)

    @property
    def context_length(self) -> int | None:
        if not self.architecture:
            return None
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    def chat_templates(self) -> dict:
        """Every chat template in the file: ``default`` plus named ones (``tokenizer.chat_template.<name>``)."""
        out = {}
        if self.chat_template:
            out["default"] = self.chat_template
        prefix = "tokenizer.chat_template."
        for key, value in self.metadata.items():
            if key.startswith(prefix) and isinstance(value, str) and value.strip():
                out[key[len(prefix):]] = value
        return out

    def token(self, key: str) -> str | None:
        """A special token's text from its id (``tokenizer.ggml.bos_token_id`` → tokens[id]), if present."""
        tid = self.metadata.get(f"tokenizer.ggml.{key}_token_id")
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tid, int) and isinstance(tokens, list) and 0 <= tid < len(tokens) \
                and "tokenizer.ggml.tokens" not in self.truncated_arrays:
            return tokens[tid] if isinstance(tokens[tid], str) else None
        return None


class _Reader:
    def __init__(self, fh, path, size, max_array_items):
        self.fh = fh
        self.path = path
        self.size = size
        self.pos = 0
        self.endian = "<"
        self.max_array_items = max_array_items
        self.values = 0

    def fail(self, problem: str):
        raise GGUFError(f"{self.path} is not a valid GGUF file: {problem} (at byte {self.pos}).",
                        fix="Check that the file is a complete GGUF model (re-download it if the transfer "
                            "broke); files from other tools or truncated downloads are refused.")

    def read(self, n: int) -> bytes:
        if n < 0 or n > self.size - self.pos:
            self.fail(f"needs {n} more bytes but only {max(self.size - self.pos, 0)} remain")
        data = self.fh.read(n)
        if len(data) != n:
            self.fail("the file ended early")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n < 0 or n > self.size - self.pos:
            self.fail(f"needs {n} more bytes but only {max(self.size - self.pos, 0)} remain")
        self.fh.seek(n, os.SEEK_CUR)
        self.pos += n

    def fixed(self, vtype: int):
        fmt = self.endian + _FIXED[vtype]
        (value,) = struct.unpack(fmt, self.read(struct.calcsize(fmt)))
        if vtype == BOOL:
            if value not in (0, 1):
                self.fail(f"a bool holds the byte {value}")
            return bool(value)
        return value

    def u32(self) -> int:
        return self.fixed(UINT32)

    def u64(self) -> int:
        return self.fixed(UINT64)

    def string(self, limit: int = MAX_STRING_BYTES, keep: bool = True):
        n = self.u64()
        if n > limit:
            self.fail(f"a string of {n} bytes is longer than the bound of {limit}")
        if not keep:
            self.skip(n)
            return None
        return self.read(n).decode("utf-8", errors="replace")

    def count_value(self):
        self.values += 1
        if self.values > MAX_TOTAL_VALUES:
            self.fail(f"more than {MAX_TOTAL_VALUES} metadata values")

    def value(self, vtype: int, depth: int = 0, keep: bool = True):
        self.count_value()
        if vtype in _FIXED:
            if not keep:
                self.skip(struct.calcsize(_FIXED[vtype]))
                return None
            return self.fixed(vtype)
        if vtype == STRING:
            return self.string(keep=keep)
        if vtype == ARRAY:
            return self.array(depth + 1, keep)
        self.fail(f"unknown value type {vtype}")
        return None  # not reached

    def array(self, depth: int, keep: bool):
        if depth > MAX_ARRAY_DEPTH:
            self.fail(f"arrays nested deeper than {MAX_ARRAY_DEPTH}")
        etype = self.u32()
        count = self.u64()
        if etype not in _FIXED and etype not in (STRING, ARRAY):
            self.fail(f"an array of unknown element type {etype}")
        min_size = struct.calcsize(_FIXED[etype]) if etype in _FIXED else 8 if etype == STRING else 12
        if count * min_size > self.size - self.pos:
            self.fail(f"an array of {count} elements does not fit in the rest of the file")
        if count > MAX_TOTAL_VALUES:
            self.fail(f"an array of {count} elements is beyond the bound of {MAX_TOTAL_VALUES}")
        kept = min(count, self.max_array_items) if keep else 0
        if etype in _FIXED and etype != BOOL:
            size = struct.calcsize(_FIXED[etype])
            items = list(struct.unpack(f"{self.endian}{kept}{_FIXED[etype]}", self.read(kept * size))) if kept else []
            self.skip((count - kept) * size)
            self.values += count
            if self.values > MAX_TOTAL_VALUES:
                self.fail(f"more than {MAX_TOTAL_VALUES} metadata values")
        else:
            items = []
            for i in range(count):
                item = self.value(etype, depth, keep=(i < kept))
                if i < kept:
                    items.append(list(item) if isinstance(item, _Array) else item)
        return _Array(items, count)


class _Array(list):
    """A list that remembers the length it had in the file."""

    def __init__(self, items, total):
        super().__init__(items)
        self.total = total


def read_gguf_metadata(path, max_array_items: int = DEFAULT_MAX_ARRAY_ITEMS) -> GGUFMetadata:
    """Read the metadata of the GGUF file at ``path``. Any problem (missing, unreadable, malformed) raises GGUFError."""
    try:
        fh = open(path, "rb")  # pylint: disable=consider-using-with
    except OSError as exc:
        raise GGUFError(f"Cannot open {path}: {exc.strerror or exc}.",
                        fix="Check the path and that the file is readable by the user running the task.") from None
    with fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            return _parse(_Reader(fh, path, size, max_array_items))
        except OSError as exc:
            raise GGUFError(f"Cannot read {path}: {exc.strerror or exc}.",
                            fix="Check that the file is readable and the disk is healthy.") from None


def _parse(r: _Reader) -> GGUFMetadata:
    if r.read(4) != MAGIC:
        r.pos = 0
        r.fail("it does not start with the GGUF magic bytes")
    raw = r.read(4)
    version = struct.unpack("<I", raw)[0]
    if version & 0xFFFF == 0 and version != 0:
        r.endian = ">"
        version = struct.unpack(">I", raw)[0]
    if version == 1:
        r.fail("GGUF version 1 is obsolete and not supported (convert the model again with a current llama.cpp)")
    if version not in SUPPORTED_VERSIONS:
        r.fail(f"unsupported GGUF version {version} (supported: 2, 3)")
    tensor_count = r.u64()
    kv_count = r.u64()
    if kv_count > MAX_KV_COUNT:
        r.fail(f"{kv_count} metadata entries is beyond the bound of {MAX_KV_COUNT}")
    if kv_count * 13 > r.size - r.pos:
        r.fail(f"{kv_count} metadata entries do not fit in the rest of the file")
    metadata, types, truncated = {}, {}, {}
    for _index in range(kv_count):
        key = r.string(limit=MAX_KEY_BYTES)
        vtype = r.u32()
        if vtype > FLOAT64:
            r.fail(f"key {key!r} has unknown value type {vtype}")
        value = r.value(vtype)
        if key in metadata:
            r.fail(f"key {key!r} appears twice")
        if isinstance(value, _Array):
            if value.total > len(value):
                truncated[key] = value.total
            value = list(value)
        metadata[key] = value
        types[key] = TYPE_NAMES[vtype]
    return GGUFMetadata(r.path, version, tensor_count, "little" if r.endian == "<" else "big", metadata, types,
                        truncated)
