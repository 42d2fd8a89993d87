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


# --- bounds, one at a time, at the limit and one past it ----------------------------------------------

def _header(kv_count, version=3, tensor_count=0, endian="<"):
    return b"GGUF" + struct.pack(endian + "IQQ", version, tensor_count, kv_count)


def _kv(key: bytes, vtype: int, payload: bytes, endian="<") -> bytes:
    return struct.pack(endian + "Q", len(key)) + key + struct.pack(endian + "I", vtype) + payload


def _refused(tmp_path, data) -> str:
    with pytest.raises(GGUFError) as err:
        read_gguf_metadata(_write(tmp_path, data))
    assert err.value.fix
    return err.value.msg


def test_the_bounds_are_those_documented():
    assert (_gguf.MAX_KEY_BYTES, _gguf.MAX_STRING_BYTES, _gguf.MAX_KV_COUNT) == (65536, 16777216, 100000)
    assert (_gguf.MAX_TOTAL_VALUES, _gguf.MAX_ARRAY_DEPTH, _gguf.DEFAULT_MAX_ARRAY_ITEMS) == (5000000, 4, 4096)


def test_keys_of_up_to_64_kib_are_read(tmp_path):
    key = "k" * 65536
    assert read_gguf_metadata(_write(tmp_path, build_gguf([(key, T.UINT8, 1)]))).metadata == {key: 1}
    assert "a string of 65537 bytes is longer than the bound of 65536" in _refused(
        tmp_path, build_gguf([(key + "k", T.UINT8, 1)]))


def test_string_values_of_up_to_16_mib_are_read(tmp_path):
    text = "v" * (16 * 1024 * 1024)
    assert read_gguf_metadata(_write(tmp_path, build_gguf([("s", T.STRING, text)]))).metadata["s"] == text
    assert "a string of 16777217 bytes is longer than the bound of 16777216" in _refused(
        tmp_path, build_gguf([("s", T.STRING, text + "v")]))


def test_skipped_strings_in_long_arrays_are_bounded_too(tmp_path):
    data = build_gguf([("a", T.ARRAY, (T.STRING, ["x", "y" * 100]))])
    assert read_gguf_metadata(_write(tmp_path, data), max_array_items=1).metadata["a"] == ["x"]
    head = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.STRING, 2) + struct.pack("<Q", 1) + b"x"
                            + struct.pack("<Q", 2 ** 40) + b"\0" * 32)
    assert "longer than the bound" in _refused(tmp_path, head)


def test_up_to_100000_entries_are_read(tmp_path):
    kvs = [(f"k{i}", T.UINT8, i % 256) for i in range(100000)]
    meta = read_gguf_metadata(_write(tmp_path, build_gguf(kvs)))
    assert len(meta.metadata) == 100000 and meta.metadata["k99999"] == 99999 % 256
    assert "100001 metadata entries is beyond the bound of 100000" in _refused(
        tmp_path, _header(100001) + b"\0" * (13 * 100001))


def test_the_smallest_entry_is_13_bytes(tmp_path):
    smallest = _kv(b"", T.UINT8, b"\x07")
    assert len(smallest) == 13
    assert read_gguf_metadata(_write(tmp_path, _header(1) + smallest)).metadata == {"": 7}
    assert "1 metadata entries do not fit" in _refused(tmp_path, _header(1) + smallest[:-1])
    two = _kv(b"", T.UINT8, b"\x07") + _kv(b"b", T.UINT8, b"\x08")
    assert read_gguf_metadata(_write(tmp_path, _header(2) + two)).metadata == {"": 7, "b": 8}


def test_value_type_12_is_the_last_known_one(tmp_path):
    data = _header(1) + _kv(b"f", 12, struct.pack("<d", 2.5))
    assert read_gguf_metadata(_write(tmp_path, data)).metadata == {"f": 2.5}
    assert read_gguf_metadata(_write(tmp_path, data)).types == {"f": "float64"}
    assert "key 'f' has unknown value type 13" in _refused(tmp_path, _header(1) + _kv(b"f", 13, b"\0" * 8))


def test_arrays_of_unknown_element_types_are_refused(tmp_path):
    data = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", 13, 1) + b"\0" * 16)
    assert "an array of unknown element type 13" in _refused(tmp_path, data)
    data = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", 12, 1) + struct.pack("<d", 1.5))
    assert read_gguf_metadata(_write(tmp_path, data)).metadata == {"a": [1.5]}


def test_arrays_nest_four_deep_at_most(tmp_path):
    def nested(levels):
        value = (T.UINT8, [1])
        for _level in range(levels - 1):
            value = (T.ARRAY, [value])
        return build_gguf([("deep", T.ARRAY, value)])
    assert read_gguf_metadata(_write(tmp_path, nested(4))).metadata["deep"] == [[[[1]]]]
    assert "arrays nested deeper than 4" in _refused(tmp_path, nested(5))


def test_arrays_keep_4096_items_by_default_and_record_longer_ones(tmp_path):
    exact = read_gguf_metadata(_write(tmp_path, build_gguf([("a", T.ARRAY, (T.UINT16, list(range(4096))))])))
    assert exact.metadata["a"] == list(range(4096)) and exact.truncated_arrays == {}
    longer = read_gguf_metadata(_write(tmp_path, build_gguf([("a", T.ARRAY, (T.UINT16, list(range(4097)))),
                                                             ("b", T.UINT8, 5)])))
    assert longer.metadata["a"] == list(range(4096)) and longer.truncated_arrays == {"a": 4097}
    assert longer.metadata["b"] == 5 and isinstance(longer.metadata["a"], list)


def test_nested_arrays_are_plain_lists_cut_at_the_bound(tmp_path):
    data = build_gguf([("n", T.ARRAY, (T.ARRAY, [(T.UINT8, [1, 2, 3]), (T.UINT8, [4]), (T.UINT8, [5])]))])
    meta = read_gguf_metadata(_write(tmp_path, data), max_array_items=2)
    assert meta.metadata["n"] == [[1, 2], [4]] and isinstance(meta.metadata["n"][0], list)
    assert meta.truncated_arrays == {"n": 3}


def test_an_array_that_exactly_fills_the_rest_of_the_file_is_read(tmp_path):
    for etype, items, size in ((T.UINT32, [1, 2], 4), (T.STRING, ["", ""], 8), (T.ARRAY, [(T.UINT8, [])] * 2, 12)):
        data = build_gguf([("a", T.ARRAY, (etype, items))])
        assert read_gguf_metadata(_write(tmp_path, data)).metadata["a"] in ([1, 2], ["", ""], [[], []])
        head = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", etype, 3)) + b"\0" * (2 * size + size - 1)
        assert "an array of 3 elements does not fit in the rest of the file" in _refused(tmp_path, head)


def test_the_total_number_of_values_is_bounded_at_five_million(tmp_path):
    def array_of(count):
        return _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.UINT8, count)) + b"\0" * count
    meta = read_gguf_metadata(_write(tmp_path, array_of(4999999)))
    assert len(meta.metadata["a"]) == 4096 and meta.truncated_arrays == {"a": 4999999}
    assert "more than 5000000 metadata values" in _refused(tmp_path, array_of(5000000))
    assert "an array of 5000001 elements is beyond the bound of 5000000" in _refused(tmp_path, array_of(5000001))


def test_the_total_value_bound_is_inclusive(tmp_path, monkeypatch):
    monkeypatch.setattr(_gguf, "MAX_TOTAL_VALUES", 50)
    ok = build_gguf([("a", T.ARRAY, (T.UINT8, list(range(24)))), ("b", T.ARRAY, (T.UINT8, list(range(24))))])
    assert len(read_gguf_metadata(_write(tmp_path, ok)).metadata) == 2
    strings = build_gguf([("a", T.ARRAY, (T.STRING, ["x"] * 49))])
    assert read_gguf_metadata(_write(tmp_path, strings)).metadata["a"] == ["x"] * 49
    assert "more than 50 metadata values" in _refused(tmp_path, build_gguf([("a", T.ARRAY, (T.STRING, ["x"] * 50))]))
    assert "more than 50 metadata values" in _refused(
        tmp_path, build_gguf([(f"k{i}", T.UINT8, 1) for i in range(51)]))


def test_bools_in_arrays_are_checked(tmp_path):
    data = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.BOOL, 2) + b"\x01\x02")
    assert "a bool holds the byte 2" in _refused(tmp_path, data)
    skipped = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.BOOL, 2) + b"\x01\x00")
    assert read_gguf_metadata(_write(tmp_path, skipped), max_array_items=1).metadata["a"] == [True]


def test_big_endian_arrays_and_tensor_count(tmp_path):
    data = build_gguf([("a", T.ARRAY, (T.INT32, [1, -2])), ("s", T.STRING, "x")], endian=">", tensor_count=7)
    meta = read_gguf_metadata(_write(tmp_path, data))
    assert meta.endian == "big" and meta.tensor_count == 7 and meta.metadata == {"a": [1, -2], "s": "x"}


@pytest.mark.parametrize("version,words", [(0, "unsupported GGUF version 0"), (4, "unsupported GGUF version 4"),
                                           (1, "version 1 is obsolete")])
def test_versions_other_than_2_and_3_are_refused(tmp_path, version, words):
    assert words in _refused(tmp_path, _header(0, version=version))
    assert words in _refused(tmp_path, _header(0, version=version, endian=">"))


def test_errors_name_the_byte_where_the_problem_is(tmp_path):
    assert "(at byte 0)" in _refused(tmp_path, b"GGML" + b"\0" * 40)
    assert "needs 4 more bytes but only 2 remain (at byte 4)" in _refused(tmp_path, b"GGUF\x03\x00")
    assert "needs 8 more bytes but only 0 remain (at byte 16)" in _refused(tmp_path, b"GGUF" + struct.pack("<IQ", 3, 0))
    assert "needs 4 more bytes but only 0 remain (at byte 0)" in _refused(tmp_path, b"")


def test_a_header_with_no_entries_is_valid(tmp_path):
    meta = read_gguf_metadata(_write(tmp_path, _header(0, version=2, tensor_count=5)))
    assert (meta.version, meta.tensor_count, meta.metadata, meta.types) == (2, 5, {}, {})
    assert meta.path.endswith("m.gguf") and meta.get("x", "d") == "d"


@pytest.mark.parametrize("extra,expected", [
    ([("general.architecture", T.STRING, "")], (None, None)),
    ([("general.architecture", T.UINT8, 3)], (None, None)),
    ([("general.architecture", T.STRING, "phi"), ("phi.context_length", T.UINT32, 0)], ("phi", None)),
    ([("general.architecture", T.STRING, "phi"), ("phi.context_length", T.BOOL, True)], ("phi", None)),
    ([("general.architecture", T.STRING, "phi"), ("phi.context_length", T.UINT32, 1)], ("phi", 1)),
])
def test_architecture_and_context_length_must_be_meaningful(tmp_path, extra, expected):
    meta = read_gguf_metadata(_write(tmp_path, build_gguf(extra)))
    assert (meta.architecture, meta.context_length) == expected


def test_file_type_must_be_an_integer(tmp_path):
    assert read_gguf_metadata(_write(tmp_path, build_gguf([("general.file_type", T.BOOL, True)]))).file_type is None
    assert read_gguf_metadata(_write(tmp_path, build_gguf([("general.file_type", T.STRING, "15")]))).file_type is None
    meta = read_gguf_metadata(_write(tmp_path, build_gguf([("general.file_type", T.UINT32, 0)])))
    assert meta.file_type == 0 and meta.quantization == "F32"


def test_blank_chat_templates_are_ignored(tmp_path):
    data = build_gguf([("tokenizer.chat_template", T.STRING, "  \n"), ("tokenizer.chat_template.rag", T.STRING, " "),
                       ("tokenizer.chat_template.tools", T.STRING, "T"), ("tokenizer.chat_template.n", T.UINT8, 1),
                       ("tokenizer.chat_templatex", T.STRING, "X")])
    meta = read_gguf_metadata(_write(tmp_path, data))
    assert meta.chat_template is None and meta.chat_templates() == {"tools": "T"}


@pytest.mark.parametrize("tid,expected", [(0, "<unk>"), (3, "hi"), (4, None), (-1, None)])
def test_special_tokens_need_an_id_within_the_token_list(tmp_path, tid, expected):
    data = build_gguf([("tokenizer.ggml.tokens", T.ARRAY, (T.STRING, ["<unk>", "<s>", "</s>", "hi"])),
                       ("tokenizer.ggml.bos_token_id", T.INT32, tid)])
    assert read_gguf_metadata(_write(tmp_path, data)).token("bos") == expected


def test_special_tokens_are_not_taken_from_a_cut_or_non_text_token_list(tmp_path):
    data = build_gguf([("tokenizer.ggml.tokens", T.ARRAY, (T.STRING, ["a", "b", "c"])),
                       ("tokenizer.ggml.eos_token_id", T.UINT32, 1)])
    assert read_gguf_metadata(_write(tmp_path, data)).token("eos") == "b"
    assert read_gguf_metadata(_write(tmp_path, data), max_array_items=2).token("eos") is None
    numbers = build_gguf([("tokenizer.ggml.tokens", T.ARRAY, (T.UINT8, [1, 2])),
                          ("tokenizer.ggml.eos_token_id", T.UINT32, 1)])
    assert read_gguf_metadata(_write(tmp_path, numbers)).token("eos") is None
    assert read_gguf_metadata(_write(tmp_path, numbers)).token("bos") is None


def test_invalid_utf8_in_strings_is_read_with_replacement_characters(tmp_path):
    data = _header(1) + _kv(b"k\xff", T.STRING, struct.pack("<Q", 2) + b"a\xfe")
    assert read_gguf_metadata(_write(tmp_path, data)).metadata == {"k\ufffd": "a\ufffd"}


def test_a_read_error_is_reported_as_a_gguf_error(tmp_path, monkeypatch):
    path = _write(tmp_path, gguf_model())

    def broken(_reader):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(_gguf, "_parse", broken)
    with pytest.raises(GGUFError, match="Cannot read .*m.gguf: Input/output error") as err:
        read_gguf_metadata(path)
    assert err.value.fix


def test_a_skipped_string_longer_than_the_rest_of_the_file_is_refused(tmp_path):
    data = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.STRING, 2) + struct.pack("<Q", 1) + b"x"
                            + struct.pack("<Q", 100) + b"y" * 32)
    msg = _refused_with_items(tmp_path, data, 1)
    assert "needs 100 more bytes but only 32 remain" in msg


def test_reading_goes_on_after_a_cut_array_at_the_right_offset(tmp_path):
    head = _header(2) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.UINT8, 10) + bytes(range(10)))
    tail = _kv(b"s", T.STRING, struct.pack("<Q", 50) + b"z" * 5)
    msg = _refused_with_items(tmp_path, head + tail, 2)
    assert f"needs 50 more bytes but only 5 remain (at byte {len(head + tail) - 5})" in msg
    whole = head + _kv(b"s", T.STRING, struct.pack("<Q", 5) + b"z" * 5)
    meta = read_gguf_metadata(_write(tmp_path, whole), max_array_items=2)
    assert meta.metadata == {"a": [0, 1], "s": "zzzzz"} and meta.truncated_arrays == {"a": 10}


def _refused_with_items(tmp_path, data, items) -> str:
    with pytest.raises(GGUFError) as err:
        read_gguf_metadata(_write(tmp_path, data), max_array_items=items)
    return err.value.msg


def test_items_beyond_the_kept_ones_are_skipped_unread(tmp_path):
    bools = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.BOOL, 2) + b"\x01\x02")
    assert read_gguf_metadata(_write(tmp_path, bools), max_array_items=1).metadata["a"] == [True]


def test_a_skipped_empty_nested_array_takes_no_bytes(tmp_path):
    data = build_gguf([("n", T.ARRAY, (T.ARRAY, [(T.UINT8, [1]), (T.UINT8, [])])), ("after", T.UINT8, 9)])
    meta = read_gguf_metadata(_write(tmp_path, data), max_array_items=1)
    assert meta.metadata == {"n": [[1]], "after": 9} and meta.truncated_arrays == {"n": 2}


def test_a_nested_array_past_the_kept_items_is_skipped_unread(tmp_path):
    inner = struct.pack("<IQ", T.BOOL, 1)
    data = _header(1) + _kv(b"n", T.ARRAY, struct.pack("<IQ", T.ARRAY, 2) + inner + b"\x01" + inner + b"\x02")
    assert read_gguf_metadata(_write(tmp_path, data), max_array_items=1).metadata["n"] == [[True]]


def test_a_skipped_string_at_the_end_of_the_file_says_nothing_remains(tmp_path):
    data = _header(1) + _kv(b"a", T.ARRAY, struct.pack("<IQ", T.STRING, 2) + struct.pack("<Q", 1) + b"x"
                            + struct.pack("<Q", 5))
    assert "needs 5 more bytes but only 0 remain" in _refused_with_items(tmp_path, data, 1)


def test_a_version_with_the_high_bit_set_is_shown_unsigned(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 0x80000003, 0, 0)
    assert "unsupported GGUF version 2147483651" in _refused(tmp_path, data)


def test_a_missing_file_is_named_with_the_reason_and_the_fix(tmp_path):
    path = str(tmp_path / "absent.gguf")
    with pytest.raises(GGUFError) as err:
        read_gguf_metadata(path)
    assert err.value.msg == f"Cannot open {path}: No such file or directory."
    assert "readable by the user running the task" in err.value.fix


def test_metadata_values_are_looked_up_by_key(tmp_path):
    meta = read_gguf_metadata(_write(tmp_path, gguf_model("llama")))
    assert meta.get("general.architecture") == "llama" and meta.get("absent") is None
