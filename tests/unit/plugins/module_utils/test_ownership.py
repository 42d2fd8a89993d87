# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Owner, group and modes of installed model files (store.ownership and venom_model's owner/group/mode).

The operation-level tests adopt a real directory with the local provider (no network) and chown
to the system group ``daemon``; they need root, which the unit tier has (CI runs as root).
"""
from __future__ import annotations

import grp
import os
import stat

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.models import staging as _staging
from ansible_collections.venom.models.plugins.module_utils.models.operations import ModelOperations
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
from ansible_collections.venom.models.plugins.module_utils.store import ownership
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.ownership import Permissions

GROUP = "daemon"


def _need_root():
    if os.geteuid() != 0:
        raise AssertionError("these tests change file ownership: run the unit tier as root (CI does)")


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _tree(root):
    os.makedirs(os.path.join(root, "sub"))
    for rel in ("config.json", "sub/w.bin"):
        with open(os.path.join(root, rel), "w", encoding="utf-8") as fh:
            fh.write("{}")
        os.chmod(os.path.join(root, rel), 0o644)
    os.chmod(os.path.join(root, "sub"), 0o755)
    os.chmod(root, 0o755)


@pytest.mark.parametrize("given,expected", [
    ({"mode": "0640"}, (0o640, 0o750)),
    ({"mode": 0o600}, (0o600, 0o700)),          # YAML makes an unquoted 0600 an int
    ({"mode": "0644", "directory_mode": "0711"}, (0o644, 0o711)),
    ({"directory_mode": "2750"}, (None, 0o2750)),
])
def test_modes_parse_and_directories_get_search_where_files_get_read(given, expected):
    p = Permissions.parse(**given)
    assert (p.mode, p.directory_mode) == expected


@pytest.mark.parametrize("given,text", [
    ({"mode": "u=rw,g=r"}, "not an octal mode"),
    ({"mode": "4755"}, "within 0777"),           # no setuid model files
    ({"mode": 640}, "within 0777"),              # decimal 640 is 0o1200: a forgotten leading zero
    ({"mode": True}, "not an octal mode"),
    ({"owner": "no-such-user-venom"}, "does not exist on this host"),
    ({"group": "no-such-group-venom"}, "does not exist on this host"),
])
def test_bad_values_are_refused_with_a_fix(given, text):
    with pytest.raises(ValidationError) as err:
        Permissions.parse(**given)
    assert text in str(err.value) and err.value.fix


def test_names_and_ids_resolve_and_record_by_name():
    p = Permissions.parse(owner="0", group=GROUP, mode="0640")
    assert (p.uid, p.gid) == (0, grp.getgrnam(GROUP).gr_gid)
    assert p.record() == {"owner": "root", "group": GROUP, "mode": "0640", "directory_mode": "0750"}
    assert Permissions.from_record(p.record()) == p
    kept = Permissions.parse(mode="0600").merged_over(Permissions.from_record(p.record()))
    assert kept.record() == {"owner": "root", "group": GROUP, "mode": "0600", "directory_mode": "0700"}
    assert not Permissions() and not Permissions.parse()


def test_differences_then_apply_then_nothing(tmp_path):
    _need_root()
    root = str(tmp_path / "v")
    _tree(root)
    p = Permissions.parse(group=GROUP, mode="0640")
    diffs = {d["path"]: d for d in ownership.differences(root, p)}
    assert set(diffs) == {".", "sub", "config.json", os.path.join("sub", "w.bin")}
    assert diffs["config.json"]["mode"] == ["0644", "0640"] and diffs["sub"]["mode"] == ["0755", "0750"]
    assert ownership.observed(root, p) == {"group": "root", "mode": "0644", "directory_mode": "0755"}
    assert len(ownership.apply(root, p)) == 4
    assert _mode(os.path.join(root, "sub", "w.bin")) == 0o640 and _mode(os.path.join(root, "sub")) == 0o750
    assert os.lstat(os.path.join(root, "config.json")).st_gid == grp.getgrnam(GROUP).gr_gid
    assert ownership.differences(root, p) == [] and ownership.apply(root, p) == []


def test_a_symlink_is_refused_never_followed(tmp_path):
    root = str(tmp_path / "v")
    _tree(root)
    outside = tmp_path / "outside"
    outside.write_text("secret")
    os.chmod(outside, 0o600)
    os.symlink(str(outside), os.path.join(root, "sub", "link.json"))
    p = Permissions.parse(mode="0644")
    for call in (ownership.differences, ownership.apply):
        with pytest.raises(ValidationError) as err:
            call(root, p)
        assert "symbolic link" in str(err.value)
    assert _mode(outside) == 0o600, "the link's target was not touched"
    with pytest.raises(ValidationError):
        ownership.apply_path(os.path.join(root, "sub", "link.json"), p)
    assert _mode(outside) == 0o600


def test_a_hard_linked_file_is_not_changed(tmp_path):
    root = str(tmp_path / "v")
    _tree(root)
    os.link(os.path.join(root, "config.json"), str(tmp_path / "source.json"))
    with pytest.raises(ValidationError) as err:
        ownership.apply(root, Permissions.parse(mode="0600"))
    assert "hard links" in str(err.value) and "adopt_mode: copy" in err.value.fix
    assert _mode(str(tmp_path / "source.json")) == 0o644


# -- through venom_model's operation layer (provider local: real files, no network) ----------------

def _source(tmp_path):
    src = tmp_path / "src"
    (src / "tokenizer").mkdir(parents=True)
    (src / "config.json").write_text('{"max_position_embeddings": 4096}')
    (src / "model.safetensors").write_bytes(b"W" * 4096)
    (src / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return str(src)


def _run(tmp_path, check=False, **kw):
    req = ModelRequest(name="demo", provider="local", source=kw.pop("source", None) or _source_cached(tmp_path),
                       models_dir=str(tmp_path / "models"), **kw)
    return ModelOperations(req, check_mode=check).run()


def _source_cached(tmp_path):
    src = tmp_path / "src"
    return str(src) if src.exists() else _source(tmp_path)


def _modes(path):
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            out[os.path.relpath(full, path)] = (stat.S_IMODE(st.st_mode), st.st_gid)
    st = os.lstat(path)
    out["."] = (stat.S_IMODE(st.st_mode), st.st_gid)
    return out


def test_install_gives_the_staging_tree_its_permissions_before_the_move(tmp_path, monkeypatch):
    _need_root()
    gid = grp.getgrnam(GROUP).gr_gid
    seen = {}
    real_rename = os.rename

    def rename(src, dst):
        if os.path.basename(src) == "tree":
            seen.update(_modes(src))
        return real_rename(src, dst)

    monkeypatch.setattr(_staging.os, "rename", rename)
    res = _run(tmp_path, group=GROUP, mode="0640")
    assert res["changed"] and res["action"] == "install"
    assert seen and all(v == ((0o750 if k in (".", "tokenizer") else 0o640), gid) for k, v in seen.items()), seen
    assert _modes(res["local_path"]) == seen
    assert res["model"]["permissions"] == {"group": GROUP, "mode": "0640", "directory_mode": "0750"}
    assert Manifest(str(tmp_path / "models")).get("demo", "local")["permissions"] == res["model"]["permissions"]


def test_same_values_again_are_not_a_change_and_changing_the_mode_is(tmp_path):
    _need_root()
    first = _run(tmp_path, group=GROUP, mode="0640")
    path = first["local_path"]
    again = _run(tmp_path, group=GROUP, mode="0640")
    assert again["changed"] is False and again["action"] == "none"
    omitted = _run(tmp_path)
    assert omitted["changed"] is False, "a task that omits them keeps the recorded ones"

    before = _modes(path)
    check = _run(tmp_path, check=True, mode="0600")
    assert check["changed"] is True and check["action"] == "permissions"
    assert _modes(path) == before, "check mode changes nothing"
    assert check["diff"]["before"]["permissions"] == {"group": GROUP, "mode": "0640", "directory_mode": "0750"}
    assert check["diff"]["after"]["permissions"] == {"group": GROUP, "mode": "0600", "directory_mode": "0700"}
    assert {c["path"] for c in check["plan"]["permission_changes"]} == set(before)

    real = _run(tmp_path, mode="0600")
    assert real["changed"] is True and real["action"] == "permissions" and real["operation"]["type"] == "update"
    assert {k: v[0] for k, v in _modes(path).items()} == {
        ".": 0o700, "tokenizer": 0o700, "config.json": 0o600, "model.safetensors": 0o600,
        os.path.join("tokenizer", "vocab.txt"): 0o600}
    assert _run(tmp_path, mode="0600")["changed"] is False


def test_present_corrects_a_drifted_file_and_an_installed_model_gets_them_later(tmp_path):
    _need_root()
    res = _run(tmp_path, adopt_mode="copy")
    path = res["local_path"]
    assert "permissions" not in res["model"] and _modes(path)["config.json"][0] == 0o644
    later = _run(tmp_path, group=GROUP, mode="0640")
    assert later["changed"] and later["action"] == "permissions"
    os.chmod(os.path.join(path, "config.json"), 0o666)  # someone widened it by hand
    fixed = _run(tmp_path)
    assert fixed["changed"] and fixed["action"] == "permissions"
    assert fixed["plan"]["permission_changes"] == [{"path": "config.json", "mode": ["0666", "0640"]}]
    assert _modes(path)["config.json"] == (0o640, grp.getgrnam(GROUP).gr_gid)


def test_a_repaired_file_gets_the_recorded_permissions(tmp_path):
    _need_root()
    res = _run(tmp_path, group=GROUP, mode="0640")
    os.unlink(os.path.join(res["local_path"], "tokenizer", "vocab.txt"))
    repaired = _run(tmp_path)
    assert repaired["action"] == "repair"
    assert _modes(res["local_path"])[os.path.join("tokenizer", "vocab.txt")] == (0o640, grp.getgrnam(GROUP).gr_gid)


def test_hard_links_are_not_used_when_permissions_are_set(tmp_path):
    res = _run(tmp_path, mode="0600", adopt_mode="auto")
    assert os.lstat(os.path.join(res["local_path"], "config.json")).st_nlink == 1
    assert _mode(os.path.join(str(tmp_path / "src"), "config.json")) == 0o644, "the source is not touched"
    with pytest.raises(ValidationError) as err:
        ModelOperations(ModelRequest(name="other", provider="local", source=str(tmp_path / "src"), mode="0600",
                                     adopt_mode="hardlink", models_dir=str(tmp_path / "models"))).run()
    assert "hard link" in str(err.value)
    linked = ModelOperations(ModelRequest(name="linked", provider="local", source=str(tmp_path / "src"),
                                          adopt_mode="hardlink", models_dir=str(tmp_path / "models"))).run()
    assert os.lstat(os.path.join(linked["local_path"], "config.json")).st_nlink > 1
    for check in (True, False):  # refused while planning: check mode says so too, nothing changes
        with pytest.raises(ValidationError) as err:
            ModelOperations(ModelRequest(name="linked", provider="local", mode="0600",
                                         models_dir=str(tmp_path / "models")), check_mode=check).run()
        assert "hard links" in str(err.value)
    assert _mode(os.path.join(str(tmp_path / "src"), "config.json")) == 0o644


def test_ollama_refuses_them():
    with pytest.raises(ValidationError) as err:
        ModelOperations(ModelRequest(name="llama3", provider="ollama", mode="0640", models_dir="/nonexistent"))
    assert "Ollama server's own store" in str(err.value)


def test_check_mode_assumes_a_group_a_role_creates_first(tmp_path):
    with pytest.raises(ValidationError):
        _run(tmp_path, group="venom-not-yet", mode="0640")
    res = _run(tmp_path, check=True, group="venom-not-yet", mode="0640")
    assert res["changed"] is True and res["action"] == "install"
    assert res["model"]["permissions"]["group"] == "venom-not-yet"
    assert any("group 'venom-not-yet' does not exist" in w for w in res["warnings"]), res["warnings"]
    _run(tmp_path, adopt_mode="copy")
    res = _run(tmp_path, check=True, group="venom-not-yet")
    assert res["changed"] is True and res["action"] == "permissions"
    assert all(c["group"][1] == ownership.UNKNOWN_ID for c in res["plan"]["permission_changes"])
