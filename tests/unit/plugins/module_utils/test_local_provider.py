# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The local provider (models/local.py) in process: adopting a directory on the host, copied or
hard-linked, every file verified; hidden metadata and links out of the source left out; ``latest``
re-reading a changed source; a repair from the source; the source's checks and their fixes."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import (
    IntegrityError, NotFoundError, ProviderError, QuotaError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.models import local as _local
from ansible_collections.venom.models.plugins.module_utils.models.local import LocalProvider
from ansible_collections.venom.models.plugins.module_utils.models.operations import ModelOperations
from ansible_collections.venom.models.plugins.module_utils.models.providers import (
    FileSpec, ModelRequest, Problem, Progress, files_digest)
from ansible_collections.venom.models.plugins.module_utils.store import ownership
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths

CONFIG = b'{"model_type": "llama", "max_position_embeddings": 2048}\n'
WEIGHTS = bytes(range(256)) * 64   # 16 KiB
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "sub/tokenizer.json": b'{"a": 1}\n'}


def _write(root, files):
    for rel, data in files.items():
        path = os.path.join(str(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def _source(tmp_path, files=None):
    src = tmp_path / "incoming" / "model"
    _write(src, FILES if files is None else files)
    return src


def _run(models, check=False, **kw):
    kw.setdefault("name", "team/m")
    req = ModelRequest(provider="local", models_dir=str(models), **kw)
    return ModelOperations(req, check_mode=check).run()


def _provider(models, **kw):
    kw.setdefault("name", "team/m")
    return LocalProvider(ModelRequest(provider="local", models_dir=str(models), **kw), StatePaths(str(models)))


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def test_a_directory_is_adopted_as_a_copy_with_every_file_and_digest(tmp_path):
    src = _source(tmp_path)
    # what is not part of the model: hidden metadata, a cache, a link to a directory, a dangling link
    _write(src, {".git/HEAD": b"ref", ".cache/huggingface/x.metadata": b"m", ".venom/x": b"v",
                 "__pycache__/a.pyc": b"c"})
    os.symlink(str(src / "sub"), str(src / "linked-dir"))
    os.symlink(str(src / "nowhere"), str(src / "dangling"))
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    assert out["changed"] and out["action"] == "install"
    assert out["plan"]["fetch_bytes"] == sum(len(d) for d in FILES.values()), "a copy counts its bytes"
    entry = Manifest(str(models)).get("team/m", "local")
    assert sorted(f["path"] for f in entry["files"]) == sorted(FILES)
    for rec in entry["files"]:
        assert rec["sha256"] == hashlib.sha256(FILES[rec["path"]]).hexdigest()
        assert rec["size"] == len(FILES[rec["path"]])
        assert rec["mtime_ns"] == os.stat(src / rec["path"]).st_mtime_ns
    version = files_digest(entry["files"])
    assert entry["revision"] == version and entry["requested_revision"] is None
    assert entry["local_path"] == str(models / "local" / "team" / "m" / version[:12])
    assert entry["source"] == {"path": str(src)} and entry["size_bytes"] == sum(len(d) for d in FILES.values())
    assert entry["runtime"] == "vllm" and entry["capabilities"]["max_context_length"] == 2048
    for rel, data in FILES.items():
        installed = os.path.join(entry["local_path"], rel)
        assert _read(installed) == data
        assert os.stat(installed).st_ino != os.stat(src / rel).st_ino, "copied, not linked"
        assert os.stat(installed).st_mode & 0o777 == 0o644
    assert os.stat(os.path.join(entry["local_path"], "sub")).st_mode & 0o777 == 0o755
    assert not os.path.exists(models / ".venom" / "staging" / "local-team-m") or not os.listdir(
        models / ".venom" / "staging"), "the staging area is gone"
    again = _run(models, source=str(src), adopt_mode="copy")
    assert again["changed"] is False and again["action"] == "none"


def test_a_hard_linked_adoption_takes_no_space_and_shares_the_inode(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    check = _run(models, check=True, source=str(src))
    assert check["plan"]["fetch_bytes"] == 0 and check["plan"]["fetch_files"] == 3
    assert check["model"]["capabilities"]["max_context_length"] == 2048, "predicted from the source's files"
    assert check["plan"]["capabilities_predicted"] is True
    out = _run(models, source=str(src), adopt_mode="hardlink")
    installed = os.path.join(out["local_path"], "model.safetensors")
    assert os.stat(installed).st_ino == os.stat(src / "model.safetensors").st_ino
    assert out["bytes_downloaded"] == 0 or out["bytes_downloaded"] == sum(len(d) for d in FILES.values())


def test_a_copy_is_never_more_readable_than_its_source(tmp_path):
    src = _source(tmp_path)
    os.chmod(src / "config.json", 0o600)
    os.chmod(src / "model.safetensors", 0o755)
    out = _run(tmp_path / "models", source=str(src), adopt_mode="copy")
    assert os.stat(os.path.join(out["local_path"], "config.json")).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(out["local_path"], "model.safetensors")).st_mode & 0o777 == 0o644


def test_a_link_out_of_the_source_is_refused_by_name_and_a_link_inside_is_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root:x\n")
    src = _source(tmp_path)
    os.symlink(str(src / "config.json"), str(src / "alias.json"))
    os.symlink(str(secret), str(src / "shadow"))
    models = tmp_path / "models"
    with pytest.raises(ValidationError) as info:
        _run(models, source=str(src))
    assert f"holds shadow, a symbolic link to {secret}" in info.value.msg
    assert str(src / "shadow") in info.value.fix and "ignore_patterns" in info.value.fix
    assert Manifest(str(models)).get("team/m", "local") is None
    out = _run(models, source=str(src), ignore_patterns=["shadow"], adopt_mode="copy")
    installed = os.path.join(out["local_path"], "alias.json")
    assert not os.path.islink(installed) and _read(installed) == CONFIG


def test_a_hub_cache_snapshot_may_link_into_its_blobs_only(tmp_path):
    repo = tmp_path / "hub" / "models--org--m"
    snap = repo / "snapshots" / ("c" * 40)
    _write(snap, {"config.json": CONFIG})
    _write(repo / "blobs", {"abc": WEIGHTS})
    os.symlink(str(repo / "blobs" / "abc"), str(snap / "model.safetensors"))
    assert LocalProvider.link_root(str(snap)) == str(repo)
    plain = tmp_path / "plain" / "snapshots" / "x"
    assert LocalProvider.link_root(str(plain)) == str(plain), "a 'snapshots' dir outside a models-- repo"
    out = _run(tmp_path / "models", source=str(snap), adopt_mode="copy")
    assert _read(os.path.join(out["local_path"], "model.safetensors")) == WEIGHTS


def test_the_source_is_checked_with_the_fix(tmp_path):
    models = tmp_path / "models"
    with pytest.raises(ValidationError) as info:
        _provider(models, source="relative/dir")
    assert "'relative/dir' is not an absolute path" in info.value.msg
    with pytest.raises(NotFoundError) as info:
        _provider(models, source=str(tmp_path / "nope"))
    assert "does not exist" in info.value.msg and "copy the model directory" in info.value.fix.lower()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotFoundError):
        _provider(models, source=str(tmp_path / "file"))
    for inside in (models / "local", models / "local" / "x", models / ".venom" / "y"):
        inside.mkdir(parents=True, exist_ok=True)
        with pytest.raises(ValidationError) as info:
            _provider(models, source=str(inside))
        assert "inside the directories venom.models manages" in info.value.msg
    neighbour = models / "localish"
    neighbour.mkdir()
    assert _provider(models, source=str(neighbour)).source == str(neighbour), "a sibling that only shares a prefix"
    with pytest.raises(ValidationError):
        _provider(models, source=str(_source(tmp_path)), adopt_mode="symlink")


def test_without_source_the_recorded_one_is_used_else_the_error_names_the_option(tmp_path):
    models = tmp_path / "models"
    with pytest.raises(ValidationError) as info:
        _run(models)
    assert "provider local needs source" in info.value.msg and "team/m" in info.value.msg
    assert "absolute path" in info.value.fix
    src = _source(tmp_path)
    _run(models, source=str(src))
    os.unlink(os.path.join(Manifest(str(models)).get("team/m", "local")["local_path"], "config.json"))
    out = _run(models)   # the repair reads the recorded source
    assert out["action"] == "repair" and out["changed"]
    assert _read(os.path.join(out["local_path"], "config.json")) == CONFIG


def test_nothing_left_to_adopt_is_refused(tmp_path):
    src = _source(tmp_path)
    with pytest.raises(NotFoundError) as info:
        _run(tmp_path / "models", source=str(src), allow_patterns=["*.gguf"])
    assert "has no files to adopt" in info.value.msg and "allow_patterns" in info.value.fix


def test_latest_adopts_a_changed_source_and_present_keeps_the_adopted_version(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    first = _run(models, source=str(src), adopt_mode="copy")
    _write(src, {"config.json": b'{"model_type": "llama", "max_position_embeddings": 4096}\n'})
    assert _run(models, source=str(src), adopt_mode="copy")["changed"] is False, "present keeps it"
    out = _run(models, source=str(src), adopt_mode="copy", state="latest")
    assert out["action"] == "update" and out["local_path"] != first["local_path"]
    assert not os.path.exists(first["local_path"]) and out["capabilities"]["max_context_length"] == 4096
    assert _run(models, source=str(src), adopt_mode="copy", state="latest")["changed"] is False


def test_latest_rehashes_a_file_whose_time_changed(tmp_path, monkeypatch):
    src = _source(tmp_path)
    models = tmp_path / "models"
    _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    hashed = []
    real = _local.file_digests

    def counting(path, size=None, git=False, progress=None):
        hashed.append(os.path.basename(path))
        return real(path, size, git=git, progress=progress)
    monkeypatch.setattr(_local, "file_digests", counting)
    prov = _provider(models, source=str(src))
    target = prov.resolve(entry)
    assert hashed == [] and target.revision == entry["revision"] and target.pending == []
    os.utime(src / "config.json", ns=(1, 1))
    target = prov.resolve(entry)
    assert sorted(hashed) == sorted(os.path.basename(p) for p in FILES), "a changed time: the source is hashed"
    assert target.revision == entry["revision"], "same content, same version"


def test_a_source_with_other_files_than_recorded_is_not_unchanged(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    prov = _provider(models, source=str(src))
    assert prov._unchanged(entry, str(src))   # pylint: disable=protected-access
    assert not prov._unchanged(entry, str(tmp_path))   # pylint: disable=protected-access
    _write(src, {"extra.txt": b"x"})
    assert not prov._unchanged(entry, str(src))   # pylint: disable=protected-access
    os.unlink(src / "extra.txt")
    _write(src, {"config.json": CONFIG + b" "})
    assert not prov._unchanged(entry, str(src))   # pylint: disable=protected-access


def test_a_repair_the_source_can_no_longer_provide_fails_with_the_way_out(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    installed = os.path.join(out["local_path"], "model.safetensors")
    with open(installed, "r+b") as fh:
        fh.write(b"\xff\xff")
    repaired = _run(models, source=str(src), adopt_mode="copy", state="verified")
    assert repaired["action"] == "repair" and _read(installed) == WEIGHTS
    os.unlink(installed)
    (src / "model.safetensors").write_bytes(b"different")
    with pytest.raises(ProviderError) as info:
        _run(models, source=str(src), adopt_mode="copy")
    assert "Cannot repair model.safetensors of team/m" in info.value.msg
    assert "no longer has the recorded content" in info.value.msg and "state: latest" in info.value.fix
    os.unlink(src / "model.safetensors")
    with pytest.raises(ProviderError):
        _run(models, source=str(src), adopt_mode="copy")


def test_a_repair_of_a_file_of_the_same_size_but_other_content_is_refused(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    (src / "model.safetensors").write_bytes(b"\0" * len(WEIGHTS))
    prov = _provider(models, source=str(src), adopt_mode="copy")
    with pytest.raises(ProviderError, match="no longer has the recorded content"):
        prov.repair(entry, [Problem(path="model.safetensors", kind="missing")], Progress())
    assert _read(os.path.join(out["local_path"], "model.safetensors")) == WEIGHTS


def test_a_repair_brings_only_the_damaged_files_and_reports_its_total(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    os.unlink(os.path.join(out["local_path"], "sub", "tokenizer.json"))
    os.rmdir(os.path.join(out["local_path"], "sub"))
    seen = []
    progress = Progress(lambda done, total, message, force: seen.append((done, total, message)))
    fields = _provider(models, source=str(src), adopt_mode="copy").repair(
        entry, [Problem(path="sub/tokenizer.json", kind="missing")], progress)
    assert fields == {"files": entry["files"], "local_path": entry["local_path"], "revision": entry["revision"]}
    size = len(FILES["sub/tokenizer.json"])
    assert seen[0] == (0, size, "repairing 1 file(s) of team/m") and progress.done == size
    assert _read(os.path.join(out["local_path"], "sub", "tokenizer.json")) == FILES["sub/tokenizer.json"]
    assert not os.path.exists(_provider(models).staging_root()), "the staging area is discarded"


def test_a_file_that_changes_while_it_is_adopted_is_an_integrity_error(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    prov = _provider(models, source=str(src), adopt_mode="copy")
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("config.json", len(CONFIG), sha256="0" * 64)
    with pytest.raises(IntegrityError) as info:
        prov._bring(stage, str(src), spec, False, Progress())   # pylint: disable=protected-access
    assert "the source changed while it was adopted" in info.value.msg and "config.json" in info.value.msg
    assert not os.path.exists(stage.partial_path("config.json")) and not stage.verified(spec)
    good = FileSpec("config.json", len(CONFIG), sha256=hashlib.sha256(CONFIG).hexdigest())
    with open(stage.partial_path("config.json"), "wb") as fh:
        fh.write(b"left by a killed run")
    progress = Progress()
    prov._bring(stage, str(src), good, False, progress)   # pylint: disable=protected-access
    assert stage.verified(good) and progress.transferred == len(CONFIG)


def test_a_source_that_cannot_be_read_is_a_provider_error_naming_it(tmp_path, monkeypatch):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src), adopt_mode="copy")
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("config.json", len(CONFIG), sha256=hashlib.sha256(CONFIG).hexdigest())
    real_open = open

    def refusing(path, *args, **kw):
        if str(path) == str(src / "config.json"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kw)
    monkeypatch.setattr("builtins.open", refusing)
    with pytest.raises(ProviderError) as info:
        prov._bring(stage, str(src), spec, False, Progress())   # pylint: disable=protected-access
    assert f"Cannot read {src / 'config.json'}" in info.value.msg and "Permission denied" in info.value.msg
    assert "permissions of the source directory" in info.value.fix


def test_hardlink_cannot_carry_its_own_owner_or_mode(tmp_path):
    src = _source(tmp_path)
    with pytest.raises(ValidationError) as info:
        _run(tmp_path / "models", source=str(src), adopt_mode="hardlink", mode="0640")
    assert "hardlink cannot give the model its own owner, group or mode" in info.value.msg
    out = _run(tmp_path / "models", source=str(src), mode="0640")   # auto copies then
    installed = os.path.join(out["local_path"], "config.json")
    assert os.stat(installed).st_ino != os.stat(src / "config.json").st_ino
    assert os.stat(installed).st_mode & 0o777 == 0o640


def test_hardlink_across_filesystems_is_refused_and_auto_copies(tmp_path, monkeypatch):
    src = _source(tmp_path)
    models = tmp_path / "models"
    real_stat = os.stat

    class Other:   # pylint: disable=too-few-public-methods
        st_dev = -1

    def other_device(path, *args, **kw):
        return Other() if str(path) == str(src) else real_stat(path, *args, **kw)
    hardlink, auto = _provider(models, source=str(src), adopt_mode="hardlink"), _provider(models, source=str(src))
    copy = _provider(models, source=str(src), adopt_mode="copy")
    assert auto._linkable(str(src)), "models_dir not created yet: its parent decides"   # pylint: disable=protected-access
    assert not copy._linkable(str(src))   # pylint: disable=protected-access
    monkeypatch.setattr(_local.os, "stat", other_device)
    with pytest.raises(ValidationError) as info:
        hardlink._linkable(str(src))   # pylint: disable=protected-access
    assert "needs the source" in info.value.msg and "same filesystem" in info.value.msg
    assert "adopt_mode copy" in info.value.fix
    assert not auto._linkable(str(src))   # pylint: disable=protected-access


def test_a_failed_hard_link_falls_back_to_a_copy_unless_hardlink_was_asked(tmp_path, monkeypatch):
    import errno   # pylint: disable=import-outside-toplevel
    src = _source(tmp_path)

    def no_link(*args, **kw):
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    monkeypatch.setattr(_local.os, "link", no_link)
    out = _run(tmp_path / "models", source=str(src))
    installed = os.path.join(out["local_path"], "model.safetensors")
    assert _read(installed) == WEIGHTS and os.stat(installed).st_ino != os.stat(src / "model.safetensors").st_ino
    with pytest.raises(ProviderError):
        _run(tmp_path / "models2", source=str(src), adopt_mode="hardlink")


def test_detected_capabilities_come_from_the_config_or_the_largest_gguf(tmp_path, monkeypatch):
    prov = _provider(tmp_path / "models")
    assert prov.detect_capabilities(None) == {} and prov.detect_capabilities(str(tmp_path / "none")) == {}
    hf_dir = tmp_path / "hf"
    _write(hf_dir, {"tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode()})
    assert prov.detect_capabilities(str(hf_dir)) == _local.detect_hf_capabilities(str(hf_dir))
    gguf_dir = tmp_path / "gguf"
    _write(gguf_dir, {"small.gguf": b"x", "big/large.gguf": b"xxxx", "readme.md": b"y" * 100})
    monkeypatch.setattr(_local, "detect_gguf_capabilities", lambda path: {"from": path})
    monkeypatch.setattr(_local, "detect_hf_capabilities", lambda path: {"hf": path})
    assert prov.detect_capabilities(str(gguf_dir)) == {"from": str(gguf_dir / "big" / "large.gguf")}
    _write(gguf_dir, {"config.json": b"{}"})
    assert prov.detect_capabilities(str(gguf_dir)) == {"hf": str(gguf_dir)}, "a config.json wins over GGUF files"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prov.detect_capabilities(str(empty)) == {"hf": str(empty)}


def test_check_mode_cannot_predict_without_a_source_directory(tmp_path):
    prov = _provider(tmp_path / "models")
    from ansible_collections.venom.models.plugins.module_utils.models.providers import Target   # pylint: disable=import-outside-toplevel
    assert prov.predict_capabilities(Target("v", None, [], None, extra={})) is None
    assert prov.predict_capabilities(Target("v", None, [], None, extra={"source": {"path": str(tmp_path / "x")}})) is None


def _size():
    return sum(len(d) for d in FILES.values())


def test_a_source_given_through_a_link_is_adopted_from_the_directory_it_leads_to(tmp_path):
    src = _source(tmp_path)
    os.symlink(str(src), str(tmp_path / "via-link"))
    assert _provider(tmp_path / "models", source=str(tmp_path / "via-link")).source == str(src)
    with pytest.raises(ValidationError) as info:
        _provider(tmp_path / "models", source=5)
    assert "5 is not an absolute path" in info.value.msg
    assert _provider(tmp_path / "models").source is None, "no source given: none checked"


def test_a_source_inside_the_models_state_directory_is_refused(tmp_path):
    models = tmp_path / "models"
    state = StatePaths(str(models)).state_dir
    os.makedirs(os.path.join(state, "somewhere"))
    with pytest.raises(ValidationError) as info:
        _provider(models, source=os.path.join(state, "somewhere"))
    assert f"({os.path.realpath(state)})" in info.value.msg and "outside models_dir/local" in info.value.fix


def test_an_installed_entry_satisfies_the_same_source_and_selection_only(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    entry = {"status": "installed", "source": {"path": str(src)}, "allow_patterns": None, "ignore_patterns": None}
    assert _provider(models, source=str(src)).satisfies(entry)
    assert _provider(models).satisfies(entry), "no source asked: the recorded one is fine"
    assert _provider(models).satisfies(dict(entry, source=None)), "nor does a missing record matter then"
    assert not _provider(models, source=str(src)).satisfies(dict(entry, status="damaged"))
    assert not _provider(models, source=str(tmp_path / "incoming")).satisfies(entry)
    assert not _provider(models, source=str(src), ignore_patterns=["*.md"]).satisfies(entry)
    assert not _provider(models, source=str(src)).satisfies(dict(entry, source=None))


def test_only_regular_files_are_scanned_with_their_size_and_time(tmp_path):
    src = _source(tmp_path)
    os.mkfifo(str(src / "pipe"))
    os.symlink(str(src / "config.json"), str(src / "alias.json"))
    found = _provider(tmp_path / "models").scan(str(src))
    assert sorted(found) == sorted(list(FILES) + ["alias.json"])
    st = os.stat(src / "model.safetensors")
    assert found["model.safetensors"] == (len(WEIGHTS), st.st_mtime_ns)
    assert found["alias.json"] == (len(CONFIG), os.stat(src / "config.json").st_mtime_ns), "the link's target"


def test_a_link_to_a_neighbour_sharing_the_sources_name_as_prefix_is_refused(tmp_path):
    src = _source(tmp_path)
    twin = tmp_path / "incoming" / "model-other"
    _write(twin, {"w": b"other"})
    os.symlink(str(twin / "w"), str(src / "w"))
    with pytest.raises(ValidationError) as info:
        _provider(tmp_path / "models").source_file(str(src), "w")
    assert info.value.details["link"] == str(src / "w") and info.value.details["target"] == str(twin / "w")
    assert _provider(tmp_path / "models").source_file(str(src), "config.json") == str(src / "config.json")


def test_a_snapshots_directory_elsewhere_keeps_links_inside_the_source(tmp_path):
    assert LocalProvider.link_root("/x/models--a--b/other/c") == "/x/models--a--b/other/c"
    assert LocalProvider.link_root("/x/hub/snapshots/c") == "/x/hub/snapshots/c"
    assert LocalProvider.link_root("/x/models--a--b/snapshots/c") == "/x/models--a--b"


def test_a_plan_to_adopt_counts_what_an_interrupted_copy_already_staged(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    prov = _provider(models, source=str(src), adopt_mode="copy")
    target = prov.resolve(None)
    assert sorted(target.pending) == sorted(FILES) and target.staged_bytes == 0 and target.fetch_bytes == _size()
    assert target.requested_revision is None and target.disk_path == str(models)
    assert target.local_path == prov.version_dir(target.revision)
    assert target.extra["source"] == {"path": str(src)} and target.extra["allow_patterns"] is None
    assert target.extra["_mtimes"]["config.json"] == os.stat(src / "config.json").st_mtime_ns
    spec = next(f for f in target.files if f.path == "model.safetensors")
    stage = prov.staging(target.revision).ensure()
    prov._bring(stage, str(src), spec, False, Progress())   # pylint: disable=protected-access
    again = prov.resolve(None)
    assert sorted(again.pending) == ["config.json", "sub/tokenizer.json"]
    assert again.staged_bytes == len(WEIGHTS) and again.fetch_bytes == _size() - len(WEIGHTS)
    out = _run(models, source=str(src), adopt_mode="copy")
    assert out["plan"]["fetch_bytes"] == _size() - len(WEIGHTS) and out["plan"]["staged_bytes"] == len(WEIGHTS)
    assert _read(os.path.join(out["local_path"], "model.safetensors")) == WEIGHTS


def test_a_damaged_adopted_version_plans_only_its_damaged_files(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    os.unlink(os.path.join(out["local_path"], "config.json"))
    target = _provider(models, source=str(src), adopt_mode="copy").resolve(entry, latest=True)
    assert target.pending == ["config.json"] and target.fetch_bytes == len(CONFIG)
    assert target.staged_bytes == _size() - len(CONFIG)
    assert _provider(models, source=str(src)).resolve(entry, latest=True).fetch_bytes == 0, "a hard link takes no space"


def test_a_narrower_selection_reads_the_source_again(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    target = _provider(models, source=str(src), ignore_patterns=["sub/*"]).resolve(entry)
    assert sorted(f.path for f in target.files) == ["config.json", "model.safetensors"]
    assert target.revision != entry["revision"]
    out = _run(models, source=str(src), adopt_mode="copy", ignore_patterns=["sub/*"])
    assert out["action"] == "update" and out["model"]["ignore_patterns"] == ["sub/*"]
    assert not os.path.exists(os.path.join(out["local_path"], "sub"))


def test_a_source_that_vanished_cannot_be_hard_linked(tmp_path):
    src = _source(tmp_path)
    auto = _provider(tmp_path / "models", source=str(src))
    hardlink = _provider(tmp_path / "models", source=str(src), adopt_mode="hardlink")
    gone = str(tmp_path / "gone")
    assert auto._linkable(gone) is False   # pylint: disable=protected-access
    with pytest.raises(ValidationError):
        hardlink._linkable(gone)   # pylint: disable=protected-access
    assert hardlink._linkable(str(src)) is True   # pylint: disable=protected-access


@pytest.mark.parametrize("code", ["EPERM", "EMLINK", "EXDEV"])
def test_a_hard_link_the_filesystem_refuses_falls_back_to_a_copy(tmp_path, monkeypatch, code):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src))
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("config.json", len(CONFIG), sha256=hashlib.sha256(CONFIG).hexdigest())

    def refuse(*args, **kw):
        raise OSError(getattr(errno, code), "refused")
    monkeypatch.setattr(_local.os, "link", refuse)
    progress = Progress()
    prov._bring(stage, str(src), spec, True, progress)   # pylint: disable=protected-access
    assert stage.verified(spec) and progress.transferred == len(CONFIG)
    assert os.stat(stage.tree_path("config.json")).st_ino != os.stat(src / "config.json").st_ino


def test_a_hard_link_that_fails_otherwise_is_a_provider_error_naming_both_paths(tmp_path, monkeypatch):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src))
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("config.json", len(CONFIG), sha256=hashlib.sha256(CONFIG).hexdigest())

    def refuse(*args, **kw):
        raise OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(_local.os, "link", refuse)
    with pytest.raises(ProviderError) as info:
        prov._bring(stage, str(src), spec, True, Progress())   # pylint: disable=protected-access
    assert info.value.msg == (f"Cannot read {src / 'config.json'} or write {stage.partial_path('config.json')}: "
                              "Permission denied.")


def test_a_full_disk_while_adopting_keeps_the_staged_files_and_says_so(tmp_path, monkeypatch):
    src = _source(tmp_path)
    models = tmp_path / "models"
    prov = _provider(models, source=str(src), adopt_mode="copy")
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("config.json", len(CONFIG), sha256=hashlib.sha256(CONFIG).hexdigest())

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(_local.os, "fsync", full)
    with pytest.raises(QuotaError) as info:
        prov._bring(stage, str(src), spec, False, Progress())   # pylint: disable=protected-access
    assert f"The disk holding {models} is full" in info.value.msg


def test_a_linked_file_is_verified_and_keeps_the_sources_mode(tmp_path):
    src = _source(tmp_path)
    os.chmod(src / "config.json", 0o640)
    prov = _provider(tmp_path / "models", source=str(src))
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("config.json", len(CONFIG), sha256=hashlib.sha256(CONFIG).hexdigest())
    progress = Progress()
    prov._bring(stage, str(src), spec, True, progress)   # pylint: disable=protected-access
    placed = stage.tree_path("config.json")
    assert os.stat(placed).st_ino == os.stat(src / "config.json").st_ino and stage.verified(spec)
    assert os.stat(src / "config.json").st_mode & 0o777 == 0o640, "the source's mode is left alone"
    assert progress.done == len(CONFIG)


def test_completing_the_installed_version_brings_only_its_damaged_files(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    kept = os.stat(os.path.join(out["local_path"], "model.safetensors")).st_ino
    os.unlink(os.path.join(out["local_path"], "config.json"))
    prov = _provider(models, source=str(src), adopt_mode="copy")
    target = prov.resolve(entry)
    seen = []
    fields = prov.install(target, Progress(lambda done, total, message, force: seen.append((done, total, message))),
                          entry=entry)
    assert seen[0] == (_size() - len(CONFIG), _size(), f"adopting 1 file(s) from {src}")
    assert _read(os.path.join(out["local_path"], "config.json")) == CONFIG
    assert os.stat(os.path.join(out["local_path"], "model.safetensors")).st_ino == kept, "the good files stay"
    assert not os.path.exists(prov.staging_root()) or not os.listdir(prov.staging_root())
    assert fields["local_path"] == out["local_path"] and "_mtimes" not in fields
    assert {f["path"]: f["mtime_ns"] for f in fields["files"]} == {
        p: os.stat(src / p).st_mtime_ns for p in FILES}


def test_a_version_directory_left_without_a_record_is_taken_back_and_verified_again(tmp_path, monkeypatch):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    with Manifest(str(models)).transaction() as doc:
        doc["models"] = []
    brought = []
    real = LocalProvider._bring   # pylint: disable=protected-access

    def counting(self, stage, source, spec, link, progress):
        brought.append(spec.path)
        return real(self, stage, source, spec, link, progress)
    monkeypatch.setattr(LocalProvider, "_bring", counting)
    again = _run(models, source=str(src), adopt_mode="copy")
    assert again["action"] == "install" and again["local_path"] == out["local_path"]
    assert sorted(brought) == sorted(FILES), "no record says the files are good: each is brought and verified"
    assert _read(os.path.join(out["local_path"], "model.safetensors")) == WEIGHTS


def test_a_repair_of_the_whole_version_recreates_its_directory(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    shutil.rmtree(out["local_path"])
    _provider(models, adopt_mode="copy").repair(entry, [Problem(path=".", kind="missing")], Progress())
    for rel, data in FILES.items():
        assert _read(os.path.join(out["local_path"], rel)) == data


def test_check_mode_predicts_from_a_temporary_tree_it_removes(tmp_path, monkeypatch):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src))
    target = prov.resolve(None)
    seen = {}

    def detect(path, target=None):
        seen["path"] = path
        seen["files"] = sorted(os.path.relpath(os.path.join(r, n), path) for r, _d, ns in os.walk(path) for n in ns)
        seen["link"] = os.readlink(os.path.join(path, "sub", "tokenizer.json"))
        return {"max_context_length": 1}
    monkeypatch.setattr(prov, "detect_capabilities", detect)
    assert prov.predict_capabilities(target) == {"max_context_length": 1}
    assert os.path.basename(seen["path"]).startswith("venom-check-") and not os.path.exists(seen["path"])
    assert seen["files"] == sorted(FILES) and seen["link"] == str(src / "sub" / "tokenizer.json")


@pytest.mark.parametrize("selection", [{"ignore_patterns": ["sub/*"]}, {"allow_patterns": ["*.json"]}])
def test_an_unchanged_source_adopted_with_a_selection_is_not_hashed_again(tmp_path, monkeypatch, selection):
    src = _source(tmp_path)
    models = tmp_path / "models"
    _run(models, source=str(src), adopt_mode="copy", **selection)
    entry = Manifest(str(models)).get("team/m", "local")
    hashed = []
    real = _local.file_digests
    monkeypatch.setattr(_local, "file_digests",
                        lambda path, size=None, **kw: hashed.append(path) or real(path, size, **kw))
    prov = _provider(models, source=str(src), **selection)
    assert prov.resolve(entry, latest=True).revision == entry["revision"] and hashed == []
    assert _run(models, source=str(src), adopt_mode="copy", state="latest", **selection)["changed"] is False
    without_files = {k: v for k, v in entry.items() if k != "files"}
    assert not prov._unchanged(without_files, str(src))   # pylint: disable=protected-access


def test_a_repair_hard_links_again_when_it_may_and_makes_the_version_directory_0755(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src))
    entry = Manifest(str(models)).get("team/m", "local")
    shutil.rmtree(out["local_path"])
    old = os.umask(0)
    try:
        _provider(models).repair(entry, [Problem(path="model.safetensors", kind="missing")], Progress())
    finally:
        os.umask(old)
    installed = os.path.join(out["local_path"], "model.safetensors")
    assert os.stat(installed).st_ino == os.stat(src / "model.safetensors").st_ino
    assert os.stat(out["local_path"]).st_mode & 0o777 == 0o755


def test_a_repaired_file_has_the_models_mode_before_it_is_moved_into_place(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    os.unlink(os.path.join(out["local_path"], "config.json"))
    prov = _provider(models, adopt_mode="copy")
    prov.permissions = ownership.Permissions.parse(mode="0600")
    prov.repair(entry, [Problem(path="config.json", kind="missing")], Progress())
    assert os.stat(os.path.join(out["local_path"], "config.json")).st_mode & 0o777 == 0o600


def test_an_entry_without_a_recorded_source_needs_one_from_the_task(tmp_path):
    prov = _provider(tmp_path / "models")
    with pytest.raises(ValidationError) as info:
        prov.resolve({"status": "installed", "files": []})
    assert "provider local needs source" in info.value.msg
    with pytest.raises(ValidationError):
        prov.repair({"files": [], "revision": "d" * 64, "local_path": None}, [], Progress())


def test_tokenizer_files_make_a_model_a_hugging_face_one_even_beside_gguf_files(tmp_path, monkeypatch):
    prov = _provider(tmp_path / "models")
    mixed = tmp_path / "mixed"
    _write(mixed, {"tokenizer_config.json": b"{}", "w.gguf": b"xx"})
    monkeypatch.setattr(_local, "detect_gguf_capabilities", lambda path: {"gguf": path})
    monkeypatch.setattr(_local, "detect_hf_capabilities", lambda path: {"hf": path})
    assert prov.detect_capabilities(str(mixed)) == {"hf": str(mixed)}
    ggufs = tmp_path / "ggufs"
    _write(ggufs, {"large.gguf": b"xxxx", "parts/small.gguf": b"x", "parts/other.bin": b"y" * 10})
    assert prov.detect_capabilities(str(ggufs)) == {"gguf": str(ggufs / "large.gguf")}, "the largest in any directory"


def test_an_adopted_version_reports_no_requested_revision_and_takes_the_models_mode(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    os.unlink(os.path.join(out["local_path"], "config.json"))
    prov = _provider(models, source=str(src), adopt_mode="copy")
    prov.permissions = ownership.Permissions.parse(mode="0600")
    fields = prov.install(prov.resolve(entry), Progress(), entry=entry)
    assert "requested_revision" in fields and fields["requested_revision"] is None
    assert fields["revision"] == entry["revision"] and fields["source"] == {"path": str(src)}
    assert os.stat(os.path.join(out["local_path"], "config.json")).st_mode & 0o777 == 0o600


def test_latest_without_a_source_reads_the_recorded_one_again(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    _run(models, source=str(src), adopt_mode="copy")
    entry = Manifest(str(models)).get("team/m", "local")
    assert _provider(models).resolve(entry, latest=True).extra["source"] == {"path": str(src)}
    _write(src, {"config.json": b'{"model_type": "llama", "max_position_embeddings": 8192}\n'})
    out = _run(models, adopt_mode="copy", state="latest")
    assert out["action"] == "update" and out["capabilities"]["max_context_length"] == 8192


def test_dangling_links_anywhere_in_a_directory_do_not_hide_its_other_files(tmp_path):
    src = _source(tmp_path)
    names = []
    for i in range(6):
        _write(src / "more", {f"f{i}.txt": b"x"})
        names.append(f"more/f{i}.txt")
        if i % 2:
            os.symlink(str(tmp_path / "nowhere"), str(src / "more" / f"dangling{i}"))
    found = _provider(tmp_path / "models").scan(str(src))
    assert sorted(found) == sorted(list(FILES) + names)


def test_an_unknown_adopt_mode_and_a_relative_source_are_refused_naming_the_option_and_the_fix(tmp_path):
    with pytest.raises(ValidationError) as info:
        _provider(tmp_path / "models", adopt_mode="symlink")
    assert "adopt_mode" in info.value.msg
    with pytest.raises(ValidationError) as info:
        _provider(tmp_path / "models", source="model")
    assert "absolute path of the model directory" in info.value.fix


def test_hard_linking_never_changes_the_sources_mode(tmp_path):
    src = _source(tmp_path)
    os.chmod(src / "model.safetensors", 0o664)
    out = _run(tmp_path / "models", source=str(src), adopt_mode="hardlink")
    installed = os.path.join(out["local_path"], "model.safetensors")
    assert os.stat(installed).st_ino == os.stat(src / "model.safetensors").st_ino
    assert os.stat(src / "model.safetensors").st_mode & 0o777 == 0o664


def test_an_adoption_that_keeps_failing_verification_names_the_model_and_the_file(tmp_path):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src), adopt_mode="copy")
    stage = prov.staging("d" * 64).ensure()
    with pytest.raises(IntegrityError) as info:
        spec = FileSpec("sub/tokenizer.json", 9, sha256="0" * 64)
        prov._bring(stage, str(src), spec, False, Progress())   # pylint: disable=protected-access
    assert info.value.msg.startswith("The file sub/tokenizer.json of team/m does not match")


def test_a_copy_cut_short_by_a_full_disk_leaves_a_private_partial_file(tmp_path, monkeypatch):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src), adopt_mode="copy")
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("config.json", len(CONFIG), sha256=hashlib.sha256(CONFIG).hexdigest())

    def full(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    monkeypatch.setattr(_local.os, "fsync", full)
    old = os.umask(0)
    try:
        with pytest.raises(QuotaError):
            prov._bring(stage, str(src), spec, False, Progress())   # pylint: disable=protected-access
    finally:
        os.umask(old)
    assert os.stat(stage.partial_path("config.json")).st_mode & 0o777 == 0o600


def test_an_unknown_adopt_mode_is_refused_with_the_modes_to_choose_from(tmp_path):
    with pytest.raises(ValidationError) as info:
        _provider(tmp_path / "models", adopt_mode="symlink")
    assert info.value.msg.startswith("adopt_mode ")
    assert info.value.fix == "Set adopt_mode to one of: auto, copy, hardlink."


def test_hardlink_with_an_owner_or_mode_says_how_to_adopt_instead(tmp_path):
    src = _source(tmp_path)
    with pytest.raises(ValidationError) as info:
        _run(tmp_path / "models", source=str(src), adopt_mode="hardlink", mode="0640")
    assert "adopt_mode copy" in info.value.fix and "on the source" in info.value.fix


def test_a_file_that_does_not_match_is_copied_twice_then_refused(tmp_path):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src), adopt_mode="copy")
    stage = prov.staging("d" * 64).ensure()
    progress = Progress()
    with pytest.raises(IntegrityError):
        spec = FileSpec("config.json", len(CONFIG), sha256="0" * 64)
        prov._bring(stage, str(src), spec, False, progress)   # pylint: disable=protected-access
    assert progress.transferred == 2 * len(CONFIG)


def test_the_staging_directories_of_an_adoption_are_not_world_readable(tmp_path):
    src = _source(tmp_path)
    prov = _provider(tmp_path / "models", source=str(src), adopt_mode="copy")
    stage = prov.staging("d" * 64).ensure()
    spec = FileSpec("sub/tokenizer.json", len(FILES["sub/tokenizer.json"]),
                    sha256=hashlib.sha256(FILES["sub/tokenizer.json"]).hexdigest())
    old = os.umask(0)
    try:
        prov._bring(stage, str(src), spec, False, Progress())   # pylint: disable=protected-access
    finally:
        os.umask(old)
    assert os.stat(os.path.dirname(stage.partial_path("sub/tokenizer.json"))).st_mode & 0o777 == 0o750
