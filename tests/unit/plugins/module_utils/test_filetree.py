# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the file-tree providers (huggingface, local) share (models/filetree.py), shown for both:
removal is confined to the provider's directory, never follows a link out of the store, prunes the
directories it leaves empty up to models_dir, and the staging area is measured and discarded alike."""
from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.models.filetree import FileTreeProvider
from ansible_collections.venom.models.plugins.module_utils.models.huggingface import HuggingFaceProvider
from ansible_collections.venom.models.plugins.module_utils.models.local import LocalProvider
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest, Progress
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths

PROVIDERS = {"huggingface": (HuggingFaceProvider, "org/model", "c" * 40),
             "local": (LocalProvider, "team/model", "d" * 64)}


@pytest.fixture(params=sorted(PROVIDERS))
def setup(request, tmp_path):
    """(provider, models_dir, a version id) for each file-tree provider, with a version installed."""
    cls, name, version = PROVIDERS[request.param]
    models = str(tmp_path / "models")
    provider = cls(ModelRequest(name=name, provider=request.param, models_dir=models),
                   StatePaths(models).ensure())
    assert isinstance(provider, FileTreeProvider)
    final = provider.version_dir(version)
    os.makedirs(final)
    with open(os.path.join(final, "config.json"), "w", encoding="utf-8") as fh:
        fh.write("{}")
    return provider, models, version


def _entry(path, size=2):
    return {"status": "installed", "local_path": path, "allow_patterns": None, "ignore_patterns": None,
            "files": [{"path": "config.json", "size": size, "sha256": hashlib.sha256(b"{}").hexdigest()}]}


def test_the_places_follow_one_layout(setup):
    provider, models, version = setup
    key = version[:12] if provider.name == "local" else version
    assert provider.version_dir(version) == os.path.join(provider.model_root(), key)
    assert provider.model_root() == os.path.join(models, provider.name, *provider.model_id.split("/"))
    assert provider.staging(version).root == os.path.join(provider.staging_root(), key)
    assert provider.staging_root().startswith(os.path.join(models, ".venom", "staging") + os.sep)


def test_quick_check_and_verify_find_the_same_damage(setup):
    provider, _models, version = setup
    path = provider.version_dir(version)
    assert provider.quick_check(_entry(path)) == [] and provider.verify(_entry(path), Progress()) == []
    assert [p.kind for p in provider.quick_check(_entry(path, size=3))] == ["size"]
    assert [p.kind for p in provider.verify(_entry(path, size=3), Progress())] == ["size"]


def test_removing_the_last_version_prunes_the_empty_model_directories(setup):
    """remove_version of the only version leaves no empty <provider>/<name...>/ behind (huggingface kept them)."""
    provider, models, version = setup
    provider.remove_version(provider.version_dir(version))
    assert not os.path.exists(os.path.join(models, provider.name)), "the empty directories up to models_dir go"
    assert os.path.isdir(models), "models_dir itself stays"


def test_removing_an_old_version_keeps_the_model_directory_of_the_new_one(setup):
    provider, _models, version = setup
    newer = provider.version_dir("e" * 64)
    os.makedirs(newer)
    provider.remove_version(provider.version_dir(version))
    assert os.path.isdir(newer) and not os.path.exists(provider.version_dir(version))


def test_removing_a_model_whose_files_are_gone_prunes_its_empty_directories(setup):
    """The version directory was removed by hand: state absent still leaves no empty directory (local kept them)."""
    provider, models, version = setup
    path = provider.version_dir(version)
    os.remove(os.path.join(path, "config.json"))
    os.rmdir(path)
    assert provider.remove(_entry(path)) == []
    assert not os.path.exists(os.path.join(models, provider.name))


def test_removal_refuses_a_link_out_of_the_store_and_leaves_its_target(setup, tmp_path):
    provider, _models, version = setup
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    link = os.path.join(provider.model_root(), "linked")
    os.symlink(str(outside), link)
    with pytest.raises(VenomError) as err:
        provider.remove(dict(_entry(provider.version_dir(version)), retained_versions=[{"local_path": link}]))
    assert "outside" in err.value.msg and "symbolic link" in err.value.fix
    assert (outside / "keep.txt").read_text() == "mine"


def test_removal_does_not_follow_a_link_inside_a_version(setup, tmp_path):
    provider, models, version = setup
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    os.symlink(str(outside), os.path.join(provider.version_dir(version), "sub"))
    assert provider.remove(_entry(provider.version_dir(version))) == [provider.version_dir(version)]
    assert (outside / "keep.txt").read_text() == "mine" and not os.path.exists(os.path.join(models, provider.name))


def test_the_staging_area_is_measured_and_discarded(setup):
    provider, _models, version = setup
    assert not provider.has_staging() and provider.staging_bytes() == 0 and provider.discard_staging() is False
    stage = provider.staging(version).ensure()
    with open(stage.partial_path("w.bin"), "wb") as fh:
        fh.write(b"x" * 1000)
    assert provider.has_staging() and provider.staging_bytes() == 1000
    assert provider.discard_staging() is True and not os.path.exists(provider.staging_root())


def test_discarding_a_staging_area_that_is_a_link_out_of_the_store_is_refused(setup, tmp_path):
    """A staging root planted as a link to a directory elsewhere: a VenomError naming the fix, the target
    untouched (local raised shutil.rmtree's bare OSError)."""
    provider, _models, _version = setup
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    os.symlink(str(outside), provider.staging_root())
    with pytest.raises(VenomError) as err:
        provider.discard_staging()
    assert "outside" in err.value.msg and "symbolic link" in err.value.fix
    assert (outside / "keep.txt").read_text() == "mine"


def test_verifying_announces_its_total_and_counts_every_byte_it_reads(setup):
    provider, _models, version = setup
    seen = []
    progress = Progress(lambda done, total, message, force: seen.append((done, total, message)))
    assert provider.verify(_entry(provider.version_dir(version)), progress) == []
    assert seen[0] == (0, 2, f"verifying 1 file(s) of {provider.model_id}")
    assert progress.done == 2 and progress.transferred == 0, "read from disk, not transferred"


def test_an_entry_without_files_or_a_path_has_nothing_to_check_or_remove(setup):
    provider, _models, version = setup
    path = provider.version_dir(version)
    assert provider.quick_check({"local_path": path}) == []
    assert provider.verify({"local_path": path}, Progress()) == []
    assert provider.remove({"local_path": None, "retained_versions": None}) == []
    assert os.path.isdir(path), "the installed version of another entry stays"


def test_an_entry_is_the_same_selection_only_with_the_same_patterns(setup):
    provider, _models, _version = setup
    assert provider.same_selection({"allow_patterns": None, "ignore_patterns": None})
    assert provider.same_selection({})
    assert not provider.same_selection({"allow_patterns": ["*.json"], "ignore_patterns": None})
    assert not provider.same_selection({"allow_patterns": None, "ignore_patterns": ["*.md"]})


def test_removing_a_model_removes_its_retained_versions_too(setup):
    provider, models, version = setup
    old = provider.version_dir("e" * 64)
    os.makedirs(old)
    current = provider.version_dir(version)
    removed = provider.remove(dict(_entry(current), retained_versions=[{"local_path": old}, {"local_path": None}]))
    assert removed == [current, old] and not os.path.exists(os.path.join(models, provider.name))


def test_a_models_staging_directory_is_named_for_its_provider_and_model(setup):
    provider, _models, _version = setup
    slug = provider.model_id.replace("/", "_")
    digest = hashlib.sha256(provider.model_id.encode()).hexdigest()[:12]
    assert os.path.basename(provider.staging_root()) == f"{provider.prefix}-{slug}-{digest}"
    assert provider.prefix in ("hf", "local")
