# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.venom.models.plugins.module_utils.errors import LockTimeout, ManifestError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.store import manifest
from ansible_collections.venom.models.plugins.module_utils.store.manifest import (
    KIND, SCHEMA_VERSION, Manifest, find_entry, model_path_inside, new_entry, parse_json, used_bytes, validate_document)


def _entry(name, provider="local", size=10):
    return new_entry(name, provider, size_bytes=size, files=[{"path": "f", "size": size, "sha256": "0" * 64}])


def test_missing_manifest_is_empty(tmp_path):
    doc = Manifest(str(tmp_path)).load()
    assert doc["models"] == [] and doc["kind"] == KIND and doc["schema_version"] == SCHEMA_VERSION
    assert not (tmp_path / "manifest.json").exists(), "reading creates nothing"


def test_upsert_get_remove_round_trip(tmp_path):
    m = Manifest(str(tmp_path))
    before, after = m.upsert(_entry("team/a", size=2_500_000_000))
    assert before is None
    assert after["size_gb"] == 2.5
    assert m.get("team/a")["size_bytes"] == 2_500_000_000
    assert m.get("team/a", provider="huggingface") is None
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw["updated_at"] and raw["models"][0]["name"] == "team/a"
    assert oct((tmp_path / "manifest.json").stat().st_mode & 0o777) == "0o644"
    assert m.remove("team/a")["name"] == "team/a"
    assert m.remove("team/a") is None
    assert m.load()["models"] == []


def test_ollama_names_match_case_insensitively(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_entry("Llama3:latest", provider="ollama"))
    assert m.get("llama3:LATEST", provider="ollama")["name"] == "Llama3:latest"


def test_transaction_without_change_does_not_write(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_entry("a"))
    mtime = os.stat(m.path).st_mtime_ns
    time.sleep(0.01)
    with m.transaction() as doc:
        assert len(doc["models"]) == 1
    assert os.stat(m.path).st_mtime_ns == mtime


def test_invalid_change_is_refused_and_file_kept(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_entry("a"))
    good = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(ManifestError, match="appears twice"):
        with m.transaction() as doc:
            doc["models"].append(dict(doc["models"][0]))
    assert (tmp_path / "manifest.json").read_bytes() == good


def test_exception_in_transaction_writes_nothing(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_entry("a"))
    good = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError):
        with m.transaction() as doc:
            doc["models"].clear()
            raise RuntimeError("boom")
    assert (tmp_path / "manifest.json").read_bytes() == good


@pytest.mark.parametrize("content,fragment", [
    (b"", "empty"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[]", "not an object"),
    (json.dumps({"models": [], "updated_at": "2024-12-17T10:00:00"}).encode(), "not written by venom.models"),
    (json.dumps({"kind": "other", "schema_version": 1, "models": []}).encode(), "not a venom.models manifest"),
    (json.dumps({"kind": KIND, "schema_version": 99, "models": []}).encode(), "newer than this collection"),
    (json.dumps({"kind": KIND, "schema_version": 1, "models": {}}).encode(), "'models' is not a list"),
    (json.dumps({"kind": KIND, "schema_version": 1, "models": [{"name": "x"}]}).encode(), "has no 'provider'"),
])
def test_corrupt_or_foreign_manifest_is_never_reset(tmp_path, content, fragment):
    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    m = Manifest(str(tmp_path))
    with pytest.raises(ManifestError) as err:
        m.load()
    assert fragment in err.value.msg
    assert str(path) in err.value.msg
    assert err.value.fix
    with pytest.raises(ManifestError):
        m.upsert(_entry("a"))
    assert path.read_bytes() == content, "a broken manifest is never overwritten"


def test_unknown_fields_are_preserved(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(dict(_entry("a"), future_field={"x": 1}))
    m.upsert(_entry("b"))
    assert m.get("a")["future_field"] == {"x": 1}


_names = st.from_regex(r"[a-z][a-z0-9_-]{0,15}(/[a-z][a-z0-9_.-]{0,15})?", fullmatch=True)
_entries = st.builds(
    lambda n, p, s, caps, files: new_entry(n, p, size_bytes=s, capabilities=caps,
                                           files=[{"path": f, "size": s, "sha256": None} for f in files]),
    _names, st.sampled_from(["huggingface", "ollama", "local"]), st.integers(0, 10 ** 13),
    st.dictionaries(st.sampled_from(["supports_system_role", "max_context_length", "quantization"]),
                    st.one_of(st.none(), st.booleans(), st.integers(0, 10 ** 6), st.text(max_size=20))),
    # file paths as a provider publishes them (relative, no '..'; non-ASCII allowed, as on the Hub)
    st.lists(st.from_regex(r"[\w][\w.-]{0,12}(/[\w][\w-]{0,12}){0,2}", fullmatch=True).filter(lambda p: ".." not in p), max_size=5))


@given(st.lists(_entries, max_size=8, unique_by=lambda e: (e["provider"], e["name"])))
@settings(max_examples=60, deadline=None)
def test_round_trip_property(tmp_path_factory, entries):
    d = tmp_path_factory.mktemp("m")
    m = Manifest(str(d))
    for e in entries:
        m.upsert(e)
    loaded = m.load()
    validate_document(loaded)
    assert len(loaded["models"]) == len(entries)
    for e in entries:
        got = m.get(e["name"], e["provider"])
        for key in ("size_bytes", "capabilities", "files", "provider"):
            assert got[key] == e[key]


def _worker(models_dir, wid, count):
    m = Manifest(models_dir, lock_timeout=120)
    for i in range(count):
        m.upsert(_entry(f"w{wid}/m{i}", size=wid * 1000 + i))


def test_parallel_writers_lose_nothing(tmp_path):
    procs = [multiprocessing.Process(target=_worker, args=(str(tmp_path), w, 25)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    names = {e["name"] for e in Manifest(str(tmp_path)).models()}
    assert names == {f"w{w}/m{i}" for w in range(8) for i in range(25)}
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert leftovers == []


_KILL_WRITER = r"""
import sys
sys.path[:0] = sys.argv[2:]
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
m = Manifest(sys.argv[1])
i = 0
while True:
    i += 1
    m.upsert(new_entry(f"k/m{i % 50}", "local", size_bytes=i, files=[{"path": "x" * (i % 200 + 1), "size": i}]))
    if i == 1:
        print("writing", flush=True)
"""


def test_sigkill_at_random_points_never_leaves_unreadable_manifest(tmp_path):
    rng = random.Random(1234)
    for _round in range(25):
        proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, str(tmp_path)] + sys.path, stdout=subprocess.PIPE)
        # the first write is committed: the kill points fall in the write loop, however slow the start on a busy host
        assert proc.stdout.readline() == b"writing\n"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        doc = Manifest(str(tmp_path)).load()  # raises if unreadable
        validate_document(doc)
    assert Manifest(str(tmp_path)).models(), "the writer made progress"
    # the lock of a killed writer is free: the next transaction does not wait
    start = time.monotonic()
    Manifest(str(tmp_path), lock_timeout=2).upsert(_entry("after/kill"))
    assert time.monotonic() - start < 2


def _installed(tmp_path, name, content=b"weights"):
    d = tmp_path / "local" / name
    d.mkdir(parents=True)
    (d / "w.bin").write_bytes(content)
    return new_entry(name, "local", size_bytes=len(content), local_path=str(d),
                     files=[{"path": "w.bin", "size": len(content), "sha256": None}])


def test_records_follow_the_manifest(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "a"))
    m.upsert(_installed(tmp_path, "b"))
    records = sorted(os.listdir(tmp_path / ".venom" / "records"))
    assert len(records) == 2
    m.remove("a")
    assert len(os.listdir(tmp_path / ".venom" / "records")) == 1


@pytest.mark.parametrize("damage", [b"{garbage", b"", None])
def test_rebuild_restores_from_records_and_keeps_the_broken_file(tmp_path, damage):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "good"))
    m.upsert(_installed(tmp_path, "gone"))
    m.upsert(_installed(tmp_path, "shrunk"))
    (tmp_path / "local" / "gone" / "w.bin").unlink()
    (tmp_path / "local" / "shrunk" / "w.bin").write_bytes(b"w")
    if damage is None:
        (tmp_path / "manifest.json").unlink()
    else:
        (tmp_path / "manifest.json").write_bytes(damage)
    assert m.check()["valid"] is (damage is None)
    plan = m.plan_rebuild()
    assert [e["name"] for e in plan["restored"]] == ["good"]
    report = m.rebuild()
    assert {e["name"] for e in report["damaged"]} == {"gone", "shrunk"}
    if damage is not None:
        with open(report["moved_aside"], "rb") as fh:
            assert fh.read() == damage, "the damaged manifest is kept, never lost"
    doc = m.load()
    status = {e["name"]: e["status"] for e in doc["models"]}
    assert status == {"good": "installed", "gone": "damaged", "shrunk": "damaged"}
    assert "missing" in m.get("gone")["damage"] and "1 bytes, expected 7" in m.get("shrunk")["damage"]


def test_rebuild_skips_bad_records(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "ok"))
    (tmp_path / ".venom" / "records" / "model-x.json").write_text("{bad")
    report = m.rebuild()
    assert [e["name"] for e in report["restored"]] == ["ok"]
    assert len(report["skipped"]) == 1 and "model-x.json" in report["skipped"][0]["record"]


# --- the reader names each problem and the entry it is in (found by mutation testing) -------------

def _doc(top=None, entry=None, file=None):
    doc = {"kind": KIND, "schema_version": SCHEMA_VERSION, "updated_at": None,
           "models": [new_entry("org/m", "local", size_bytes=1, files=[{"path": "f", "size": 1}])]}
    doc.update(top or {})
    if entry:
        doc["models"][0].update(entry)
    if file:
        doc["models"][0]["files"][0].update(file)
    return doc


_MAX = 2 ** 50


@pytest.mark.parametrize("doc, problem, entry", [
    (_doc(top={"schema_version": True}), "'schema_version' is True, not an integer", None),
    (_doc(top={"schema_version": "1"}), "'schema_version' is '1', not an integer", None),
    (_doc(top={"schema_version": 0}), "'schema_version' 0 is not valid", None),
    (_doc(top={"updated_at": 5}), "'updated_at' is not a string", None),
    (_doc(top={"settings": []}), "'settings' is not an object", None),
    (_doc(top={"settings": {"quota_gb": -1}}),
     "settings.quota_gb = -1 is not one of quota_gb, reserve_gb with a number >= 0", None),
    (_doc(top={"settings": {"reserve_gb": True}}),
     "settings.reserve_gb = True is not one of quota_gb, reserve_gb with a number >= 0", None),
    (_doc(top={"settings": {"other": 1}}), "settings.other = 1 is not one of quota_gb, reserve_gb with a number >= 0", None),
    (_doc(top={"settings": {"quota_gb": "1"}}),
     "settings.quota_gb = '1' is not one of quota_gb, reserve_gb with a number >= 0", None),
    (_doc(top={"models": [5]}), "models[0] is not an object", None),
    (_doc(entry={"size_bytes": True}), "models[0] ('org/m') field 'size_bytes' has type bool", "org/m"),
    (_doc(entry={"size_bytes": "1"}), "models[0] ('org/m') field 'size_bytes' has type str", "org/m"),
    (_doc(top={"models": [{"provider": "local"}]}), "models[0] ('?') has no 'name'", None),
    (_doc(top={"models": [{"name": "x"}]}), "models[0] ('x') has no 'provider'", "x"),
    (_doc(entry={"provider": "ftp"}), "models[0] ('org/m') has unknown provider 'ftp'", "org/m"),
    (_doc(entry={"runtime": "llamacpp"}), "models[0] ('org/m') has unknown runtime 'llamacpp'", "org/m"),
    (_doc(top={"models": [new_entry("org/m", "local")] * 2}), "the model 'org/m' (local) appears twice", "org/m"),
    (_doc(entry={"active": 1}), "models[0] ('org/m') field 'active' has type int", "org/m"),
    (_doc(entry={"size_bytes": _MAX + 1}), f"models[0] ('org/m') has a size of {_MAX + 1} bytes, outside 0..{_MAX}", "org/m"),
    (_doc(entry={"size_gb": float("inf")}), "models[0] ('org/m') has a size_gb that is not a finite number", "org/m"),
    (_doc(entry={"retained_versions": {}}), "models[0] ('org/m') field 'retained_versions' is not a list of objects",
     "org/m"),
    (_doc(entry={"retained_versions": [1]}), "models[0] ('org/m') field 'retained_versions' is not a list of objects",
     "org/m"),
    (_doc(entry={"source": []}), "models[0] ('org/m') field 'source' is not an object", "org/m"),
    (_doc(entry={"source": {"path": 5}}), "models[0] ('org/m') field 'source.path' is not a string", "org/m"),
    (_doc(entry={"capability_overrides": 1}), "models[0] ('org/m') field 'capability_overrides' is not an object", "org/m"),
    (_doc(entry={"detected_capabilities": "x"}), "models[0] ('org/m') field 'detected_capabilities' is not an object",
     "org/m"),
    (_doc(entry={"files": [5]}), "models[0] ('org/m') files[0] needs a string 'path' and an integer 'size'", "org/m"),
    (_doc(file={"size": True}), "models[0] ('org/m') files[0] needs a string 'path' and an integer 'size'", "org/m"),
    (_doc(file={"path": 5}), "models[0] ('org/m') files[0] needs a string 'path' and an integer 'size'", "org/m"),
    (_doc(file={"size": -1}), f"models[0] ('org/m') files[0] has a size of -1 bytes, outside 0..{_MAX}", "org/m"),
    (_doc(file={"size": _MAX + 1}), f"models[0] ('org/m') files[0] has a size of {_MAX + 1} bytes, outside 0..{_MAX}",
     "org/m"),
    (_doc(file={"path": "../x"}), "models[0] ('org/m') files[0]: file path '../x' contains '..' (path traversal).",
     "org/m"),
    (_doc(file={"sha256": 5}), "models[0] ('org/m') files[0] field 'sha256' is not a string", "org/m"),
    (_doc(file={"git_oid": 5}), "models[0] ('org/m') files[0] field 'git_oid' is not a string", "org/m"),
])
def test_the_reader_names_the_problem_and_the_entry(doc, problem, entry):
    with pytest.raises(ManifestError) as err:
        validate_document(doc, "/m/manifest.json")
    assert err.value.msg == f"The manifest /m/manifest.json is invalid: {problem}."
    assert err.value.details.get("entry") == entry and err.value.details["path"] == "/m/manifest.json"
    assert err.value.fix.startswith("Move the file aside and rebuild the manifest")


def test_values_at_the_edge_of_what_the_reader_accepts():
    doc = _doc(top={"settings": {"quota_gb": 0, "reserve_gb": 2.5}},
               entry={"size_bytes": _MAX, "active": True, "retained_versions": [], "source": {"path": "/src"},
                      "capability_overrides": None},
               file={"size": _MAX, "sha256": None, "git_oid": "abc"})
    assert validate_document(doc) is doc
    doc["models"][0]["files"].append({"path": "empty", "size": 0})
    assert validate_document(doc) is doc
    with pytest.raises(ManifestError) as err:
        validate_document(_doc(top={"updated_at": 1}))
    assert err.value.msg == "The manifest manifest is invalid: 'updated_at' is not a string."


def test_a_retained_version_outside_models_dir_is_refused_even_without_a_current_one(tmp_path):
    doc = _doc(entry={"local_path": None, "retained_versions": [{"local_path": "/x/y"}]})
    with pytest.raises(ManifestError, match=r"field 'retained_versions\[0\].local_path': the model path '/x/y'"):
        validate_document(doc, "P", str(tmp_path))


@pytest.mark.parametrize("doc, problem, fix_start", [
    ({"models": []}, "it has no 'kind'/'schema_version' fields, so it was not written by venom.models (perhaps by the "
     "Venom application or by hand)", "Keep that file elsewhere and point models_dir at a directory venom.models owns, "
     "or move the file aside and rebuild"),
    ({"kind": "other", "schema_version": 1, "models": []},
     "'kind' is 'other', expected 'venom.models/manifest'; this is not a venom.models manifest", "Move the file aside"),
    ({"kind": "k" * 100}, "'kind' is '" + "k" * 76 + "..., expected 'venom.models/manifest'; this is not a venom.models "
     "manifest", "Move the file aside"),
    ([], "the top level is a JSON list, not an object", "Move the file aside"),
    ({"kind": "k" * 78}, "'kind' is '" + "k" * 78 + "', expected 'venom.models/manifest'; this is not a venom.models "
     "manifest", "Move the file aside"),   # a repr of 80 characters is shown whole
    ({"kind": "k" * 79}, "'kind' is '" + "k" * 76 + "..., expected 'venom.models/manifest'; this is not a venom.models "
     "manifest", "Move the file aside"),
    ({"kind": KIND, "schema_version": 2, "models": []},
     "it has schema version 2, newer than this collection understands (1)",
     "Upgrade the venom.models collection on the controller; do not edit the file."),
])
def test_a_foreign_or_newer_manifest_is_named_as_such(doc, problem, fix_start):
    with pytest.raises(ManifestError) as err:
        validate_document(doc, "P")
    assert err.value.msg == f"The manifest P is invalid: {problem}." and err.value.fix.startswith(fix_start)


@pytest.mark.parametrize("raw, msg", [
    (b"[NaN]", "The file P is not valid JSON: NaN is not a JSON number."),
    (b"[Infinity]", "The file P is not valid JSON: Infinity is not a JSON number."),
    (b"[" * 33 + b"]" * 33, "The file P nests JSON too deeply to be a venom.models file."),
    (b"\xff", "The file P is not UTF-8 text (invalid start byte at byte 0)."),
])
def test_a_state_file_that_is_not_plain_json_is_refused_naming_the_file(raw, msg):
    with pytest.raises(ManifestError) as err:
        parse_json(raw, "P")
    assert err.value.msg == msg and err.value.details == {"path": "P"}
    assert err.value.fix.startswith("Move the file aside")


def test_json_nested_up_to_the_depth_limit_is_read():
    value = []
    for _depth in range(31):
        value = [value]
    assert parse_json(b"[" * 32 + b"]" * 32, "P") == value
    assert parse_json(b'{"a": 1}', "P") == {"a": 1}


@pytest.mark.parametrize("path, problem", [
    ("rel/x", "is not inside"), ("{d}/local/../x", "is not inside"), ("{d}/other/x", "is not inside"),
    ("{d}/local", "is not inside"), (5, "is not a path"), ("", "is not a path"), ("{d}/local/a\x00", "is not a path"),
    ("{d}/local/" + "a" * 4090, "is not a path"),
])
def test_a_model_path_must_lie_strictly_inside_its_provider_directory(tmp_path, path, problem):
    path = path.format(d=tmp_path) if isinstance(path, str) else path
    with pytest.raises(ValidationError) as err:
        model_path_inside(str(tmp_path), "local", path)
    assert err.value.msg.startswith(f"the model path {path!r}"[:60]) and problem in err.value.msg
    if problem == "is not inside":
        assert err.value.msg.endswith(f"is not inside {tmp_path / 'local'}")
    assert err.value.fix == "Rebuild the manifest with venom_manifest (state: rebuilt)."
    inside = str(tmp_path / "local" / "a" / "b")
    assert model_path_inside(str(tmp_path), "local", inside) == inside


def test_a_model_path_of_4096_characters_is_accepted_one_more_is_not(tmp_path):
    base = str(tmp_path / "local")
    longest = base + "/" + "/".join(["d" * 200] * 19)
    longest += "/" + "d" * (4096 - len(longest) - 1)
    assert len(longest) == 4096 and model_path_inside(str(tmp_path), "local", longest) == longest
    with pytest.raises(ValidationError, match="is not a path"):
        model_path_inside(str(tmp_path), "local", longest + "d")


def test_an_entry_outside_models_dir_is_named_with_its_field(tmp_path):
    doc = _doc(entry={"local_path": "/elsewhere/m"})
    with pytest.raises(ManifestError) as err:
        validate_document(doc, "P", str(tmp_path))
    assert err.value.msg == (f"The manifest P is invalid: models[0] ('org/m') field 'local_path': the model path "
                             f"'/elsewhere/m' is not inside {tmp_path / 'local'}.")
    assert err.value.details["entry"] == "org/m"
    assert err.value.fix.startswith("Every model directory lies inside models_dir; remove this entry (or correct its "
                                    "path) and move the file aside")
    doc = _doc(entry={"local_path": str(tmp_path / "local" / "m"), "retained_versions": [{"local_path": "/x/y"}]})
    with pytest.raises(ManifestError, match=r"field 'retained_versions\[0\].local_path'"):
        validate_document(doc, "P", str(tmp_path))
    assert validate_document(_doc(entry={"retained_versions": [{"local_path": None}]}), "P", str(tmp_path))


def test_models_whose_directories_nest_are_refused_naming_both(tmp_path):
    doc = _doc(entry={"local_path": str(tmp_path / "local" / "a")})
    doc["models"].append(new_entry("org/b", "local", local_path=str(tmp_path / "local" / "a" / "b")))
    with pytest.raises(ManifestError) as err:
        validate_document(doc, "P", str(tmp_path))
    assert err.value.msg == (f"The manifest P is invalid: the directory of 'org/b' ({tmp_path}/local/a/b) lies inside "
                             f"the directory of 'org/m' ({tmp_path}/local/a).")
    assert err.value.details["entry"] == "org/b"
    assert err.value.fix == ("No model's directory may contain another's; remove one of the two entries and m"
                             + manifest.RECOVERY_HINT[1:])
    doc["models"][1]["local_path"] = str(tmp_path / "local" / "ab")   # a sibling sharing a prefix is no nesting
    assert validate_document(doc, "P", str(tmp_path)) is doc


def test_an_empty_looking_manifest_is_refused_as_empty(tmp_path):
    (tmp_path / "manifest.json").write_text("  \n")
    with pytest.raises(ManifestError) as err:
        Manifest(str(tmp_path)).load()
    assert err.value.msg == f"The manifest {tmp_path / 'manifest.json'} is empty (0 bytes of JSON)."
    assert err.value.details == {"path": str(tmp_path / "manifest.json")}


def test_storage_settings_are_recorded_once_and_read_back(tmp_path):
    m = Manifest(str(tmp_path))
    assert m.settings() == {}
    assert m.record_settings({"quota_gb": 5, "reserve_gb": None}) is True
    assert m.settings() == {"quota_gb": 5.0}, "None leaves a setting as recorded"
    assert m.record_settings({"quota_gb": 5.0}) is False and m.record_settings({}) is False
    assert m.record_settings({"reserve_gb": 1}) is True
    assert m.settings() == {"quota_gb": 5.0, "reserve_gb": 1.0}
    m.settings()["quota_gb"] = 99
    assert m.settings()["quota_gb"] == 5.0, "settings() is a copy"


def test_a_new_entry_has_every_field_and_its_size_in_gb():
    e = new_entry("org/sub/model", "local", size_bytes=1_234_567_890)
    assert set(e) == {"name", "provider", "display_name", "status", "size_bytes", "size_gb", "capabilities", "local_path",
                      "sha256", "installed_at", "updated_at", "runtime", "revision", "files", "active", "active_runtime"}
    assert (e["display_name"], e["status"], e["size_gb"], e["active"]) == ("model", "installed", 1.235, False)
    assert new_entry("x", "local") == {
        "name": "x", "provider": "local", "display_name": "x", "status": "installed", "size_bytes": 0, "size_gb": 0.0,
        "capabilities": {}, "local_path": None, "sha256": None, "installed_at": None, "updated_at": None,
        "runtime": None, "revision": None, "files": [], "active": False, "active_runtime": None}
    assert Manifest("/nonexistent-models-dir").load() == {"kind": KIND, "schema_version": SCHEMA_VERSION,
                                                          "updated_at": None, "models": []}


def test_check_names_the_entry_that_makes_the_manifest_invalid(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_entry("a"))
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["models"][0]["status"] = "weird"
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    res = m.check()
    assert res["valid"] is False and res["entry"] == "a" and res["models"] is None
    assert res["error"].startswith(f"The manifest {tmp_path / 'manifest.json'} is invalid: models[0] ('a') has unknown "
                                   "status 'weird'.")


def test_entries_are_found_by_name_and_provider_and_sized_without_one(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_entry("m", provider="local", size=3))
    m.upsert(_entry("m", provider="ollama", size=5))
    m.upsert(_entry("Big", provider="local", size=7))
    doc = m.load()
    assert find_entry(doc, "m", "ollama")["size_bytes"] == 5 and find_entry(doc, "m")["provider"] == "local"
    assert find_entry(doc, "big") is None, "only Ollama names match case-insensitively"
    assert find_entry(doc, "M", "ollama")["provider"] == "ollama"
    assert find_entry(doc, "library/m:latest", "ollama")["size_bytes"] == 5, "Ollama's naming rule (model_key)"
    assert find_entry(doc, "m:8b", "ollama") is None and find_entry(doc, "library/m", "local") is None
    assert used_bytes(doc) == 15 and used_bytes(doc, exclude=("ollama", "m")) == 10
    m.upsert(dict(_entry("m", provider="local", size=4)))
    assert [(e["name"], e["size_bytes"]) for e in m.models()] == [("m", 4), ("m", 5), ("Big", 7)], "replaced in place"


def test_a_record_removed_by_hand_is_written_again_at_the_next_change(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "a"))
    records = tmp_path / ".venom" / "records"
    (rec,) = records.iterdir()
    rec.unlink()
    m.upsert(_installed(tmp_path, "b"))
    assert len(list(records.iterdir())) == 2 and json.loads(rec.read_text())["name"] == "a"
    assert oct(rec.stat().st_mode & 0o777) == "0o644"
    assert all(r.name.startswith("model-") and r.name.endswith(".json") for r in records.iterdir())
    inode = rec.stat().st_ino
    m.upsert(dict(_installed(tmp_path, "c"), size_bytes=7))
    assert rec.stat().st_ino == inode, "an unchanged entry's record is not rewritten"
    m.upsert(dict(m.get("c"), sha256="f" * 64))
    assert any(json.loads(r.read_text()).get("sha256") == "f" * 64 for r in records.iterdir()), "a change is recorded"


def test_what_is_damaged_is_said_exactly(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "gone-dir"))
    m.upsert(_installed(tmp_path, "gone-file"))
    m.upsert(_installed(tmp_path, "other-size"))
    m.upsert(new_entry("ol:latest", "ollama", local_path=str(tmp_path / "ollama" / "x")))   # Ollama keeps its own files
    m.upsert(new_entry("nodir", "local"))
    shutil.rmtree(tmp_path / "local" / "gone-dir")
    (tmp_path / "local" / "gone-file" / "w.bin").unlink()
    (tmp_path / "local" / "other-size" / "w.bin").write_bytes(b"12")
    plan = m.plan_rebuild()
    damage = {e["name"]: e["damage"] for e in plan["damaged"]}
    assert damage == {"gone-dir": f"its directory {tmp_path / 'local' / 'gone-dir'} is missing",
                      "gone-file": "the file w.bin is missing",
                      "other-size": "the file w.bin has 2 bytes, expected 7"}
    assert sorted(e["name"] for e in plan["restored"]) == ["nodir", "ol:latest"]
    assert all(e["status"] == "damaged" for e in plan["damaged"])


def test_rebuild_keeps_the_recorded_settings_and_says_nothing_was_moved_when_there_was_no_file(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "a"))
    m.record_settings({"quota_gb": 7})
    report = m.rebuild()
    assert report["moved_aside"].startswith(str(tmp_path / "manifest.json.broken-"))
    assert m.settings() == {"quota_gb": 7.0} and m.load()["updated_at"]
    os.unlink(m.path)
    report = m.rebuild()
    assert report["moved_aside"] is None and m.settings() == {}
    assert [e["name"] for e in m.models()] == ["a"]


def test_unclaimed_version_directories_are_listed_claimed_ones_are_not(tmp_path):
    m = Manifest(str(tmp_path))
    commit = "a" * 40
    claimed = tmp_path / "huggingface" / "org" / "kept" / commit
    claimed.mkdir(parents=True)
    (claimed / "w.bin").write_bytes(b"w")
    older = tmp_path / "huggingface" / "org" / "kept" / ("b" * 40)
    older.mkdir()
    m.upsert(new_entry("org/kept", "huggingface", size_bytes=1, local_path=str(claimed),
                       files=[{"path": "w.bin", "size": 1}], retained_versions=[{"local_path": str(older)}]))
    (tmp_path / "huggingface" / "org" / "orphan" / commit).mkdir(parents=True)
    (tmp_path / "huggingface" / "org" / "orphan" / "not-a-commit").mkdir()
    (tmp_path / "huggingface" / "org" / "deep" / "er" / commit).mkdir(parents=True)   # below a version's depth
    (tmp_path / "local" / "team" / "tool" / "0123456789ab").mkdir(parents=True)
    (tmp_path / "local" / "solo" / "0123456789ab").mkdir(parents=True)
    (tmp_path / "local" / "0123456789ab").mkdir()   # a version needs a name above it
    (tmp_path / "local" / "a" / "b" / "c" / "d" / "0123456789ab").mkdir(parents=True)   # too deep
    (tmp_path / "local" / "link").symlink_to(tmp_path / "local" / "team")   # links are not followed
    plan = m.plan_rebuild()
    assert plan["unclaimed"] == [
        {"path": str(tmp_path / "huggingface" / "org" / "orphan" / commit), "provider": "huggingface",
         "name": "org/orphan", "revision": commit},
        {"path": str(tmp_path / "local" / "solo" / "0123456789ab"), "provider": "local", "name": "solo",
         "revision": None},
        {"path": str(tmp_path / "local" / "team" / "tool" / "0123456789ab"), "provider": "local", "name": "team/tool",
         "revision": None}]


def test_entries_of_a_damaged_manifest_without_a_record_are_reported_lost(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "kept"))
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["schema_version"] = "broken"   # the file no longer validates, but its entries are still read
    doc["models"] += [5, {"name": 7, "provider": "local"}, {"name": "x", "provider": None},
                      {"name": "gone", "provider": "local"}, {"name": "also-gone", "provider": "ollama"}]
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    lost = m.plan_rebuild()["lost"]
    why = ("no valid record in .venom/records (missing or refused, see skipped); its files, if any, are listed in "
           "unclaimed")
    assert lost == [{"name": "gone", "provider": "local", "reason": why},
                    {"name": "also-gone", "provider": "ollama", "reason": why}]
    for text in ("{bad", "[1]", json.dumps({"models": {"a": 1}})):
        (tmp_path / "manifest.json").write_text(text)
        assert m.plan_rebuild()["lost"] == [], text


def test_a_manifest_that_is_no_regular_file_unreadable_or_too_large_is_named(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    path.mkdir()
    with pytest.raises(ManifestError) as err:
        Manifest(str(tmp_path)).load()
    assert (err.value.msg, err.value.fix) == (f"The manifest {path} is not a regular file.", f"Remove {path}.")
    assert err.value.details == {"path": str(path)}
    path.rmdir()
    path.write_text(json.dumps({"kind": KIND, "schema_version": 1, "models": []}) + " " * 100)
    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ManifestError) as err:
        Manifest(str(tmp_path)).load()
    assert err.value.msg == f"The manifest {path} is larger than 100 bytes." and err.value.details == {"path": str(path)}
    assert err.value.fix == manifest.RECOVERY_HINT
    path.write_text(json.dumps({"kind": KIND, "schema_version": 1, "models": []}).ljust(100))
    assert Manifest(str(tmp_path)).load()["models"] == [], "exactly the limit is read"

    def denied(*_a, **_k):   # what a non-root run sees on a root-only manifest
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(manifest, "read_state_file", denied)
    with pytest.raises(ManifestError) as err:
        Manifest(str(tmp_path)).load()
    assert err.value.msg == f"The manifest {path} cannot be read: Permission denied."
    assert err.value.fix == "Run the task with become: true, or fix the file's permissions."
    assert err.value.details == {"path": str(path)}


def test_a_skipped_record_is_named_with_the_reason(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "ok"))
    records = tmp_path / ".venom" / "records"
    (records / "a-broken.json").write_text("{bad")
    (records / "b-dir.json").mkdir()
    reasons = {os.path.basename(s["record"]): s["reason"] for s in m.plan_rebuild()["skipped"]}
    assert reasons["a-broken.json"].startswith(f"The file {records / 'a-broken.json'} is not valid JSON")
    assert reasons["b-dir.json"].startswith(f"The record {records / 'b-dir.json'} is not a regular file.")


def test_two_models_sharing_one_directory_are_refused(tmp_path):
    doc = _doc(entry={"local_path": str(tmp_path / "local" / "a")})
    doc["models"].append(new_entry("org/b", "local", local_path=str(tmp_path / "local" / "a")))
    with pytest.raises(ManifestError, match="lies inside the directory of"):
        validate_document(doc, "P", str(tmp_path))


def test_every_duplicate_record_is_reported_not_only_the_first(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "a"))
    m.upsert(_installed(tmp_path, "b"))
    records = tmp_path / ".venom" / "records"
    originals = sorted(records.iterdir())
    for i, rec in enumerate(originals):
        (records / f"0-copy-{i}.json").write_text(rec.read_text())   # sorts first: the originals become the copies
    plan = m.plan_rebuild()
    assert sorted(e["name"] for e in plan["restored"]) == ["a", "b"]
    assert sorted(s["record"] for s in plan["skipped"] if s["reason"] == "duplicate record") == [str(r) for r in originals]


def test_remove_and_upsert_act_on_the_named_provider_and_stamp_the_entry(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_entry("m", provider="local"))
    m.upsert(dict(_entry("m", provider="ollama"), updated_at="2000-01-01T00:00:00.000Z", size_bytes=2 * 10 ** 9,
                  size_gb=0.0))
    stored = m.get("m", "ollama")
    assert stored["size_gb"] == 2.0 and stored["updated_at"] > "2026", "upsert sets size_gb and updated_at itself"
    assert m.remove("m", "ollama")["provider"] == "ollama"
    assert [(e["name"], e["provider"]) for e in m.models()] == [("m", "local")]


def test_rebuild_waits_for_the_manifest_lock(tmp_path):
    m = Manifest(str(tmp_path), lock_timeout=0)
    m.upsert(_installed(tmp_path, "a"))
    lock = manifest.manifest_lock(str(tmp_path))
    with open(lock.path, "a", encoding="utf-8") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)   # another writer holds it
        with pytest.raises(LockTimeout):
            m.rebuild()
    report = m.rebuild()
    assert re.fullmatch(re.escape(m.path) + r"\.broken-\d{8}T\d{12}Z", report["moved_aside"])
    assert oct(os.stat(m.path).st_mode & 0o777) == "0o644", "the rebuilt manifest is readable by the facts module"


def test_a_rebuild_whose_records_conflict_keeps_the_manifest_in_place(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "a"))
    outer = json.loads(next((tmp_path / ".venom" / "records").iterdir()).read_text())
    inner = dict(outer, name="a/inner", local_path=str(tmp_path / "local" / "a" / "inner"), files=[])
    (tmp_path / "local" / "a" / "inner").mkdir()
    (tmp_path / ".venom" / "records" / "z-inner.json").write_text(json.dumps(inner))   # each record valid alone
    before = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(ManifestError) as err:
        m.rebuild()
    assert err.value.msg.startswith(f"The manifest {m.path} is invalid: the directory of 'a/inner'")
    assert (tmp_path / "manifest.json").read_bytes() == before, "a refused rebuild leaves the manifest as it was"
    assert m.get("a") is not None
