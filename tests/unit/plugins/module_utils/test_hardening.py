# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 13: a root run never reads or writes outside models_dir, whatever the files under it say."""
from __future__ import annotations

import errno
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.venom.models.plugins.module_utils.errors import ManifestError, ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec
from ansible_collections.venom.models.plugins.module_utils.store import safeio
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.locks import FileLock, manifest_lock, model_lock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import KIND, Manifest, new_entry
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.store.quota import plan as quota_plan
from ansible_collections.venom.models.plugins.module_utils.store.validation import validate_non_negative


def _write_manifest(models_dir, models):
    os.makedirs(models_dir, exist_ok=True)
    doc = {"kind": KIND, "schema_version": 1, "updated_at": None, "models": models}
    with open(os.path.join(models_dir, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh)


def _local(d, name="m", **fields):
    return new_entry(name, "local", local_path=str(d / "local" / name / "0123456789ab"),
                     files=[{"path": "f", "size": 1, "sha256": None}], size_bytes=1, **fields)


# -- 1. every path read from the manifest and the records stays inside models_dir ------------------

@pytest.mark.parametrize("bad", ["/etc", "{d}/local/../../etc", "{d}/.venom/locks", "{d}", "{d}/huggingface/x/y/z",
                                 "relative/path", "{d}-other/local/m/x"])
def test_local_path_outside_models_dir_is_refused_naming_the_entry(tmp_path, bad):
    d = tmp_path / "models"
    _write_manifest(str(d), [_local(d, "good"), dict(_local(d), local_path=bad.format(d=d))])
    with pytest.raises(ManifestError) as err:
        Manifest(str(d)).load()
    assert "models[1] ('m')" in err.value.msg and "local_path" in err.value.msg
    assert err.value.details["entry"] == "m"
    assert not Manifest(str(d)).check()["valid"]


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../b", "", "a//b"])
def test_file_paths_outside_the_model_dir_are_refused(tmp_path, path):
    d = tmp_path / "models"
    _write_manifest(str(d), [dict(_local(d), files=[{"path": path, "size": 1}])])
    with pytest.raises(ManifestError, match=r"models\[0\] \('m'\) files\[0\]"):
        Manifest(str(d)).load()


def test_retained_version_outside_models_dir_is_refused(tmp_path):
    d = tmp_path / "models"
    _write_manifest(str(d), [dict(_local(d), retained_versions=[{"revision": "x", "local_path": "/etc"}])])
    with pytest.raises(ManifestError, match=r"retained_versions\[0\]\.local_path"):
        Manifest(str(d)).load()


def test_retained_versions_of_the_wrong_type_is_refused_not_a_crash(tmp_path):
    d = tmp_path / "models"
    _write_manifest(str(d), [dict(_local(d), retained_versions="/etc")])
    with pytest.raises(ManifestError, match="'retained_versions' is not a list of objects"):
        Manifest(str(d)).load()


def test_local_path_through_a_symlink_out_of_models_dir_is_refused(tmp_path):
    d = tmp_path / "models"
    (d / "local" / "m").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, d / "local" / "m" / "0123456789ab")
    _write_manifest(str(d), [_local(d)])
    with pytest.raises(ManifestError, match="resolves to"):
        Manifest(str(d)).load()


def test_a_record_outside_models_dir_is_skipped_by_rebuild(tmp_path):
    d = tmp_path / "models"
    m = Manifest(str(d))
    m.upsert(_local(d, "good"))
    rec_dir = StatePaths(str(d)).records_dir
    bad = dict(_local(d, "evil"), local_path="/etc")
    with open(os.path.join(rec_dir, "model-evil.json"), "w", encoding="utf-8") as fh:
        json.dump(bad, fh)
    plan = m.plan_rebuild()
    assert [e["name"] for e in plan["restored"] + plan["damaged"]] == ["good"]
    assert any("evil" in s["reason"] and "local_path" in s["reason"] for s in plan["skipped"])


# -- 6. no model's directory contains another's ---------------------------------------------------

def test_a_model_directory_inside_another_is_refused(tmp_path):
    d = tmp_path / "models"
    m = Manifest(str(d))
    m.upsert(_local(d, "m"))
    inner = new_entry("m/0123456789ab", "local", local_path=str(d / "local" / "m" / "0123456789ab" / "fedcba987654"))
    with pytest.raises(ManifestError, match="lies inside the directory of 'm'"):
        m.upsert(inner)
    assert [e["name"] for e in m.models()] == ["m"]


# -- 2. state files: no symlink followed; StrictModes as root -------------------------------------

def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    d = tmp_path / "models"
    StatePaths(str(d)).ensure()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, os.path.join(StatePaths(str(d)).locks_dir, "manifest.lock"))
    with pytest.raises(ValidationError, match="manifest.lock is a symbolic link"):
        manifest_lock(str(d)).acquire()
    with pytest.raises(VenomError, match="symbolic link"):
        Manifest(str(d)).upsert(_local(d))
    assert victim.read_text() == "precious"


def test_a_symlinked_model_lock_is_refused(tmp_path):
    d = tmp_path / "models"
    StatePaths(str(d)).ensure()
    lock = model_lock(str(d), "local", "m")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, lock.path)
    with pytest.raises(ValidationError, match="symbolic link"):
        lock.acquire()
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("which", [".venom", ".venom/locks", ".venom/records"])
def test_symlinked_state_directories_are_refused(tmp_path, which):
    d = tmp_path / "models"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "locks").mkdir(parents=True)
    (d / ".venom").mkdir(parents=True) if which != ".venom" else d.mkdir()
    os.symlink(elsewhere, d / which)
    with pytest.raises(ValidationError, match="symbolic link"):
        StatePaths(str(d)).ensure()
    with pytest.raises(VenomError, match="symbolic link"):
        Manifest(str(d)).upsert(_local(d))
    assert sorted(os.listdir(elsewhere)) == ["locks"] and os.listdir(elsewhere / "locks") == []


def test_a_symlinked_manifest_is_refused(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"kind": KIND, "schema_version": 1, "models": []}))
    os.symlink(real, d / "manifest.json")
    with pytest.raises(ManifestError, match="manifest.json is a symbolic link"):
        Manifest(str(d)).load()


def test_strict_modes_as_root_refuse_a_group_writable_manifest(tmp_path, monkeypatch):
    d = tmp_path / "models"
    Manifest(str(d)).upsert(_local(d))
    os.chmod(d / "manifest.json", 0o666)
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    with pytest.raises(ManifestError) as err:
        Manifest(str(d)).load()
    assert "manifest.json" in err.value.msg and "mode 0666" in err.value.msg and "chmod go-w" in err.value.fix


def test_strict_modes_as_root_refuse_a_world_writable_models_dir(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    os.chmod(d, 0o777)
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    with pytest.raises(ValidationError, match="models_dir .* writable by group and others"):
        StatePaths(str(d)).ensure()


def test_strict_modes_name_a_foreign_owner(tmp_path):
    st = os.stat(tmp_path)
    fake = os.stat_result((0o40755, st.st_ino, st.st_dev, 1, 1234, 0, 0, 0, 0, 0))
    with pytest.raises(ValidationError) as err:
        safeio.strict_modes(str(tmp_path), fake, "models_dir", euid=0)
    assert "owned by uid 1234" in err.value.msg and "chown root:root" in err.value.fix
    safeio.strict_modes(str(tmp_path), fake, "models_dir", euid=1234)  # not root: the owner's own directory


# -- 4. removal needs no free space ----------------------------------------------------------------

def test_lock_holder_details_are_best_effort_on_a_full_disk(tmp_path, monkeypatch):
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "pwrite", full)
    lock = FileLock(str(tmp_path / "locks" / "x.lock"))
    with lock:
        assert lock.locked
    assert os.listdir(tmp_path / "locks") == [], "no lock file is left behind"


def test_the_journal_is_best_effort_on_a_full_disk(tmp_path, monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.store import journal as journal_mod

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(journal_mod, "atomic_write_json", full)
    op = Journal(str(tmp_path)).start("remove", "m", "local")
    op.complete("removed")
    assert op.record["journal_skipped"] == "disk full"


# -- 7. clear errors instead of crashes ------------------------------------------------------------

def test_deeply_nested_json_is_a_manifest_error(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    (d / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ManifestError, match="nests JSON too deeply"):
        Manifest(str(d)).load()
    rec = StatePaths(str(d)).ensure().records_dir
    with open(os.path.join(rec, "model-x.json"), "w", encoding="utf-8") as fh:
        fh.write('{"a":' * 100000 + "1" + "}" * 100000)
    assert "too deeply" in Manifest(str(d)).plan_rebuild()["skipped"][0]["reason"]


def test_moderately_nested_capabilities_are_refused_before_a_deepcopy(tmp_path):
    d = tmp_path / "models"
    caps = {}
    for _level in range(600):
        caps = {"x": caps}
    _write_manifest(str(d), [dict(_local(d), capabilities=caps)])
    with pytest.raises(ManifestError, match="too deeply"):
        Manifest(str(d)).upsert(_local(d, "other"))


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1, "5", True, 1e300])
def test_quota_and_reserve_must_be_finite(tmp_path, value):
    with pytest.raises(ValidationError):
        validate_non_negative(value, "quota_gb")
    with pytest.raises(ValidationError):
        quota_plan([], 0, value, 2, str(tmp_path))


def test_infinite_size_gb_in_a_manifest_is_refused(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    entry = json.dumps(dict(_local(d), size_gb=0)).replace('"size_gb": 0', '"size_gb": 1e999')
    (d / "manifest.json").write_text('{"kind": "%s", "schema_version": 1, "models": [%s]}' % (KIND, entry))
    with pytest.raises(ManifestError, match="size_gb"):
        Manifest(str(d)).load()


# -- 8. sizes from a server are bounded before they enter a plan -----------------------------------

@pytest.mark.parametrize("size", [-1, 2 ** 60, 1.5, True, "10"])
def test_a_server_size_out_of_bounds_is_refused(size):
    with pytest.raises(ValidationError, match="size of 'blobs/x'"):
        FileSpec(path="blobs/x", size=size)


def test_a_negative_planned_download_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="planned download"):
        quota_plan([], -10 ** 12, 50, 2, str(tmp_path))


# -- 7. the manifest reader over arbitrary JSON (property) -----------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
_paths = st.sampled_from(["/etc", "{d}/local/m/x", "{d}/huggingface/o/n/" + "a" * 40, "{d}/local/../..", "x",
                          "{d}/local/m/x/y", "{d}/.venom/staging", "{d}/ollama/z"])


@st.composite
def _documents(draw):
    """Arbitrary JSON, and manifest-shaped documents whose fields hold arbitrary JSON or tricky paths."""
    if draw(st.booleans()):
        return draw(_json)
    models = []
    for _model in range(draw(st.integers(0, 3))):
        entry = {"name": draw(st.sampled_from(["m", "m/x", "o/n"]) | st.text(max_size=5)),
                 "provider": draw(st.sampled_from(["local", "huggingface", "ollama"]) | _json),
                 "status": draw(st.sampled_from(["installed", "damaged"]) | _json),
                 "size_bytes": draw(st.integers(-5, 2 ** 60) | _json),
                 "capabilities": draw(st.just({}) | _json),
                 "files": draw(st.lists(st.fixed_dictionaries({"path": st.sampled_from(["f", "../f", "/f"]) | _json,
                                                               "size": st.integers(-1, 9) | _json}), max_size=2)
                               | _json),
                 "local_path": draw(_paths | _json),
                 "retained_versions": draw(st.lists(st.fixed_dictionaries({"local_path": _paths | _json}), max_size=2)
                                           | _json)}
        for key in draw(st.lists(st.sampled_from(sorted(entry)), max_size=2)):
            entry.pop(key, None)
        models.append(entry)
    return {"kind": KIND, "schema_version": draw(st.just(1) | _json), "models": models}


@given(doc=_documents())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_manifest_reader_accepts_only_documents_confined_to_models_dir(tmp_path, doc):
    d = tmp_path / "models"
    d.mkdir(exist_ok=True)
    text = json.dumps(doc).replace("{d}", str(d))
    (d / "manifest.json").write_text(text)
    try:
        loaded = Manifest(str(d)).load()
    except ManifestError:
        return
    real = os.path.realpath(d)
    for entry in loaded["models"]:
        for p in [entry.get("local_path")] + [v.get("local_path") for v in entry.get("retained_versions") or []]:
            if p is not None:
                assert os.path.realpath(p).startswith(os.path.join(real, entry["provider"]) + os.sep)
        for f in entry["files"]:
            joined = os.path.normpath(os.path.join(entry.get("local_path") or str(d), f["path"]))
            assert joined.startswith(str(d) + os.sep)


# -- 9. a rebuild reports every entry it could not rebuild -----------------------------------------

def test_rebuild_reports_lost_entries_and_unclaimed_directories(tmp_path):
    d = tmp_path / "models"
    m = Manifest(str(d))
    for name in ("keep", "gone"):
        (d / "local" / name / "0123456789ab").mkdir(parents=True)
        (d / "local" / name / "0123456789ab" / "f").write_bytes(b"x")
        m.upsert(_local(d, name))
    hf = d / "huggingface" / "org" / "orphan" / ("a" * 40)
    hf.mkdir(parents=True)
    for rec in os.listdir(StatePaths(str(d)).records_dir):
        if "gone" in rec:
            os.unlink(os.path.join(StatePaths(str(d)).records_dir, rec))
    report = m.rebuild()
    assert [e["name"] for e in report["restored"]] == ["keep"]
    assert [(x["name"], x["provider"]) for x in report["lost"]] == [("gone", "local")]
    assert sorted((x["provider"], x["name"], x["path"]) for x in report["unclaimed"]) == [
        ("huggingface", "org/orphan", str(hf)), ("local", "gone", str(d / "local" / "gone" / "0123456789ab"))]


# -- 5. one redaction point for the journal; keyed digests -----------------------------------------

def test_every_journal_write_masks_every_secret_of_the_run(tmp_path):
    journal = Journal(str(tmp_path), secrets=["hf_TOKEN123", "sk-api-key-42", "envsecretvalue", None, "1"])
    op = journal.start("start", "m", "local", message="starting with hf_TOKEN123")
    op.update(message="log: --api-key sk-api-key-42", force=True)
    op.fail("health gate failed; log tail: VLLM_API_KEY=sk-api-key-42 X=envsecretvalue", message="envsecretvalue")
    raw = (tmp_path / ".venom" / "operations" / f"{op.id}.json").read_text()
    for secret in ("hf_TOKEN123", "sk-api-key-42", "envsecretvalue"):
        assert secret not in raw
    rec = journal.get(op.id)
    assert rec["error"].count("********") == 2 and rec["message"] == "********"


def test_runtime_secrets_are_the_api_key_and_env_values():
    from ansible_collections.venom.models.plugins.module_utils.runtimes.process import run_secrets
    assert sorted(run_secrets("k3y-value", {"A": "secret-a", "B": 7})) == ["7", "k3y-value", "secret-a"]


def test_keyed_digest_uses_a_private_per_host_key(tmp_path):
    state = str(tmp_path / ".venom")
    first = safeio.keyed_digest(state, "s3cret")
    assert first == safeio.keyed_digest(state, "s3cret") and first != safeio.keyed_digest(state, "other")
    import hashlib  # pylint: disable=import-outside-toplevel
    assert first != hashlib.sha256(b"s3cret").hexdigest()
    key = os.path.join(state, "digest.key")
    assert os.stat(key).st_mode & 0o777 == 0o600 and os.path.getsize(key) == 32
    assert safeio.keyed_digest(str(tmp_path / "other-host"), "s3cret") != first


def test_local_path_is_checked_again_at_use(tmp_path):
    """A version directory swapped for a link after the manifest was read is refused when it is used."""
    from ansible_collections.venom.models.plugins.module_utils.models.local import LocalProvider
    from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
    d = tmp_path / "models"
    entry = _local(d)
    outside = tmp_path / "etc"
    outside.mkdir()
    (d / "local" / "m").mkdir(parents=True)
    os.symlink(outside, entry["local_path"])
    provider = LocalProvider(ModelRequest(name="m", provider="local", models_dir=str(d)), StatePaths(str(d)))
    for use in (provider.quick_check, provider.remove):
        with pytest.raises(ValidationError, match="outside"):
            use(entry)
    assert outside.exists()


def test_a_symlinked_runtime_log_is_refused(tmp_path):
    import sys  # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.runtimes import process as proc_mod
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "vllm.log")
    with pytest.raises(ValidationError, match="runtime log .* is a symbolic link"):
        proc_mod.start_process([sys.executable, "-c", "pass"], pid_file=str(tmp_path / "vllm.pid"),
                               log_file=str(tmp_path / "vllm.log"), name="vllm")
    assert victim.read_text() == "precious"


def _runtime_ctl(models_dir):
    from ansible_collections.venom.models.plugins.module_utils.runtimes import controller  # pylint: disable=import-outside-toplevel
    return controller, controller.RuntimeController(
        controller.RuntimeSpec(name="vllm", models_dir=str(models_dir), mode="process", port=8039))


def _planted_link(tmp_path, which: str, doc: dict):
    """A models_dir whose runtime ``which`` file (pid_file, state_file) links to a JSON file outside it."""
    d = tmp_path / "models"
    StatePaths(str(d)).ensure()
    controller, ctl = _runtime_ctl(d)
    os.makedirs(ctl.state_dir)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(doc))
    os.symlink(outside, getattr(ctl, which))
    return d, controller, ctl, outside


def test_a_symlinked_pid_file_is_refused_not_followed(tmp_path):
    """A PID file planted as a link to a file outside models_dir is never read (nor acted on)."""
    from ansible_collections.venom.models.plugins.module_utils.runtimes import process as proc_mod  # pylint: disable=import-outside-toplevel
    record = {"kind": proc_mod.PID_FILE_KIND, "name": "vllm", "pid": os.getpid(), "pid_start": 1, "sid": os.getpid()}
    _d, _controller, ctl, outside = _planted_link(tmp_path, "pid_file", record)
    for use in (lambda: proc_mod.read_pid_file(ctl.pid_file), ctl.status, lambda: ctl.ensure("stopped")):
        with pytest.raises(ValidationError, match="PID file .* is a symbolic link"):
            use()
    assert os.path.islink(ctl.pid_file) and json.loads(outside.read_text()) == record


def test_a_symlinked_runtime_state_file_is_refused_not_followed(tmp_path):
    doc = {"kind": "venom.models/runtime", "name": "vllm", "port": 9999}
    d, controller, ctl, outside = _planted_link(tmp_path, "state_file", doc)
    for use in (ctl.read_state, lambda: controller.RuntimeController.from_state(str(d), "vllm")):
        with pytest.raises(ValidationError, match="runtime state file .* is a symbolic link"):
            use()
    assert "vllm" not in controller.instance_states(str(d)), "a linked state file is not an instance's state"
    assert json.loads(outside.read_text()) == doc


def test_a_symlinked_runtimes_directory_is_refused_and_nothing_is_written_through_it(tmp_path):
    d = tmp_path / "models"
    StatePaths(str(d)).ensure()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "vllm.json").write_text(json.dumps({"kind": "venom.models/runtime", "name": "vllm", "port": 9999}))
    os.symlink(outside, d / ".venom" / "runtimes")
    controller, ctl = _runtime_ctl(d)
    for use in (ctl.read_state, lambda: ctl.write_state(None), lambda: ctl.ensure("stopped"),
                lambda: controller.instance_states(str(d)), lambda: controller.runtimes_status(str(d))):
        with pytest.raises(ValidationError, match="state directory .* is a symbolic link"):
            use()
    assert sorted(os.listdir(outside)) == ["vllm.json"]


def test_the_runtime_log_tail_does_not_follow_a_symlink(tmp_path):
    from ansible_collections.venom.models.plugins.module_utils.runtimes import process as proc_mod  # pylint: disable=import-outside-toplevel
    victim = tmp_path / "shadow"
    victim.write_text("root:$6$secret-hash:19000:0:99999:7:::\n")
    os.symlink(victim, tmp_path / "vllm.log")
    assert proc_mod.tail_file(str(tmp_path / "vllm.log")) == []
    os.mkfifo(tmp_path / "fifo.log")
    assert proc_mod.tail_file(str(tmp_path / "fifo.log")) == [], "a planted FIFO neither hangs nor is read"
