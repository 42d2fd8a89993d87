# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import math
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.venom.models.plugins.module_utils.capabilities import gguf as _gguf
from ansible_collections.venom.models.plugins.module_utils.capabilities.gguf import (
    FILE_TYPES, GGUFError, file_type_name, read_gguf_metadata)
from tests.lib.gguf_writer import T, build_gguf, gguf_model


def _write(tmp_path, data: bytes, name="m.gguf"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_model_header_fields(tmp_path):
    path = _write(tmp_path, gguf_model("qwen2", file_type=15, context_length=32768, chat_template="{{ x }}"))
    meta = read_gguf_metadata(path)
    assert meta.version == 3 and meta.tensor_count == 3 and meta.endian == "little"
    assert meta.architecture == "qwen2"
    assert meta.file_type == 15 and meta.quantization == "Q4_K_M"
    assert meta.context_length == 32768
    assert meta.chat_template == "{{ x }}"
    assert meta.token("bos") == "<s>" and meta.token("eos") == "</s>"
    assert meta.types["general.file_type"] == "uint32" and meta.types["tokenizer.ggml.tokens"] == "array"


def test_missing_fields_are_none(tmp_path):
    meta = read_gguf_metadata(_write(tmp_path, gguf_model("llama", file_type=None, context_length=None)))
    assert meta.file_type is None and meta.quantization is None and meta.context_length is None
    assert meta.chat_template is None and meta.chat_templates() == {}


@pytest.mark.parametrize("value,name", [(0, "F32"), (1, "F16"), (2, "Q4_0"), (7, "Q8_0"), (10, "Q2_K"),
                                        (15, "Q4_K_M"), (17, "Q5_K_M"), (18, "Q6_K"), (30, "IQ4_XS"),
                                        (32, "BF16"), (38, "MXFP4_MOE")])
def test_file_type_names_follow_llama_cpp(value, name):
    assert file_type_name(value) == name


@pytest.mark.parametrize("value", [4, 5, 6, 33, 34, 35, 999, 1024 + 15, -1, True, "15", None])
def test_unknown_removed_or_guessed_file_types_are_none(value):
    assert file_type_name(value) is None


def test_every_value_type_round_trips_v2_v3_and_big_endian(tmp_path):
    kvs = [
        ("u8", T.UINT8, 255), ("i8", T.INT8, -128), ("u16", T.UINT16, 65535), ("i16", T.INT16, -32768),
        ("u32", T.UINT32, 2 ** 32 - 1), ("i32", T.INT32, -2 ** 31), ("f32", T.FLOAT32, 1.5),
        ("b", T.BOOL, True), ("s", T.STRING, "héllo ✓"), ("u64", T.UINT64, 2 ** 64 - 1),
        ("i64", T.INT64, -2 ** 63), ("f64", T.FLOAT64, math.pi),
        ("arr", T.ARRAY, (T.INT32, [1, -2, 3])), ("strs", T.ARRAY, (T.STRING, ["a", "", "c"])),
        ("bools", T.ARRAY, (T.BOOL, [True, False])),
        ("nested", T.ARRAY, (T.ARRAY, [(T.UINT8, [1, 2]), (T.STRING, ["x"])])),
        ("empty", T.ARRAY, (T.FLOAT64, [])),
    ]
    for version in (2, 3):
        for endian in ("<", ">"):
            meta = read_gguf_metadata(_write(tmp_path, build_gguf(kvs, version=version, endian=endian)))
            assert meta.version == version
            assert meta.endian == ("little" if endian == "<" else "big")
            got = meta.metadata
            assert got["u8"] == 255 and got["i8"] == -128 and got["u16"] == 65535 and got["i16"] == -32768
            assert got["u32"] == 2 ** 32 - 1 and got["i32"] == -2 ** 31 and got["f32"] == 1.5
            assert got["b"] is True and got["s"] == "héllo ✓"
            assert got["u64"] == 2 ** 64 - 1 and got["i64"] == -2 ** 63 and got["f64"] == math.pi
            assert got["arr"] == [1, -2, 3] and got["strs"] == ["a", "", "c"] and got["bools"] == [True, False]
            assert got["nested"] == [[1, 2], ["x"]] and got["empty"] == []
            assert meta.truncated_arrays == {}


def test_long_arrays_are_cut_at_the_bound_and_recorded(tmp_path):
    kvs = [("big", T.ARRAY, (T.UINT32, list(range(5000)))),
           ("words", T.ARRAY, (T.STRING, [f"w{i}" for i in range(3000)])),
           ("after", T.STRING, "still read")]
    meta = read_gguf_metadata(_write(tmp_path, build_gguf(kvs)), max_array_items=100)
    assert meta.metadata["big"] == list(range(100)) and meta.metadata["words"][-1] == "w99"
    assert meta.truncated_arrays == {"big": 5000, "words": 3000}
    assert meta.metadata["after"] == "still read"


def test_named_chat_templates(tmp_path):
    path = _write(tmp_path, gguf_model(chat_template="A", extra=[("tokenizer.chat_template.tool_use", T.STRING, "B")]))
    assert read_gguf_metadata(path).chat_templates() == {"default": "A", "tool_use": "B"}


@pytest.mark.parametrize("data,words", [
    (b"", "remain"),
    (b"GGML" + b"\0" * 40, "magic"),
    (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "version 1 is obsolete"),
    (b"GGUF" + struct.pack("<IQQ", 7, 0, 0), "unsupported GGUF version 7"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 2 ** 63), "beyond the bound"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1000), "do not fit"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2 ** 60) + b"k" * 20, "longer than the bound"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1000) + b"k" * 20, "remain"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99) + b"\0" * 8,
     "unknown value type 99"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", T.STRING)
     + struct.pack("<Q", 2 ** 62), "longer than the bound"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", T.ARRAY, T.UINT64, 2 ** 61),
     "does not fit"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IB", T.BOOL, 7) + b"\0" * 8,
     "bool holds the byte 7"),
])
def test_malformed_files_are_refused_with_a_clear_error(tmp_path, data, words):
    tracemalloc.start()
    try:
        with pytest.raises(GGUFError) as err:
            read_gguf_metadata(_write(tmp_path, data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert words in err.value.msg and "m.gguf" in err.value.msg and err.value.fix
    assert peak < 1024 * 1024


def test_duplicate_keys_and_deep_nesting_are_refused(tmp_path):
    dup = build_gguf([("k", T.UINT8, 1), ("k", T.UINT8, 2)])
    with pytest.raises(GGUFError, match="appears twice"):
        read_gguf_metadata(_write(tmp_path, dup))
    value = (T.UINT8, [1])
    for _depth in range(6):
        value = (T.ARRAY, [value])
    with pytest.raises(GGUFError, match="nested deeper"):
        read_gguf_metadata(_write(tmp_path, build_gguf([("deep", T.ARRAY, value)])))


def test_every_truncation_of_a_valid_file_is_a_clear_error(tmp_path):
    data = gguf_model("gemma2", chat_template="{{ messages }}")
    meta_end = len(data)
    for cut in range(0, meta_end):
        with pytest.raises(GGUFError):
            read_gguf_metadata(_write(tmp_path, data[:cut]))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(GGUFError, match="Cannot open"):
        read_gguf_metadata(str(tmp_path / "absent.gguf"))
    with pytest.raises(GGUFError, match="Cannot"):
        read_gguf_metadata(str(tmp_path))


def test_total_value_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(_gguf, "MAX_TOTAL_VALUES", 50)
    data = build_gguf([("a", T.ARRAY, (T.UINT8, list(range(40)))), ("b", T.ARRAY, (T.UINT8, list(range(40))))])
    with pytest.raises(GGUFError, match="more than 50 metadata values"):
        read_gguf_metadata(_write(tmp_path, data))


# --- property tests ------------------------------------------------------------------------------

_scalar = st.one_of(
    st.tuples(st.just(T.UINT8), st.integers(0, 255)), st.tuples(st.just(T.INT8), st.integers(-128, 127)),
    st.tuples(st.just(T.UINT16), st.integers(0, 65535)), st.tuples(st.just(T.INT16), st.integers(-32768, 32767)),
    st.tuples(st.just(T.UINT32), st.integers(0, 2 ** 32 - 1)), st.tuples(st.just(T.INT32), st.integers(-2 ** 31, 2 ** 31 - 1)),
    st.tuples(st.just(T.UINT64), st.integers(0, 2 ** 64 - 1)), st.tuples(st.just(T.INT64), st.integers(-2 ** 63, 2 ** 63 - 1)),
    st.tuples(st.just(T.FLOAT64), st.floats(allow_nan=False)), st.tuples(st.just(T.BOOL), st.booleans()),
    st.tuples(st.just(T.FLOAT32), st.floats(width=32, allow_nan=False)),
    st.tuples(st.just(T.STRING), st.text(max_size=40)),
)
_array = st.one_of(
    st.tuples(st.just(T.ARRAY), st.tuples(st.just(T.UINT16), st.lists(st.integers(0, 65535), max_size=20))),
    st.tuples(st.just(T.ARRAY), st.tuples(st.just(T.STRING), st.lists(st.text(max_size=10), max_size=10))),
    st.tuples(st.just(T.ARRAY), st.tuples(st.just(T.INT64), st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=10))),
)


def _expected(vtype, value):
    if vtype == T.ARRAY:
        return [_expected(value[0], v) for v in value[1]]
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(st.text(min_size=1, max_size=30), st.one_of(_scalar, _array), max_size=12),
       version=st.sampled_from([2, 3]), endian=st.sampled_from(["<", ">"]))
def test_writer_reader_round_trip(tmp_path, entries, version, endian):
    kvs = [(k, vt, v) for k, (vt, v) in entries.items()]
    meta = read_gguf_metadata(_write(tmp_path, build_gguf(kvs, version=version, endian=endian)))
    assert meta.version == version
    for key, vtype, value in kvs:
        assert meta.metadata[key] == _expected(vtype, value)
        assert meta.types[key] == _gguf.TYPE_NAMES[vtype]
    assert set(meta.metadata) == set(entries)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=300),
       prefix=st.sampled_from([b"", b"GGUF", b"GGUF\x03\x00\x00\x00", b"GGUF\x00\x00\x00\x02", b"GGUF\x02\x00\x00\x00"]))
def test_random_bytes_never_crash_nor_allocate(tmp_path, tail, prefix):
    tracemalloc.start()
    try:
        try:
            read_gguf_metadata(_write(tmp_path, prefix + tail))
        except GGUFError as exc:
            assert exc.msg and exc.fix
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_valid_files_never_crash(tmp_path, data):
    blob = bytearray(gguf_model("llama", chat_template="{{ messages }}"))
    for _change in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        meta = read_gguf_metadata(_write(tmp_path, bytes(blob)))
    except GGUFError:
        return
    assert isinstance(meta.metadata, dict)


def test_known_file_types_are_unique_names():
    assert len(set(FILE_TYPES.values())) == len(FILE_TYPES)
