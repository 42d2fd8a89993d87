# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The manifest's domain operations: what venom_model and venom_runtime change, and what each keeps."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import ManifestError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.locks import manifest_lock, model_lock, runtime_lock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, active_instances, new_entry
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths


def _version(models_dir, name, revision, size=3):
    path = os.path.join(str(models_dir), "local", name, revision)
    os.makedirs(path, exist_ok=True)
    return new_entry(name, "local", size_bytes=size, local_path=path, revision=revision,
                     files=[{"path": "w.bin", "size": size, "sha256": None}])


def _on_disk(models_dir) -> dict:
    with open(os.path.join(str(models_dir), "manifest.json"), encoding="utf-8") as fh:
        return {e["name"]: e for e in json.load(fh)["models"]}


# -- record_install ------------------------------------------------------------------------------
def test_record_install_adds_a_new_entry_served_by_no_instance(tmp_path):
    m = Manifest(str(tmp_path))
    written = m.record_install(dict(_version(tmp_path, "m", "v1"), active=True, active_runtime="x",
                                    active_instances=["x"]))
    assert written["active"] is False and written["active_runtime"] is None and "active_instances" not in written
    assert _on_disk(tmp_path)["m"] == written, "returned as written"
    assert os.listdir(tmp_path / ".venom" / "records"), "the record for a rebuild is written with it"


def test_record_install_of_a_new_version_keeps_every_instance_that_serves_the_model(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    m.mark_active("a", "m", "local")
    m.mark_active("b", "m", "local")
    written = m.record_install(_version(tmp_path, "m", "v2"))  # built without the marks, as venom_model does
    entry = _on_disk(tmp_path)["m"]
    assert entry["revision"] == "v2" and entry == written
    assert entry["active_instances"] == ["a", "b"] and entry["active"] is True and entry["active_runtime"] == "a"
    assert len(Manifest(str(tmp_path)).models()) == 1, "replaced, not added"


def test_record_install_does_not_let_an_entry_unmark_the_runtimes(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    m.mark_active("a", "m", "local")
    m.record_install(dict(_version(tmp_path, "m", "v1"), active=False, active_runtime=None, active_instances=[]))
    assert _on_disk(tmp_path)["m"]["active_instances"] == ["a"]


def test_record_install_of_an_invalid_entry_changes_nothing(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    before = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(ManifestError, match="not inside"):
        m.record_install(dict(_version(tmp_path, "m", "v2"), local_path="/etc"))
    assert (tmp_path / "manifest.json").read_bytes() == before


# -- set_metadata --------------------------------------------------------------------------------
def test_set_metadata_changes_the_fields_and_keeps_files_and_marks(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    m.mark_active("a", "m", "local")
    overrides = {"max_context_length": 4096}
    after = m.set_metadata("m", "local", {"display_name": "My model", "capability_overrides": overrides})
    overrides["max_context_length"] = 1  # the caller's dict is not shared with the manifest
    entry = _on_disk(tmp_path)["m"]
    assert entry == after and entry["display_name"] == "My model"
    assert entry["capability_overrides"] == {"max_context_length": 4096}
    assert entry["files"] == [{"path": "w.bin", "size": 3, "sha256": None}] and entry["active_instances"] == ["a"]


def test_set_metadata_refuses_fields_that_are_not_metadata(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    for field in ("active", "local_path", "files"):
        with pytest.raises(ValueError, match=field):
            m.set_metadata("m", "local", {field: None})
    assert _on_disk(tmp_path)["m"]["local_path"].endswith("v1")


def test_set_metadata_of_a_model_not_listed_names_it(tmp_path):
    with pytest.raises(ManifestError, match="no entry for the local model ghost") as info:
        Manifest(str(tmp_path)).set_metadata("ghost", "local", {"display_name": "x"})
    assert "state: present" in info.value.fix


# -- drop_retained_versions ----------------------------------------------------------------------
def test_pruning_keeps_the_installed_version_and_the_active_marks(tmp_path):
    m = Manifest(str(tmp_path))
    old = _version(tmp_path, "m", "v1")
    m.record_install(dict(_version(tmp_path, "m", "v2"), retained_versions=[
        {"revision": "v1", "local_path": old["local_path"], "reason": "active on a"}]))
    m.mark_active("a", "m", "local")
    after = m.drop_retained_versions("m", "local")
    entry = _on_disk(tmp_path)["m"]
    assert entry == after and "retained_versions" not in entry
    assert entry["revision"] == "v2" and entry["local_path"].endswith("v2") and entry["active_instances"] == ["a"]


def test_pruning_a_model_not_listed_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="no entry"):
        Manifest(str(tmp_path)).drop_retained_versions("ghost", "local")


# -- mark_active / served_by ---------------------------------------------------------------------
def test_marking_a_model_active_on_instance_b_keeps_it_active_on_a(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    assert m.mark_active("a", "m", "local") is True
    assert m.mark_active("b", "m", "local") is True
    entry = _on_disk(tmp_path)["m"]
    assert entry["active_instances"] == ["a", "b"] and entry["active"] is True and entry["active_runtime"] == "a"
    assert m.served_by("a")["name"] == "m" and m.served_by("b")["name"] == "m"


def test_marking_another_model_on_an_instance_unmarks_its_previous_one_only_there(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    m.record_install(_version(tmp_path, "n", "v1"))
    m.mark_active("a", "m", "local")
    m.mark_active("b", "m", "local")
    m.mark_active("a", "n", "local")
    entries = _on_disk(tmp_path)
    assert entries["m"]["active_instances"] == ["b"] and entries["m"]["active_runtime"] == "b"
    assert entries["n"]["active_instances"] == ["a"] and entries["n"]["active"] is True
    m.mark_active("b", "n", "local")
    entries = _on_disk(tmp_path)
    assert entries["m"]["active"] is False and entries["m"]["active_runtime"] is None
    assert entries["m"]["active_instances"] == []
    assert m.served_by("a")["name"] == m.served_by("b")["name"] == "n" and m.served_by("c") is None


def test_marking_again_changes_nothing(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    m.mark_active("a", "m", "local")
    before = (tmp_path / "manifest.json").read_bytes()
    assert m.mark_active("a", "m", "local") is False
    assert (tmp_path / "manifest.json").read_bytes() == before


def test_marking_upgrades_an_entry_written_before_instances(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(dict(_version(tmp_path, "m", "v1"), active=True, active_runtime="vllm"))  # no active_instances
    assert active_instances(m.get("m", "local")) == ["vllm"]
    assert m.served_by("vllm")["name"] == "m"
    assert m.mark_active("vllm", "m", "local") is True, "the list is written out"
    assert _on_disk(tmp_path)["m"]["active_instances"] == ["vllm"]


def test_marking_refuses_an_instance_name_that_is_not_one(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    with pytest.raises(ValidationError, match="instance name"):
        m.mark_active("../a", "m", "local")
    assert "active_instances" not in _on_disk(tmp_path)["m"]


# -- StatePaths passed on ------------------------------------------------------------------------
def test_the_store_takes_its_paths_or_the_directory_alike(tmp_path):
    paths = StatePaths(str(tmp_path))
    assert StatePaths.of(paths) is paths and StatePaths.of(str(tmp_path)).models_dir == paths.models_dir
    assert Manifest(paths).paths is paths and Journal(paths).paths is paths
    Manifest(paths).record_install(_version(tmp_path, "m", "v1"))
    assert Manifest(str(tmp_path)).get("m", "local")["revision"] == "v1"
    paths.ensure()
    for by_paths, by_dir in ((manifest_lock(paths), manifest_lock(str(tmp_path))),
                             (model_lock(paths, "local", "m"), model_lock(str(tmp_path), "local", "m")),
                             (runtime_lock(paths, "a"), runtime_lock(str(tmp_path), "a"))):
        assert by_paths.path == by_dir.path and by_paths.path.startswith(paths.locks_dir)


def test_marking_an_ollama_model_active_follows_its_naming_rule(tmp_path):
    """The instance serves the entry however the model is spelled (Ollama's one naming rule)."""
    m = Manifest(str(tmp_path))
    m.record_install(new_entry("llama3:latest", "ollama", size_bytes=3, revision="a" * 64))
    assert m.mark_active("ollama", "LIBRARY/llama3", "ollama") is True
    assert m.served_by("ollama")["name"] == "llama3:latest"


def test_pruning_a_model_that_kept_no_version_changes_nothing_else(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    after = m.drop_retained_versions("m", "local")
    assert "retained_versions" not in after and after["revision"] == "v1"


def _hf_org_m(models_dir, **extra):
    """A Hugging Face entry named like a local one ('org/m'): the provider tells them apart."""
    hf_dir = models_dir / "huggingface" / "org" / "m" / ("a" * 40)
    hf_dir.mkdir(parents=True, exist_ok=True)
    return dict(new_entry("org/m", "huggingface", size_bytes=3, local_path=str(hf_dir), revision="a" * 40,
                          files=[{"path": "w.bin", "size": 3, "sha256": None}]), **extra)


def test_pruning_touches_only_the_named_provider_of_a_shared_name(tmp_path):
    m = Manifest(str(tmp_path))
    kept = {"revision": "b" * 40, "local_path": str(tmp_path / "huggingface" / "org" / "m" / ("b" * 40)),
            "reason": "active on a"}
    m.record_install(_hf_org_m(tmp_path, retained_versions=[kept]))
    m.record_install(dict(_version(tmp_path, "org/m", "v2"), retained_versions=[
        {"revision": "v1", "local_path": _version(tmp_path, "org/m", "v1")["local_path"], "reason": "active on b"}]))
    m.drop_retained_versions("org/m", "local")
    by_provider = {e["provider"]: e for e in m.load()["models"]}
    assert "retained_versions" not in by_provider["local"]
    assert by_provider["huggingface"]["retained_versions"] == [kept]


def test_a_new_local_model_does_not_inherit_the_marks_of_a_hugging_face_model_of_the_same_name(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_hf_org_m(tmp_path))
    m.mark_active("a", "org/m", "huggingface")
    entry = m.record_install(_version(tmp_path, "org/m", "v1"))
    assert entry["active"] is False and entry["active_runtime"] is None and "active_instances" not in entry
    assert m.served_by("a")["provider"] == "huggingface"


def test_marking_a_model_of_one_provider_leaves_the_other_providers_model_of_that_name(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_hf_org_m(tmp_path))
    m.record_install(_version(tmp_path, "org/m", "v1"))
    assert m.mark_active("a", "org/m", "local") is True
    by_provider = {e["provider"]: e for e in m.load()["models"]}
    assert by_provider["local"]["active_instances"] == ["a"]
    assert by_provider["huggingface"]["active"] is False and not active_instances(by_provider["huggingface"])


def test_an_entry_written_before_instances_and_no_longer_active_is_served_by_none(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(dict(_version(tmp_path, "m", "v1"), active=False, active_runtime="vllm"))
    assert active_instances(m.get("m", "local")) == [] and m.served_by("vllm") is None


def test_a_metadata_change_is_stamped_and_a_missing_model_names_the_manifest(tmp_path):
    m = Manifest(str(tmp_path))
    m.record_install(_version(tmp_path, "m", "v1"))
    with m.transaction() as doc:
        doc["models"][0]["updated_at"] = "2020-01-02T03:04:05Z"
    after = m.set_metadata("m", "local", {"display_name": "M"})
    assert after["updated_at"] != "2020-01-02T03:04:05Z" and after["updated_at"].startswith("20")
    assert _on_disk(tmp_path)["m"]["updated_at"] == after["updated_at"]
    with pytest.raises(ManifestError) as err:
        m.set_metadata("ghost", "local", {"display_name": "G"})
    assert err.value.details["path"] == m.path
