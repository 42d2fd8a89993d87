# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The provider-neutral operation layer: which action for which state, quota before any byte, check mode."""
from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest

from ansible_collections.venom.models.plugins.module_utils.models import operations as _model_ops
from ansible_collections.venom.models.plugins.module_utils.errors import QuotaError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.models.staging import stat_problems
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from ansible_collections.venom.models.plugins.module_utils.models.providers import (
    FileSpec, ModelRequest, Problem, Provider, Target, files_digest)


class RecordingProvider(Provider):
    """A provider whose source is a dict in memory; records what the layer asked of it."""

    name = "local"
    versions = {"v1": {"a.bin": b"A" * 1000, "b.json": b"{}"}, "v2": {"a.bin": b"B" * 2000, "b.json": b"{}"}}
    current = "v1"
    calls: list = []

    def satisfies(self, entry):
        return entry.get("status") == "installed" and self.request.revision in (None, entry.get("revision"))

    def quick_check(self, entry):
        return stat_problems(entry.get("local_path"), entry.get("files", []))

    def resolve(self, entry, latest=False):
        self.calls.append("resolve")
        version = self.request.revision or self.current
        files = [FileSpec(p, len(d), sha256=str(hash(d))) for p, d in sorted(self.versions[version].items())]
        t = Target(revision=version, requested_revision=version, files=files,
                   local_path=os.path.join(self.paths.models_dir, "local", "m", version), disk_path=self.paths.models_dir)
        t.fetch_bytes, t.pending = t.size_bytes, [f.path for f in files]
        return t

    def install(self, target, progress, entry=None):
        self.calls.append("install")
        os.makedirs(target.local_path, exist_ok=True)
        for f in target.files:
            with open(os.path.join(target.local_path, f.path), "wb") as fh:
                fh.write(self.versions[target.revision][f.path])
            progress.add(f.size)
        return {"revision": target.revision, "requested_revision": target.requested_revision,
                "local_path": target.local_path, "files": [f.record() for f in target.files],
                "capabilities_detected": {"supports_system_role": True}}

    def verify(self, entry, progress):
        self.calls.append("verify")
        return self.quick_check(entry)

    def repair(self, entry, problems, progress):
        self.calls.append("repair")
        return self.install(Target(entry["revision"], None, [FileSpec.from_record(f) for f in entry["files"]],
                                   entry["local_path"]), progress)

    def remove(self, entry):
        self.calls.append("remove")
        import shutil  # pylint: disable=import-outside-toplevel
        shutil.rmtree(entry["local_path"], ignore_errors=True)
        return [entry["local_path"]]

    def remove_version(self, local_path):
        self.calls.append(f"remove_version {os.path.basename(local_path)}")

    def staging_bytes(self):
        return 0

    def discard_staging(self):
        return False


@pytest.fixture(autouse=True)
def fake_provider(monkeypatch):
    RecordingProvider.calls = []
    RecordingProvider.current = "v1"
    monkeypatch.setitem(_model_ops.PROVIDER_CLASSES, "local", RecordingProvider)


def run(tmp_path, check=False, **kw):
    req = ModelRequest(name="m", provider="local", models_dir=str(tmp_path), **kw)
    return _model_ops.ModelOperations(req, check_mode=check).run()


def test_present_check_real_check_real(tmp_path):
    out = run(tmp_path, check=True)
    assert out["changed"] and out["action"] == "install" and out["plan"]["fetch_bytes"] == 1002
    assert not os.path.exists(tmp_path / "manifest.json") and RecordingProvider.calls == ["resolve"]
    assert out["diff"]["before"] == {} and out["diff"]["after"]["revision"] == "v1"
    out = run(tmp_path)
    assert out["changed"] and out["operation"]["status"] == "completed" and out["bytes_downloaded"] == 1002
    entry = Manifest(str(tmp_path)).get("m", "local")
    assert entry["status"] == "installed" and entry["size_bytes"] == 1002 and entry["capabilities"]["supports_system_role"]
    RecordingProvider.calls = []
    assert run(tmp_path, check=True)["changed"] is False
    assert run(tmp_path)["changed"] is False
    assert RecordingProvider.calls == [], "an installed model: no resolve, no hashing"


def test_quota_refused_before_any_install(tmp_path):
    for check in (True, False):
        with pytest.raises(QuotaError) as info:
            run(tmp_path, check=check, quota_gb=0.0000005)
        assert "Nothing was downloaded" in info.value.msg
    assert "install" not in RecordingProvider.calls
    assert Manifest(str(tmp_path)).get("m", "local") is None


def test_disk_reserve_refused(tmp_path):
    with pytest.raises(QuotaError) as info:
        run(tmp_path, reserve_gb=10 ** 9)
    assert "reserve" in info.value.msg and "install" not in RecordingProvider.calls


def test_latest_switches_and_removes_old_version(tmp_path):
    run(tmp_path)
    RecordingProvider.current = "v2"
    assert run(tmp_path)["changed"] is False, "present does not follow"
    out = run(tmp_path, check=True, state="latest")
    assert out["action"] == "update" and out["plan"]["quota"]["used_bytes"] == 1002
    out = run(tmp_path, state="latest")
    assert out["revision"] == "v2" and "remove_version v1" in RecordingProvider.calls
    assert run(tmp_path, state="latest")["changed"] is False


def test_latest_keeps_old_version_while_active_then_prunes(tmp_path):
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(active=True, active_runtime="vllm")
    RecordingProvider.current = "v2"
    out = run(tmp_path, state="latest")
    assert out["warnings"] and "stays at" in out["warnings"][0]
    assert not any(c.startswith("remove_version") for c in RecordingProvider.calls)
    entry = Manifest(str(tmp_path)).get("m", "local")
    assert entry["active"] and entry["retained_versions"][0]["revision"] == "v1"
    assert run(tmp_path)["changed"] is False, "still active: the old version stays"
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(active=False, active_runtime=None)
    out = run(tmp_path, check=True)
    assert out["action"] == "prune" and out["changed"]
    out = run(tmp_path)
    assert "remove_version v1" in RecordingProvider.calls and "retained_versions" not in out["model"]
    assert run(tmp_path)["changed"] is False


def test_an_update_kept_for_two_instances_keeps_both_marked(tmp_path):
    run(tmp_path)
    Manifest(str(tmp_path)).mark_active("a", "m", "local")
    Manifest(str(tmp_path)).mark_active("b", "m", "local")
    RecordingProvider.current = "v2"
    out = run(tmp_path, state="latest")
    assert "the runtime instances 'a', 'b'" in out["warnings"][0]
    entry = Manifest(str(tmp_path)).get("m", "local")
    assert entry["revision"] == "v2" and entry["active_instances"] == ["a", "b"], "instance b lost its mark"
    assert out["model"]["active_instances"] == ["a", "b"]
    assert Manifest(str(tmp_path)).served_by("b")["name"] == "m"


def test_absent_refuses_active_unless_force(tmp_path):
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(active=True, active_runtime="ollama")
    with pytest.raises(ValidationError) as info:
        run(tmp_path, state="absent")
    assert "ollama" in info.value.msg and "force" in info.value.fix
    out = run(tmp_path, state="absent", force=True)
    assert out["changed"] and out["model"] is None and "remove" in RecordingProvider.calls
    assert run(tmp_path, state="absent")["changed"] is False


def test_absent_refused_names_every_instance_that_serves_the_model(tmp_path):
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(active=True, active_runtime="vllm", active_instances=["a", "b"])
    with pytest.raises(ValidationError) as info:
        run(tmp_path, state="absent")
    assert "runtime instances 'a', 'b'" in info.value.msg, info.value.msg
    assert Manifest(str(tmp_path)).get("m", "local")["active"], "nothing removed"


def test_metadata_only_changes(tmp_path):
    run(tmp_path)
    RecordingProvider.calls = []
    out = run(tmp_path, check=True, display_name="My model", runtime="vllm",
              capabilities={"max_context_length": 4096})
    assert out["action"] == "metadata" and out["changed"]
    out = run(tmp_path, display_name="My model", runtime="vllm", capabilities={"max_context_length": 4096})
    assert out["model"]["display_name"] == "My model" and out["model"]["runtime"] == "vllm"
    assert out["model"]["capabilities"]["max_context_length"] == 4096
    assert out["model"]["capabilities"]["detected_from"]["max_context_length"] == "override"
    assert RecordingProvider.calls == [], "metadata changes need neither the network nor the files"
    assert run(tmp_path, display_name="My model", capabilities={"max_context_length": 4096})["changed"] is False
    # overrides persist until changed; {} clears them
    assert run(tmp_path)["model"]["capabilities"]["max_context_length"] == 4096
    out = run(tmp_path, capabilities={})
    assert out["changed"] and out["model"]["capabilities"].get("max_context_length") is None


def test_repair_of_missing_file(tmp_path):
    out = run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:  # provider fields the repair must keep
        doc["models"][0].update(source={"path": "/srv/m"}, allow_patterns=["*.bin"])
    os.unlink(os.path.join(out["local_path"], "a.bin"))
    out = run(tmp_path, check=True)
    assert out["action"] == "repair" and out["plan"]["problems"][0]["kind"] == "missing"
    assert out["plan"]["fetch_bytes"] == 1000
    out = run(tmp_path)
    assert out["changed"] and os.path.exists(os.path.join(out["local_path"], "a.bin"))
    assert out["model"]["source"] == {"path": "/srv/m"} and out["model"]["allow_patterns"] == ["*.bin"]
    assert out["model"]["requested_revision"] == "v1"
    assert run(tmp_path, state="verified")["changed"] is False


def test_failure_is_journaled_and_redacted(tmp_path, monkeypatch):
    secret = "hf_secret_value_123456"

    def boom(self, target, progress, entry=None):
        raise ValidationError(f"broken with {secret}", fix="none")

    monkeypatch.setattr(RecordingProvider, "install", boom)
    with pytest.raises(ValidationError):
        run(tmp_path, token=secret)
    ops = os.listdir(tmp_path / ".venom" / "operations")
    rec = json.loads((tmp_path / ".venom" / "operations" / ops[0]).read_text())
    assert rec["status"] == "failed" and secret not in json.dumps(rec) and "********" in rec["error"]
    assert Manifest(str(tmp_path)).get("m", "local") is None


def test_request_validation(tmp_path):
    with pytest.raises(ValidationError):
        run(tmp_path, state="installed")
    with pytest.raises(ValidationError):
        run(tmp_path, runtime="tgi")
    with pytest.raises(ValidationError):
        run(tmp_path, allow_patterns="*.json")
    with pytest.raises(ValidationError):
        run(tmp_path, quota_gb=-1)
    with pytest.raises(ValidationError):
        run(tmp_path, timeout=0)
    req = ModelRequest(name="m", provider="ollama", models_dir=str(tmp_path))
    if "ollama" not in _model_ops.PROVIDER_CLASSES:
        with pytest.raises(ValidationError):
            _model_ops.ModelOperations(req)
    assert Problem("a", "missing").as_dict()["kind"] == "missing"


def test_runtime_defaults_from_the_provider(tmp_path):
    out = run(tmp_path, check=True)
    assert out["diff"]["after"]["runtime"] == "vllm", "check mode predicts the default too"
    run(tmp_path)
    assert Manifest(str(tmp_path)).get("m", "local")["runtime"] == "vllm"
    assert run(tmp_path)["changed"] is False
    other = tmp_path / "other"
    run(other, runtime="ollama")
    assert Manifest(str(other)).get("m", "local")["runtime"] == "ollama", "a given runtime wins"


def test_storage_settings_are_recorded_with_the_manifest_and_used_later(tmp_path):
    out = run(tmp_path, check=True, quota_gb=0.5)
    assert out["changed"] and out["storage"] == {"quota_gb": 0.5, "reserve_gb": 2.0, "recorded": True}
    assert Manifest(str(tmp_path)).settings() == {}, "check mode predicts the recording and records nothing"
    out = run(tmp_path, quota_gb=0.5, reserve_gb=0)
    assert out["storage"]["recorded"] is True and Manifest(str(tmp_path)).settings() == {"quota_gb": 0.5, "reserve_gb": 0.0}
    assert run(tmp_path, quota_gb=0.5)["changed"] is False, "the same quota again: no change"
    out = run(tmp_path)  # omitted: the recorded settings are in force
    assert out["changed"] is False and out["storage"] == {"quota_gb": 0.5, "reserve_gb": 0.0, "recorded": False}
    out = run(tmp_path, check=True, quota_gb=0.7)
    assert out["changed"] is True and out["action"] == "none", "a new quota is a change, predicted in check mode"
    assert run(tmp_path, quota_gb=0.7)["changed"] is True and Manifest(str(tmp_path)).settings()["quota_gb"] == 0.7
    # a later install without quota_gb obeys the recorded quota (2000 bytes: 1002 are used)
    Manifest(str(tmp_path)).record_settings({"quota_gb": 0.000002})
    with pytest.raises(QuotaError):
        _model_ops.ModelOperations(ModelRequest(name="n", provider="local", models_dir=str(tmp_path),
                                                revision="v2")).run()
    assert Manifest(str(tmp_path)).get("n", "local") is None


def test_absent_names_what_it_removes_and_why(tmp_path):
    assert run(tmp_path, state="absent")["plan"]["reason"] == "m is not installed"
    out = run(tmp_path)
    local_path = out["local_path"]
    check = run(tmp_path, check=True, state="absent")
    assert check["action"] == "remove" and check["plan"]["reason"] == f"m is installed at {local_path}"
    assert check["diff"]["after"] == {} and check["diff"]["before"]["revision"] == "v1" and check["model"] is None
    out = run(tmp_path, state="absent")
    assert out["operation"]["message"] == "removed m" and out["operation"]["type"] == "remove"
    assert Manifest(str(tmp_path)).get("m", "local") is None and not os.path.exists(local_path)


def test_absent_removes_a_copy_the_manifest_does_not_record(tmp_path, monkeypatch):
    unmanaged = {"name": "m", "provider": "local", "local_path": str(tmp_path / "local" / "m" / "v0"), "files": []}
    monkeypatch.setattr(RecordingProvider, "unmanaged_entry", lambda self: dict(unmanaged))
    out = run(tmp_path, check=True, state="absent")
    assert out["action"] == "remove" and out["changed"]
    assert out["plan"]["reason"] == "m is installed but not recorded in the manifest"
    assert out["diff"]["before"]["local_path"] == unmanaged["local_path"]
    out = run(tmp_path, state="absent")
    assert out["changed"] and "remove" in RecordingProvider.calls


def test_absent_discards_what_an_interrupted_download_left(tmp_path, monkeypatch):
    left = {"bytes": 2500}
    monkeypatch.setattr(RecordingProvider, "staging_bytes", lambda self: left["bytes"])
    discarded = []
    monkeypatch.setattr(RecordingProvider, "discard_staging", lambda self: discarded.append(1) or True)
    out = run(tmp_path, check=True, state="absent")
    assert out["action"] == "discard_staging" and out["changed"] and discarded == []
    assert out["plan"]["reason"] == "m is not installed but an interrupted download left 2.50 kB in the staging area"
    out = run(tmp_path, state="absent")
    assert discarded == [1] and out["operation"]["message"] == "removed the staging debris of m"
    assert out["operation"]["type"] == "remove"
    left["bytes"] = 0
    assert run(tmp_path, state="absent")["action"] == "none"


def test_a_repair_that_leaves_problems_fails_with_them(tmp_path, monkeypatch):
    out = run(tmp_path)
    os.unlink(os.path.join(out["local_path"], "a.bin"))
    os.unlink(os.path.join(out["local_path"], "b.json"))
    monkeypatch.setattr(RecordingProvider, "repair", lambda self, entry, problems, progress: {
        "files": entry["files"], "local_path": entry["local_path"], "revision": entry["revision"]})
    with pytest.raises(_model_ops.VenomError) as info:
        run(tmp_path)
    assert info.value.msg == "Repairing m left problems: a.bin: missing; b.json: missing"
    assert "state: absent" in info.value.fix


def test_a_repair_keeps_the_detected_capabilities_and_the_install_time(tmp_path, monkeypatch):
    out = run(tmp_path)
    installed_at = out["model"]["installed_at"]
    os.unlink(os.path.join(out["local_path"], "a.bin"))

    def repair(self, entry, problems, progress):
        fields = RecordingProvider.install(self, Target(entry["revision"], None,
                                                        [FileSpec.from_record(f) for f in entry["files"]],
                                                        entry["local_path"]), progress)
        fields.pop("capabilities_detected")
        return {k: v for k, v in fields.items() if k in ("files", "local_path", "revision")}
    monkeypatch.setattr(RecordingProvider, "repair", repair)
    out = run(tmp_path)
    assert out["action"] == "repair" and out["model"]["detected_capabilities"] == {"supports_system_role": True}
    assert out["model"]["capabilities"]["supports_system_role"] is True
    assert out["model"]["installed_at"] == installed_at, "a repair is not a new install"
    assert out["operation"]["type"] == "verify" and out["operation"]["message"].startswith("repair of m done: v1, ")


def test_latest_with_the_installed_revision_pinned_asks_nothing(tmp_path):
    run(tmp_path, revision="v1")
    RecordingProvider.calls = []
    RecordingProvider.current = "v2"
    out = run(tmp_path, state="latest", revision="v1")
    assert out["changed"] is False and RecordingProvider.calls == [], "a pinned commit has nothing to re-resolve"
    out = run(tmp_path, state="latest")
    assert out["action"] == "update" and out["revision"] == "v2"


def test_a_sync_records_the_new_file_list_and_keeps_the_install_time(tmp_path, monkeypatch):
    out = run(tmp_path)
    installed_at = out["model"]["installed_at"]
    monkeypatch.setattr(RecordingProvider, "versions", dict(RecordingProvider.versions, v1={
        "a.bin": b"A" * 1000, "b.json": b"{}", "c.txt": b"ccc"}))
    installs = []
    real = RecordingProvider.install

    def install(self, target, progress, entry=None):
        installs.append(entry["revision"] if entry else None)
        return real(self, target, progress, entry)
    monkeypatch.setattr(RecordingProvider, "install", install)
    check = run(tmp_path, check=True, state="latest")
    assert check["action"] == "sync" and check["plan"]["fetch_files"] == 1 and check["plan"]["fetch_bytes"] == 3
    assert check["plan"]["reason"] == "the file selection changed (3 files instead of 2)"
    out = run(tmp_path, state="latest")
    assert out["action"] == "sync" and installs == ["v1"], "the installed entry is handed over to be completed"
    assert out["model"]["installed_at"] == installed_at and out["model"]["size_bytes"] == 1005
    assert out["operation"]["type"] == "install"


def test_check_mode_predicts_a_repaired_or_pruned_entry_without_touching_the_recorded_one(tmp_path):
    first = run(tmp_path)
    os.unlink(os.path.join(first["local_path"], "a.bin"))
    old = {"revision": "v0", "local_path": str(tmp_path / "local" / "m" / "v0"), "reason": "active"}
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(status="damaged", retained_versions=[dict(old)])
    out = run(tmp_path, check=True)
    assert out["action"] == "repair" and out["model"]["status"] == "installed"
    assert out["model"]["retained_versions"] == [old]
    assert Manifest(str(tmp_path)).get("m", "local")["status"] == "damaged", "check mode changes nothing"
    assert out["diff"]["before"]["status"] == "damaged" and out["diff"]["after"]["status"] == "installed"
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(status="installed")
    with open(os.path.join(first["local_path"], "a.bin"), "wb") as fh:
        fh.write(b"A" * 1000)
    out = run(tmp_path, check=True)
    assert out["action"] == "prune" and "retained_versions" not in out["model"]
    assert out["plan"]["reason"] == "1 old version(s) kept for a runtime are no longer needed"
    assert Manifest(str(tmp_path)).get("m", "local")["retained_versions"], "still recorded"
    assert out["diff"]["before"]["retained_versions"] and "retained_versions" not in out["diff"]["after"]


def test_a_runtime_change_alone_is_a_metadata_change(tmp_path):
    run(tmp_path)
    out = run(tmp_path, check=True, runtime="ollama")
    assert out["action"] == "metadata" and out["plan"]["reason"] == "changed: runtime"
    assert out["model"]["runtime"] == "ollama" and out["diff"]["before"]["runtime"] == "vllm"
    assert run(tmp_path, runtime="ollama")["model"]["runtime"] == "ollama"
    assert run(tmp_path, runtime="ollama")["changed"] is False


def test_capability_overrides_are_kept_apart_from_the_detected_ones(tmp_path):
    run(tmp_path)
    caps = {"max_context_length": 4096}
    out = run(tmp_path, capabilities=caps)
    caps["max_context_length"] = 1
    entry = Manifest(str(tmp_path)).get("m", "local")
    assert entry["capability_overrides"] == {"max_context_length": 4096}
    assert entry["detected_capabilities"] == {"supports_system_role": True}
    assert entry["capabilities"]["supports_system_role"] is True and out["changed"]


def test_updates_while_active_keep_every_earlier_version(tmp_path):
    run(tmp_path)
    Manifest(str(tmp_path)).mark_active("a", "m", "local")
    RecordingProvider.current = "v2"
    out = run(tmp_path, state="latest")
    assert out["warnings"][0] == (f"The previous version v1 of m stays at {tmp_path / 'local' / 'm' / 'v1'} because the "
                                  "runtime instance 'a' has the model active; activate the new version "
                                  "(venom.models.venom_runtime) and run this task again to remove it.")
    assert out["model"]["retained_versions"] == [{"revision": "v1", "local_path": str(tmp_path / "local" / "m" / "v1"),
                                                  "reason": "active on the runtime instance 'a'"}]
    assert out["operation"]["type"] == "update" and out["model"]["installed_at"] == out["model"]["updated_at"]
    RecordingProvider.versions = dict(RecordingProvider.versions, v3={"a.bin": b"C" * 10, "b.json": b"{}"})
    try:
        RecordingProvider.current = "v3"
        out = run(tmp_path, state="latest")
    finally:
        RecordingProvider.versions = {k: v for k, v in RecordingProvider.versions.items() if k != "v3"}
    assert [v["revision"] for v in out["model"]["retained_versions"]] == ["v1", "v2"]
    assert not any(c.startswith("remove_version") for c in RecordingProvider.calls)


def test_who_serves_an_active_model_is_named_for_the_operator():
    assert _model_ops._served_by({"active_instances": ["a"]}) == "the runtime instance 'a'"   # pylint: disable=protected-access
    assert _model_ops._served_by({"active_instances": ["a", "b"]}) == "the runtime instances 'a', 'b'"   # pylint: disable=protected-access
    assert _model_ops._served_by({"active_runtime": "vllm"}) == "the vllm runtime"   # pylint: disable=protected-access
    assert _model_ops._served_by({}) == "a runtime"   # pylint: disable=protected-access


def _gb(n_bytes):
    """quota_gb / reserve_gb that come to exactly ``n_bytes`` bytes."""
    return (n_bytes + 0.5) / 10 ** 9


def test_an_install_that_exactly_fills_the_quota_fits_and_one_byte_less_is_refused(tmp_path):
    out = run(tmp_path, check=True, quota_gb=_gb(1002))
    assert out["action"] == "install" and out["plan"]["quota"]["fits_quota"] is True
    assert out["plan"]["quota"]["quota_free_after_bytes"] == 0
    with pytest.raises(QuotaError) as info:
        run(tmp_path, check=True, quota_gb=_gb(1001))
    assert "Installing m needs 1.00 kB" in info.value.msg and "raise quota_gb" in info.value.fix
    assert run(tmp_path, quota_gb=_gb(1002))["model"]["size_bytes"] == 1002


def test_an_update_counts_the_old_version_until_the_new_one_is_in_place(tmp_path):
    run(tmp_path, quota_gb=1)
    RecordingProvider.current = "v2"
    out = run(tmp_path, check=True, state="latest", quota_gb=_gb(3004))
    quota = out["plan"]["quota"]
    assert quota["used_bytes"] == 1002 and quota["planned_bytes"] == 2002 and quota["used_after_bytes"] == 2002
    assert quota["fetch_bytes"] == 2002 and out["plan"]["fetch_bytes"] == 2002
    assert quota["disk_free_after_bytes"] == quota["disk_free_bytes"] - 2002 + 1002, "the old version goes after"
    with pytest.raises(QuotaError):
        run(tmp_path, check=True, state="latest", quota_gb=_gb(3003))
    assert run(tmp_path, state="latest", quota_gb=_gb(3004))["revision"] == "v2"


def test_a_sync_counts_the_new_file_list_instead_of_the_recorded_one(tmp_path, monkeypatch):
    run(tmp_path)
    monkeypatch.setattr(RecordingProvider, "versions", dict(RecordingProvider.versions, v1={
        "a.bin": b"A" * 1000, "b.json": b"{}", "c.txt": b"ccc"}))
    out = run(tmp_path, check=True, state="latest", quota_gb=_gb(1005))
    assert out["action"] == "sync"
    assert out["plan"]["quota"]["used_bytes"] == 0 and out["plan"]["quota"]["planned_bytes"] == 1005
    with pytest.raises(QuotaError):
        run(tmp_path, check=True, state="latest", quota_gb=_gb(1004))


def test_a_repair_fits_a_quota_that_is_exactly_used_and_needs_only_the_missing_bytes_on_disk(tmp_path, monkeypatch):
    out = run(tmp_path)
    os.unlink(os.path.join(out["local_path"], "a.bin"))
    monkeypatch.setattr(_model_ops, "free_bytes", lambda path: 1000)
    out = run(tmp_path, check=True, quota_gb=_gb(1002), reserve_gb=0)
    assert out["action"] == "repair" and out["plan"]["quota"]["planned_bytes"] == 0
    assert out["plan"]["quota"]["used_bytes"] == 1002 and out["plan"]["fetch_bytes"] == 1000
    assert out["plan"]["files_to_fetch"] == ["a.bin"] and out["plan"]["fetch_files"] == 1
    with pytest.raises(QuotaError):
        run(tmp_path, check=True, quota_gb=_gb(1001), reserve_gb=0)
    monkeypatch.setattr(_model_ops, "free_bytes", lambda path: 999)
    with pytest.raises(QuotaError):
        run(tmp_path, check=True, quota_gb=1, reserve_gb=0)


def test_the_free_disk_check_counts_the_reserve_and_says_how_much_to_free(tmp_path, monkeypatch):
    free = {"bytes": 1002 + 500}
    monkeypatch.setattr(_model_ops, "free_bytes", lambda path: free["bytes"])
    out = run(tmp_path, check=True, reserve_gb=_gb(500))
    quota = out["plan"]["quota"]
    assert quota["fits_disk"] and quota["disk_free_bytes"] == 1502 and quota["disk_free_after_bytes"] == 500
    assert quota["reserve_bytes"] == 500 and quota["path"] == str(tmp_path)
    free["bytes"] = 1501
    with pytest.raises(QuotaError) as info:
        run(tmp_path, check=True, reserve_gb=_gb(500))
    assert info.value.msg == (f"Installing m needs 1.00 kB more on the filesystem of {tmp_path} plus the 500 B reserve "
                              "(1.50 kB), which has 1.50 kB free. Nothing was downloaded.")
    assert info.value.fix.startswith("Free at least 1 B on that filesystem")
    assert "install" not in RecordingProvider.calls


def test_the_free_disk_check_looks_at_the_filesystem_the_target_names(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(_model_ops, "free_bytes", lambda path: asked.append(path) or 10 ** 12)
    elsewhere = str(tmp_path / "disk")
    real = RecordingProvider.resolve

    def resolve(self, entry, latest=False):
        target = real(self, entry, latest)
        target.disk_path = elsewhere
        return target
    monkeypatch.setattr(RecordingProvider, "resolve", resolve)
    assert run(tmp_path, check=True)["plan"]["quota"]["path"] == elsewhere and asked == [elsewhere]
    asked.clear()
    monkeypatch.setattr(RecordingProvider, "resolve", lambda self, entry, latest=False: dataclasses_replace(
        real(self, entry, latest), disk_path=None))
    assert run(tmp_path, check=True)["plan"]["quota"]["path"] == str(tmp_path) and asked == [str(tmp_path)]


def dataclasses_replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


@pytest.mark.parametrize("kw", [
    {"display_name": "x" * 257}, {"display_name": "  "}, {"display_name": 5},
    {"allow_patterns": [""]}, {"ignore_patterns": ["*.bin", 3]}, {"ignore_patterns": "*.bin"},
    {"capabilities": ["max_context_length"]}, {"reserve_gb": -1}, {"timeout": -1},
    {"state": "nope"}, {"runtime": "nope"}, {"quota_gb": -0.5}])
def test_a_request_with_a_bad_option_is_refused_before_anything_is_read(tmp_path, kw):
    with pytest.raises(ValidationError):
        run(tmp_path, check=True, **kw)
    assert RecordingProvider.calls == [] and not os.path.exists(tmp_path / ".venom")


def test_the_longest_display_name_and_a_short_timeout_are_accepted(tmp_path):
    out = run(tmp_path, check=True, display_name="x" * 256, timeout=0.5, ignore_patterns=["*.md"], runtime="vllm")
    assert out["model"]["display_name"] == "x" * 256 and out["model"]["runtime"] == "vllm"


def test_owner_or_mode_for_an_ollama_model_is_refused_with_the_reason(tmp_path):
    for key in ("owner", "group", "mode", "directory_mode"):
        req = ModelRequest(name="m", provider="ollama", models_dir=str(tmp_path), **{key: "0640"})
        with pytest.raises(ValidationError) as info:
            _model_ops.validate_request(req)
        assert "Ollama server's own store" in info.value.msg and "provider ollama" in info.value.fix
    assert _model_ops.validate_request(ModelRequest(name="m", provider="ollama")).provider == "ollama"


def test_a_provider_missing_from_this_version_is_named_with_the_ones_available(tmp_path, monkeypatch):
    monkeypatch.delitem(_model_ops.PROVIDER_CLASSES, "ollama")
    with pytest.raises(ValidationError) as info:
        _model_ops.validate_request(ModelRequest(name="m", provider="ollama", models_dir=str(tmp_path)))
    assert "provider ollama is not available" in info.value.msg
    assert info.value.fix == "Use one of: huggingface, local."


def test_a_plan_lists_at_most_200_files_and_problems_but_counts_them_all():
    files = [FileSpec(f"f{i:03d}", 1) for i in range(201)]
    problems = [Problem(f"f{i:03d}", "missing") for i in range(201)]
    plan = _model_ops.Plan("repair", "r", fetch=files, problems=problems, fetch_bytes=201,
                           permission_changes=[{"path": str(i)} for i in range(201)])
    out = plan.as_dict()
    assert out["fetch_files"] == 201 and len(out["files_to_fetch"]) == 200 and out["files_to_fetch"][-1] == "f199"
    assert len(out["problems"]) == 200 and len(out["permission_changes"]) == 200
    assert "permission_changes" not in _model_ops.Plan("none", "r").as_dict()
    assert "revision" not in _model_ops.Plan("none", "r").as_dict()
    assert _model_ops.Plan("record", "r").changed is False and _model_ops.Plan("none", "r").changed is False
    assert all(_model_ops.Plan(a, "r").changed for a in ("install", "update", "sync", "repair", "metadata",
                                                         "permissions", "prune", "remove", "discard_staging"))


def test_a_model_already_in_the_providers_store_is_recorded_without_a_change(tmp_path, monkeypatch):
    real = RecordingProvider.resolve

    def resolve(self, entry, latest=False):
        target = real(self, entry, latest)
        target.extra["already_present"] = True
        target.pending = []
        return target
    monkeypatch.setattr(RecordingProvider, "resolve", resolve)
    check = run(tmp_path, check=True, quota_gb=_gb(1))
    assert check["action"] == "record" and check["changed"] is True, "only the new quota setting is a change"
    assert check["plan"]["quota"] is None and "already in the local store" in check["plan"]["reason"]
    out = run(tmp_path)
    assert out["action"] == "record" and out["changed"] is False and out["operation"]["type"] == "install"
    assert Manifest(str(tmp_path)).get("m", "local")["status"] == "installed"


def test_the_diff_summarises_an_entry_and_the_detailed_diff_shows_it_without_timestamps(tmp_path):
    run(tmp_path, capabilities={"prompt_template": "{{ x }}", "max_context_length": 10})
    out = run(tmp_path, check=True, display_name="Other")
    before = out["diff"]["before"]
    assert before["files"] == 2 and before["size_bytes"] == 1002 and before["size"] == "1.00 kB"
    assert before["capabilities"]["prompt_template"] == "(7 characters)"
    assert before["capabilities"]["max_context_length"] == 10
    assert "detected_from" not in before["capabilities"] and "notes" not in before["capabilities"]
    assert "installed_at" not in before and "capability_overrides" not in before and "active_runtime" not in before
    assert before["name"] == "m" and before["status"] == "installed" and before["active"] is False
    assert out["diff"]["after"]["display_name"] == "Other"
    req = ModelRequest(name="m", provider="local", models_dir=str(tmp_path), display_name="Other")
    detail = _model_ops.ModelOperations(req, check_mode=True, diff_detail=True).run()["diff"]["before"]
    assert "installed_at" not in detail and "updated_at" not in detail
    assert detail["files"][0]["path"] == "a.bin" and detail["capability_overrides"]["max_context_length"] == 10


def test_the_diff_of_an_entry_without_a_size_adds_up_its_files():
    entry = {"name": "m", "files": [{"size": 3}, {"size": 4}], "source": None, "allow_patterns": [],
             "capabilities": {"prompt_template": None}}
    view = _model_ops._diff_view(entry)   # pylint: disable=protected-access
    assert view == {"name": "m", "files": 2, "size_bytes": 7, "size": "7 B", "capabilities": {"prompt_template": None}}
    assert _model_ops._diff_view(None) == {}   # pylint: disable=protected-access
    assert _model_ops._diff_view({}, detail=True) == {}   # pylint: disable=protected-access


def test_check_mode_says_when_the_capabilities_cannot_be_predicted(tmp_path):
    out = run(tmp_path, check=True)
    assert out["plan"]["capabilities_predicted"] is False
    assert any("cannot predict the capabilities of m with provider local" in w for w in out["warnings"])
    assert out["model"]["detected_capabilities"] == {} and out["model"]["status"] == "installed"
    assert out["revision"] == "v1" and out["local_path"] == str(tmp_path / "local" / "m" / "v1")
    assert out["size_bytes"] == 1002 and out["name"] == "m" and out["provider"] == "local" and out["state"] == "present"
    run(tmp_path)
    assert "capabilities_predicted" not in run(tmp_path, check=True)["plan"], "nothing to predict"


def test_a_result_of_a_removal_has_no_model_fields(tmp_path):
    run(tmp_path)
    out = run(tmp_path, state="absent")
    assert out["revision"] is None and out["local_path"] is None and out["size_bytes"] is None
    assert out["capabilities"] is None and out["bytes_downloaded"] == 0


def test_an_install_is_journaled_with_its_bytes_and_its_result(tmp_path):
    out = run(tmp_path)
    op = out["operation"]
    assert op["type"] == "install" and op["bytes_total"] == 1002 and op["bytes_done"] == 1002
    assert op["message"] == "install of m done: v1, 1.00 kB"
    assert op["result"] == {"action": "install", "revision": "v1", "bytes_downloaded": 1002}
    assert op["details"] == {"action": "install", "state": "present"}


def test_an_unexpected_error_is_journaled_with_its_type_and_raised(tmp_path, monkeypatch):
    def boom(self, target, progress, entry=None):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(RecordingProvider, "install", boom)
    with pytest.raises(RuntimeError):
        run(tmp_path)
    ops = os.listdir(tmp_path / ".venom" / "operations")
    rec = json.loads((tmp_path / ".venom" / "operations" / ops[0]).read_text())
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError: disk on fire"


def test_an_update_of_an_idle_model_removes_the_old_version_only_when_it_moved(tmp_path, monkeypatch):
    run(tmp_path)
    RecordingProvider.current = "v2"
    RecordingProvider.calls = []
    out = run(tmp_path, state="latest")
    assert RecordingProvider.calls == ["resolve", "install", "remove_version v1"]
    assert "retained_versions" not in out["model"] and out["warnings"] == []
    assert out["operation"]["type"] == "update" and out["model"]["installed_at"] == out["model"]["updated_at"]
    real = RecordingProvider.resolve
    monkeypatch.setattr(RecordingProvider, "resolve", lambda self, entry, latest=False: dataclasses_replace(
        real(self, entry, latest), revision="v2b"))
    monkeypatch.setattr(RecordingProvider, "install", lambda self, target, progress, entry=None: {
        "revision": target.revision, "local_path": target.local_path, "files": [f.record() for f in target.files]})
    RecordingProvider.calls = []
    out = run(tmp_path, state="latest")
    assert out["revision"] == "v2b" and not any(c.startswith("remove_version") for c in RecordingProvider.calls)


def test_an_update_while_active_in_the_same_directory_keeps_no_old_version(tmp_path, monkeypatch):
    run(tmp_path)
    Manifest(str(tmp_path)).mark_active("a", "m", "local")
    real = RecordingProvider.resolve
    monkeypatch.setattr(RecordingProvider, "resolve", lambda self, entry, latest=False: dataclasses_replace(
        real(self, entry, latest), revision="v1b"))
    monkeypatch.setattr(RecordingProvider, "install", lambda self, target, progress, entry=None: {
        "revision": target.revision, "local_path": target.local_path, "files": [f.record() for f in target.files]})
    out = run(tmp_path, state="latest")
    assert out["revision"] == "v1b" and "retained_versions" not in out["model"] and out["warnings"] == []


def test_a_model_directory_inside_another_models_directory_is_refused_before_anything_is_written(tmp_path):
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"].append(dict(_other_entry(tmp_path), local_path=str(tmp_path / "local" / "m")))
    with pytest.raises(ValidationError) as info:
        run(tmp_path, check=True)
    assert info.value.msg == (f"m would be installed at {tmp_path / 'local' / 'm' / 'v1'}, but the directory of 'm' "
                              f"({tmp_path / 'local' / 'm' / 'v1'}) would lie inside the directory of 'n' "
                              f"({tmp_path / 'local' / 'm'}); removing one would delete the other.")
    assert "install" not in RecordingProvider.calls


def test_a_retained_version_of_another_model_counts_for_the_nesting_check(tmp_path):
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"].append(dict(_other_entry(tmp_path), retained_versions=[
            {"revision": "x", "local_path": str(tmp_path / "local" / "m" / "v1" / "sub"), "reason": "active"}]))
    with pytest.raises(ValidationError):
        run(tmp_path, check=True)
    assert run(tmp_path, check=True, revision="v2")["action"] == "install", "a sibling directory is fine"


def _other_entry(tmp_path):
    return new_entry("n", "local", display_name="n", status="installed", size_bytes=0, capabilities={},
                     local_path=str(tmp_path / "local" / "n" / "v1"), sha256="0" * 64,
                     installed_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z", runtime="vllm",
                     revision="v1", files=[], active=False, active_runtime=None)


def _same_name_of_another_provider(tmp_path):
    return new_entry("m", "huggingface", display_name="m", status="installed", size_bytes=0, capabilities={},
                     local_path=str(tmp_path / "huggingface" / "m" / ("0" * 40)), sha256="0" * 64,
                     installed_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z", runtime="vllm",
                     revision="0" * 40, files=[], active=False, active_runtime=None)


def test_removing_a_model_leaves_the_model_of_the_same_name_from_another_provider(tmp_path):
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"].insert(0, _same_name_of_another_provider(tmp_path))
    run(tmp_path)
    out = run(tmp_path, state="absent")
    assert out["changed"] and Manifest(str(tmp_path)).get("m", "local") is None
    assert Manifest(str(tmp_path)).get("m", "huggingface")["revision"] == "0" * 40


def test_pruning_forgets_only_this_providers_old_versions_and_never_removes_the_installed_one(tmp_path):
    run(tmp_path)
    hf = dict(_same_name_of_another_provider(tmp_path), retained_versions=[
        {"revision": "1" * 40, "local_path": str(tmp_path / "huggingface" / "m" / ("1" * 40)), "reason": "active"}])
    current = str(tmp_path / "local" / "m" / "v1")
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"].insert(0, hf)
        doc["models"][1]["retained_versions"] = [
            {"revision": "v0", "local_path": str(tmp_path / "local" / "m" / "v0"), "reason": "active"},
            {"revision": "v1", "local_path": current, "reason": "active"},
            {"revision": "vx", "local_path": None, "reason": "active"}]
    RecordingProvider.calls = []
    out = run(tmp_path)
    assert out["action"] == "prune" and RecordingProvider.calls == ["remove_version v0"]
    assert "retained_versions" not in Manifest(str(tmp_path)).get("m", "local")
    assert Manifest(str(tmp_path)).get("m", "huggingface")["retained_versions"] == hf["retained_versions"]


def test_an_installed_model_is_removed_as_recorded_without_asking_for_an_unrecorded_copy(tmp_path, monkeypatch):
    run(tmp_path)
    asked = []
    monkeypatch.setattr(RecordingProvider, "unmanaged_entry", lambda self: asked.append(1) or {
        "name": "m", "provider": "local", "local_path": str(tmp_path / "local" / "m" / "v9"), "files": []})
    out = run(tmp_path, check=True, state="absent")
    assert out["plan"]["reason"] == f"m is installed at {tmp_path / 'local' / 'm' / 'v1'}" and asked == []
    assert out["diff"]["before"]["revision"] == "v1"


def test_a_metadata_change_applies_to_this_providers_model_only(tmp_path):
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"].insert(0, _same_name_of_another_provider(tmp_path))
    run(tmp_path)
    out = run(tmp_path, display_name="Mine")
    assert out["action"] == "metadata" and out["model"]["display_name"] == "Mine"
    assert Manifest(str(tmp_path)).get("m", "local")["display_name"] == "Mine"
    assert Manifest(str(tmp_path)).get("m", "huggingface")["display_name"] == "m"


def test_a_repair_is_checked_where_and_as_the_repair_reports_the_version(tmp_path, monkeypatch):
    out = run(tmp_path)
    for name in ("a.bin", "b.json"):
        os.unlink(os.path.join(out["local_path"], name))
    moved = str(tmp_path / "local" / "m" / "v1-repaired")

    def repair(self, entry, problems, progress):
        os.makedirs(moved)
        with open(os.path.join(moved, "b.json"), "wb") as fh:
            fh.write(b"{}")
        return {"files": [{"path": "b.json", "size": 2, "sha256": "x"}], "local_path": moved,
                "revision": entry["revision"]}
    real_check = RecordingProvider.quick_check

    def quick_check(self, entry):
        # as Ollama's: the recorded version is compared too
        wrong = [] if entry.get("revision") == "v1" else [Problem("manifest", "digest", "v1", entry.get("revision"))]
        return real_check(self, entry) + wrong
    monkeypatch.setattr(RecordingProvider, "repair", repair)
    monkeypatch.setattr(RecordingProvider, "quick_check", quick_check)
    out = run(tmp_path)
    assert out["action"] == "repair" and out["local_path"] == moved and out["model"]["size_bytes"] == 2


def test_a_repair_that_leaves_many_problems_names_the_first_five(tmp_path, monkeypatch):
    six = {f"f{i}.bin": b"x" for i in range(6)}
    monkeypatch.setattr(RecordingProvider, "versions", dict(RecordingProvider.versions, v1=six))
    out = run(tmp_path)
    for name in six:
        os.unlink(os.path.join(out["local_path"], name))
    monkeypatch.setattr(RecordingProvider, "repair", lambda self, entry, problems, progress: {
        "files": entry["files"], "local_path": entry["local_path"], "revision": entry["revision"]})
    with pytest.raises(_model_ops.VenomError) as info:
        run(tmp_path)
    assert info.value.msg == ("Repairing m left problems: f0.bin: missing; f1.bin: missing; f2.bin: missing; "
                              "f3.bin: missing; f4.bin: missing")


def test_even_a_short_token_never_reaches_the_journal_of_a_failure(tmp_path, monkeypatch):
    def boom(self, target, progress, entry=None):
        raise ValidationError("refused for k9z", fix="none")
    monkeypatch.setattr(RecordingProvider, "install", boom)
    with pytest.raises(ValidationError):
        run(tmp_path, token="k9z")
    ops = os.listdir(tmp_path / ".venom" / "operations")
    rec = json.loads((tmp_path / ".venom" / "operations" / ops[0]).read_text())
    assert "k9z" not in rec["error"] and rec["error"].startswith("refused for ********")


def test_latest_with_a_moving_reference_asks_the_source_again(tmp_path, monkeypatch):
    run(tmp_path)
    # a branch such as "main" is satisfied by the installed commit for present, but latest follows it
    monkeypatch.setattr(RecordingProvider, "satisfies", lambda self, entry: entry.get("status") == "installed")
    monkeypatch.setattr(RecordingProvider, "versions", dict(RecordingProvider.versions,
                                                            main=RecordingProvider.versions["v2"]))
    RecordingProvider.calls = []
    assert run(tmp_path, revision="main")["changed"] is False and RecordingProvider.calls == []
    out = run(tmp_path, state="latest", revision="main")
    assert out["action"] == "update" and out["revision"] == "main" and RecordingProvider.calls[0] == "resolve"


def _modes(root):
    out = {".": oct(os.stat(root).st_mode & 0o777)}
    for name in sorted(os.listdir(root)):
        out[name] = oct(os.stat(os.path.join(root, name)).st_mode & 0o777)
    return out


def test_a_mode_asked_for_an_installed_model_is_planned_applied_recorded_and_then_kept(tmp_path):
    first = run(tmp_path)
    root = first["local_path"]
    os.chmod(root, 0o755)
    for name in os.listdir(root):
        os.chmod(os.path.join(root, name), 0o644)
    check = run(tmp_path, check=True, mode="0640")
    wanted = {"mode": "0640", "directory_mode": "0750"}
    assert check["action"] == "permissions" and check["changed"]
    assert check["plan"]["reason"] == f"3 file(s) or directories of m differ from the owner, group or mode {wanted}"
    assert check["plan"]["permission_changes"] == [{"mode": ["0755", "0750"], "path": "."},
                                                   {"mode": ["0644", "0640"], "path": "a.bin"},
                                                   {"mode": ["0644", "0640"], "path": "b.json"}]
    assert check["diff"]["before"]["permissions"] == {"mode": "0644", "directory_mode": "0755"}
    assert check["diff"]["after"]["permissions"] == wanted and check["model"]["permissions"] == wanted
    assert _modes(root) == {".": "0o755", "a.bin": "0o644", "b.json": "0o644"}, "check mode changes nothing"
    out = run(tmp_path, mode="0640")
    assert out["changed"] and out["operation"]["type"] == "update"
    assert _modes(root) == {".": "0o750", "a.bin": "0o640", "b.json": "0o640"}
    assert Manifest(str(tmp_path)).get("m", "local")["permissions"] == wanted
    assert run(tmp_path)["changed"] is False, "the recorded mode holds"
    os.chmod(os.path.join(root, "a.bin"), 0o666)
    out = run(tmp_path)
    assert out["action"] == "permissions" and out["plan"]["permission_changes"] == [
        {"mode": ["0666", "0640"], "path": "a.bin"}]
    assert _modes(root)["a.bin"] == "0o640", "the recorded mode is enforced again"


def test_a_mode_the_files_already_have_is_only_recorded(tmp_path):
    first = run(tmp_path)
    root = first["local_path"]
    os.chmod(root, 0o750)
    for name in os.listdir(root):
        os.chmod(os.path.join(root, name), 0o640)
    out = run(tmp_path, check=True, mode="0640")
    assert out["action"] == "permissions" and out["plan"].get("permission_changes") is None
    assert out["plan"]["reason"] == ("recording the permissions {'mode': '0640', 'directory_mode': '0750'} "
                                     "its files have")
    assert out["diff"]["before"]["permissions"] == {"mode": "0640", "directory_mode": "0750"}
    assert run(tmp_path, mode="0640")["changed"] is True
    assert run(tmp_path, mode="0640")["changed"] is False


def test_a_metadata_change_with_a_new_mode_changes_both(tmp_path):
    first = run(tmp_path)
    out = run(tmp_path, check=True, display_name="Mine", mode="0600")
    assert out["action"] == "metadata" and out["plan"]["reason"] == "changed: display_name, permissions"
    assert len(out["plan"]["permission_changes"]) == 3
    out = run(tmp_path, display_name="Mine", mode="0600")
    assert out["model"]["display_name"] == "Mine" and out["model"]["permissions"]["mode"] == "0600"
    assert _modes(first["local_path"])["a.bin"] == "0o600"


def test_an_install_with_a_mode_gives_it_to_every_file(tmp_path):
    out = run(tmp_path, mode="0640", directory_mode="0700")
    assert _modes(out["local_path"]) == {".": "0o700", "a.bin": "0o640", "b.json": "0o640"}
    assert out["model"]["permissions"] == {"mode": "0640", "directory_mode": "0700"}
    out = run(tmp_path, state="absent", mode="0600")
    assert out["changed"] and out["model"] is None, "absent does not care about the mode"


def test_check_mode_predicts_a_metadata_change_on_top_of_the_whole_entry(tmp_path):
    run(tmp_path)
    out = run(tmp_path, check=True, display_name="Mine")
    assert out["model"]["display_name"] == "Mine" and out["model"]["revision"] == "v1"
    assert len(out["model"]["files"]) == 2 and out["model"]["status"] == "installed"
    assert out["size_bytes"] == 1002 and out["local_path"] == str(tmp_path / "local" / "m" / "v1")


def test_check_mode_shows_the_capabilities_a_provider_can_predict(tmp_path, monkeypatch):
    monkeypatch.setattr(RecordingProvider, "predict_capabilities", lambda self, target: {"max_context_length": 77})
    out = run(tmp_path, check=True, revision="v2")
    assert out["plan"]["capabilities_predicted"] is True and out["warnings"] == []
    assert out["model"]["detected_capabilities"] == {"max_context_length": 77}
    assert out["capabilities"]["max_context_length"] == 77
    assert out["model"]["requested_revision"] == "v2" and out["revision"] == "v2"


def test_check_mode_predicts_the_providers_fields_but_not_its_private_ones(tmp_path, monkeypatch):
    real = RecordingProvider.resolve

    def resolve(self, entry, latest=False):
        target = real(self, entry, latest)
        target.extra.update(source={"path": "/srv/m"}, _mtimes={"a.bin": 1})
        return target
    monkeypatch.setattr(RecordingProvider, "resolve", resolve)
    out = run(tmp_path, check=True)
    assert out["model"]["source"] == {"path": "/srv/m"} and "_mtimes" not in out["model"]


def test_check_mode_predicts_a_new_install_time_for_an_update_only(tmp_path, monkeypatch):
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0]["installed_at"] = "2020-01-01T00:00:00Z"
    monkeypatch.setattr(RecordingProvider, "versions", dict(RecordingProvider.versions, v1={
        "a.bin": b"A" * 1000, "b.json": b"{}", "c.txt": b"ccc"}))
    sync = run(tmp_path, check=True, state="latest")
    assert sync["action"] == "sync" and sync["model"]["installed_at"] == "2020-01-01T00:00:00Z"
    monkeypatch.setattr(RecordingProvider, "current", "v2")
    update = run(tmp_path, check=True, state="latest")
    assert update["action"] == "update" and update["model"]["installed_at"] != "2020-01-01T00:00:00Z"
    assert update["model"]["installed_at"] == update["model"]["updated_at"]


def test_asking_for_the_installed_version_by_another_reference_records_the_reference_only(tmp_path, monkeypatch):
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0]["requested_revision"] = "main"
    # as the Hub's: an entry installed from "main" does not satisfy a request for the tag "v1" without resolving it
    monkeypatch.setattr(RecordingProvider, "satisfies", lambda self, entry: False)
    RecordingProvider.calls = []
    out = run(tmp_path, check=True, revision="v1")
    assert out["action"] == "metadata" and out["plan"]["reason"] == "changed: requested_revision"
    assert out["model"]["requested_revision"] == "v1" and "install" not in RecordingProvider.calls
    out = run(tmp_path, revision="v1")
    assert Manifest(str(tmp_path)).get("m", "local")["requested_revision"] == "v1"
    assert run(tmp_path, revision="v1")["changed"] is False


def test_capabilities_edited_in_the_manifest_are_set_back_from_the_detected_ones_and_the_overrides(tmp_path):
    run(tmp_path, capabilities={"max_context_length": 4096})
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0]["capabilities"] = {"max_context_length": 1}
    out = run(tmp_path, capabilities={"max_context_length": 4096})
    assert out["action"] == "metadata" and out["plan"]["reason"] == "changed: capabilities, capability_overrides"
    assert out["model"]["capabilities"]["max_context_length"] == 4096
    assert out["model"]["capabilities"]["supports_system_role"] is True


def test_a_problem_with_the_whole_version_plans_every_file_again(tmp_path, monkeypatch):
    run(tmp_path)
    monkeypatch.setattr(RecordingProvider, "quick_check", lambda self, entry: [Problem(".", "missing")])
    out = run(tmp_path, check=True)
    assert out["action"] == "repair" and out["plan"]["fetch_bytes"] == 1002
    assert out["plan"]["files_to_fetch"] == ["a.bin", "b.json"]
    assert out["plan"]["reason"] == "1 file(s) of m are missing or differ: .: missing"


def test_a_repair_found_by_resolving_reports_the_resolved_version_and_names_five_problems(tmp_path, monkeypatch):
    six = {f"f{i}.bin": b"x" for i in range(6)}
    monkeypatch.setattr(RecordingProvider, "versions", dict(RecordingProvider.versions, v1=six))
    out = run(tmp_path)
    for name in six:
        os.unlink(os.path.join(out["local_path"], name))
    out = run(tmp_path, check=True, state="latest")
    assert out["action"] == "repair" and out["plan"]["revision"] == "v1" and out["plan"]["size_bytes"] == 6
    assert out["plan"]["reason"] == ("6 file(s) of m are missing or differ: f0.bin: missing; f1.bin: missing; "
                                     "f2.bin: missing; f3.bin: missing; f4.bin: missing")


def test_without_owner_or_mode_the_diff_shows_no_permissions(tmp_path):
    run(tmp_path)
    out = run(tmp_path, check=True, display_name="Other")
    assert "permissions" not in out["diff"]["before"] and "permissions" not in out["diff"]["after"]
    assert "permission_changes" not in out["plan"]


def test_a_metadata_plan_shows_the_resolved_version_and_the_permissions_the_files_have(tmp_path, monkeypatch):
    first = run(tmp_path)
    os.chmod(first["local_path"], 0o755)
    for name in os.listdir(first["local_path"]):
        os.chmod(os.path.join(first["local_path"], name), 0o644)
    out = run(tmp_path, check=True, display_name="Mine", mode="0600")
    assert out["diff"]["before"]["permissions"] == {"mode": "0644", "directory_mode": "0755"}
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0]["requested_revision"] = "main"
    monkeypatch.setattr(RecordingProvider, "satisfies", lambda self, entry: False)
    out = run(tmp_path, check=True, revision="v1", display_name="Mine")
    assert out["action"] == "metadata" and out["plan"]["revision"] == "v1" and out["plan"]["size_bytes"] == 1002


def test_what_an_installed_model_needs_is_told_with_the_version_it_was_resolved_to(tmp_path):
    run(tmp_path)
    out = run(tmp_path, check=True)
    assert out["plan"]["reason"] == "m is installed at v1" and "revision" not in out["plan"]
    out = run(tmp_path, check=True, state="verified")
    assert out["plan"]["reason"] == "m is installed at v1 and every file matches its digest"
    out = run(tmp_path, check=True, state="latest")
    assert out["action"] == "none" and out["plan"]["revision"] == "v1" and out["plan"]["size_bytes"] == 1002
    out = run(tmp_path, check=True, state="latest", mode="0600")
    assert out["action"] == "permissions" and out["plan"]["revision"] == "v1"
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0]["retained_versions"] = [
            {"revision": "v0", "local_path": str(tmp_path / "local" / "m" / "v0"), "reason": "active"}]
    out = run(tmp_path, check=True, state="latest")
    assert out["action"] == "prune" and out["plan"]["revision"] == "v1"


def test_a_model_marked_damaged_whose_files_all_match_again_is_recorded_as_installed(tmp_path):
    """venom_manifest's rebuild marks a model damaged when a file was missing then; once every file
    matches again (the disk came back, the file was restored), present records it as installed:
    it stayed damaged for ever, which the runtimes refuse to serve."""
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(status="damaged", damage="a.bin: missing")
    check = run(tmp_path, check=True)
    assert check["changed"] and check["action"] == "repair" and check["model"]["status"] == "installed"
    assert check["plan"]["fetch_bytes"] == 0 and check["plan"]["reason"] == (
        "m is recorded as damaged but every file matches its digest")
    RecordingProvider.calls = []
    out = run(tmp_path)
    assert out["changed"] and RecordingProvider.calls == ["verify"], "checked, nothing fetched"
    assert out["operation"]["type"] == "verify"
    entry = Manifest(str(tmp_path)).get("m", "local")
    assert entry["status"] == "installed" and "damage" not in entry and entry["revision"] == "v1"
    assert run(tmp_path)["changed"] is False


def test_the_plan_for_a_damaged_model_whose_files_match_names_the_latest_version_it_is_at(tmp_path):
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(status="damaged", damage="a.bin: missing")
    plan = run(tmp_path, check=True, state="latest")["plan"]
    assert plan["action"] == "repair" and plan["revision"] == "v1"
    assert plan["local_path"] == Manifest(str(tmp_path)).get("m", "local")["local_path"]


def test_an_update_names_both_versions_by_their_first_twelve_characters(tmp_path, monkeypatch):
    long_id = "c" * 40
    monkeypatch.setattr(RecordingProvider, "versions", dict(RecordingProvider.versions,
                                                            **{long_id: RecordingProvider.versions["v2"]}))
    run(tmp_path)
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0]["revision"] = None
    monkeypatch.setattr(RecordingProvider, "current", long_id)
    out = run(tmp_path, check=True, state="latest")
    assert out["plan"]["reason"] == f"m is at nothing, {long_id} is at {'c' * 12}"


def test_an_update_keeps_the_capability_overrides_given_before(tmp_path):
    run(tmp_path, capabilities={"max_context_length": 4096})
    RecordingProvider.current = "v2"
    out = run(tmp_path, state="latest")
    assert out["revision"] == "v2" and out["model"]["capability_overrides"] == {"max_context_length": 4096}
    assert out["capabilities"]["max_context_length"] == 4096


def test_check_mode_predicts_the_install_and_update_times(tmp_path):
    out = run(tmp_path, check=True)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", out["model"]["installed_at"])
    assert out["model"]["updated_at"] == out["model"]["installed_at"]


def test_an_entry_records_the_digest_of_its_file_list_in_check_mode_and_for_real(tmp_path):
    check = run(tmp_path, check=True)
    out = run(tmp_path)
    assert check["model"]["sha256"] == files_digest(check["model"]["files"])
    assert out["model"]["sha256"] == files_digest(out["model"]["files"]) == check["model"]["sha256"]


def test_check_mode_predicts_that_an_active_model_stays_active_and_keeps_its_name(tmp_path):
    run(tmp_path, display_name="Mine")
    Manifest(str(tmp_path)).mark_active("a", "m", "local")
    RecordingProvider.current = "v2"
    out = run(tmp_path, check=True, state="latest")
    assert out["action"] == "update" and out["model"]["active"] is True
    assert out["model"]["active_runtime"] == Manifest(str(tmp_path)).get("m", "local")["active_runtime"]
    assert out["model"]["display_name"] == "Mine"


def test_a_model_is_named_by_the_last_part_of_its_name_and_an_update_keeps_its_runtime(tmp_path):
    req = ModelRequest(name="team/sub/m", provider="local", models_dir=str(tmp_path), runtime="ollama")
    out = _model_ops.ModelOperations(req, check_mode=True).run()
    assert out["model"]["display_name"] == "m"
    run(tmp_path, runtime="ollama")
    RecordingProvider.current = "v2"
    out = run(tmp_path, state="latest")
    assert out["revision"] == "v2" and out["model"]["runtime"] == "ollama"


def test_a_repair_keeps_the_old_versions_kept_for_a_runtime(tmp_path):
    first = run(tmp_path)
    old = [{"revision": "v0", "local_path": str(tmp_path / "local" / "m" / "v0"), "reason": "active"}]
    with Manifest(str(tmp_path)).transaction() as doc:
        doc["models"][0].update(retained_versions=old, active=True, active_runtime="vllm")
    os.unlink(os.path.join(first["local_path"], "a.bin"))
    out = run(tmp_path)
    assert out["action"] == "repair" and out["model"]["retained_versions"] == old
    assert out["model"]["active"] is True and out["model"]["active_runtime"] == "vllm"
