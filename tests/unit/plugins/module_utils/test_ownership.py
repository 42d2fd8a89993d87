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
    with pytest.raises(ValidationError) as err:
        ownership.apply_path(os.path.join(root, "sub", "link.json"), p)
    assert "model file" in err.value.msg
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


# -- the options' values ------------------------------------------------------------------------------

@pytest.mark.parametrize("given,expected", [
    ({"mode": " 0640 "}, (0o640, 0o750)),       # surrounding blanks are ignored
    ({"mode": "640"}, (0o640, 0o750)),           # a string is octal even without the leading zero
    ({"mode": 0}, (0, 0)),
    ({"mode": "0604"}, (0o604, 0o705)),          # search only where read is granted
    ({"mode": "0460"}, (0o460, 0o570)),
    ({"mode": "0777"}, (0o777, 0o777)),
    ({"directory_mode": "0750"}, (None, 0o750)),
    ({"directory_mode": 0o2770, "mode": "0660"}, (0o660, 0o2770)),
])
def test_more_modes_parse(given, expected):
    p = Permissions.parse(**given)
    assert (p.mode, p.directory_mode) == expected


@pytest.mark.parametrize("given,text", [
    ({"mode": "0680"}, "mode '0680' is not an octal mode within 0777"),
    ({"mode": ""}, "mode '' is not an octal mode within 0777"),
    ({"mode": "  "}, "not an octal mode"),
    ({"mode": -1}, "mode -1 is not an octal mode within 0777"),
    ({"mode": 0o1777}, "within 0777"),           # no sticky bit on files
    ({"mode": 1.5}, "not an octal mode"),
    ({"mode": "0X64"}, "mode '0X64' is not an octal mode"),
    ({"directory_mode": "4750"}, "directory_mode '4750' is not an octal mode within 2777"),
    ({"directory_mode": False}, "directory_mode False is not"),
    ({"owner": True}, "owner True is not a owner name or id"),
    ({"group": ""}, "group '' is not a group name or id"),
    ({"group": "  "}, "is not a group name or id"),
])
def test_more_bad_values_are_refused_naming_the_option(given, text):
    with pytest.raises(ValidationError) as err:
        Permissions.parse(**given)
    assert text in err.value.msg and err.value.fix


def test_an_unknown_user_or_group_fix_names_the_kind_of_number():
    with pytest.raises(ValidationError) as err:
        Permissions.parse(owner="no-such-user-venom")
    assert "numeric uid" in err.value.fix and "'no-such-user-venom' does not exist" in err.value.msg
    with pytest.raises(ValidationError) as err:
        Permissions.parse(group="no-such-group-venom")
    assert "numeric gid" in err.value.fix


def test_users_and_groups_by_name_or_number_with_and_without_a_name():
    p = Permissions.parse(owner=" daemon ", group="1")
    assert (p.uid, p.owner_name, p.gid, p.group_name) == (1, "daemon", 1, "daemon")
    p = Permissions.parse(owner=1, group=0)
    assert (p.uid, p.owner_name, p.gid, p.group_name) == (1, "daemon", 0, "root")
    unnamed = Permissions.parse(owner="54321", group="54322")
    assert (unnamed.uid, unnamed.owner_name, unnamed.gid, unnamed.group_name) == (54321, "54321", 54322, "54322")
    assert unnamed.record() == {"owner": "54321", "group": "54322"} and unnamed.missing() == []


def test_check_mode_assumes_missing_users_and_groups_and_lists_them():
    p = Permissions.parse(owner="venom-no-user", group="venom-no-group", check_mode=True)
    assert (p.uid, p.gid) == (ownership.UNKNOWN_ID, ownership.UNKNOWN_ID)
    assert p.missing() == ["user 'venom-no-user'", "group 'venom-no-group'"]
    assert Permissions.parse(owner="root", group="venom-no-group", check_mode=True).missing() == [
        "group 'venom-no-group'"]
    assert Permissions.parse(owner="venom-no-user", check_mode=True).missing() == ["user 'venom-no-user'"]
    assert Permissions.from_record({"group": "venom-no-group"}, check_mode=True).missing() == [
        "group 'venom-no-group'"]
    with pytest.raises(ValidationError):
        Permissions.from_record({"group": "venom-no-group"})
    assert Permissions.from_record(None) == Permissions() and Permissions.from_record({}) == Permissions()


def test_any_single_setting_makes_permissions_and_an_id_or_mode_of_zero_counts():
    for p in (Permissions(uid=0), Permissions(gid=0), Permissions(mode=0), Permissions(directory_mode=0)):
        assert p
    assert not Permissions(owner_name="root", group_name="root"), "names alone set nothing"


def test_what_a_file_lacks_is_listed_as_actual_and_wanted(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    os.chmod(f, 0o644)
    st = os.lstat(f)
    p = Permissions.parse(owner="1", group="1", mode="0600", directory_mode="0700")
    assert p.wanted(st) == {"owner": (st.st_uid, 1), "group": (st.st_gid, 1), "mode": ("0644", "0600")}
    assert Permissions.parse(owner=str(st.st_uid), group=str(st.st_gid), mode="0644").wanted(st) == {}
    assert Permissions.parse(directory_mode="0700").wanted(st) == {}, "a file's mode is the file mode"
    d = os.lstat(tmp_path)
    assert Permissions.parse(mode="0600", directory_mode="2750").wanted(d) == {
        "mode": (f"{stat.S_IMODE(d.st_mode):04o}", "2750")}
    assert Permissions.parse(mode="0600").record() == {"mode": "0600", "directory_mode": "0700"}
    assert Permissions.parse(directory_mode="0011").record() == {"directory_mode": "0011"}


# -- differences, observed, apply ---------------------------------------------------------------------

def test_nothing_to_compare_or_apply_without_permissions_or_a_directory(tmp_path):
    p = Permissions.parse(mode="0600")
    for call in (ownership.differences, ownership.apply):
        assert call(str(tmp_path), Permissions()) == []
        assert call(None, p) == [] and call("", p) == [] and call(str(tmp_path / "missing"), p) == []
    assert ownership.observed(str(tmp_path), Permissions()) == {}
    assert ownership.observed(None, p) == {} and ownership.observed(str(tmp_path / "missing"), p) == {}
    assert ownership.apply_path(str(tmp_path), Permissions()) is False


def test_differences_are_listed_in_order_and_only_where_something_differs(tmp_path):
    root = str(tmp_path / "v")
    _tree(root)
    os.makedirs(os.path.join(root, "a"))
    os.chmod(os.path.join(root, "a"), 0o750)
    with open(os.path.join(root, "b.json"), "w", encoding="utf-8"):
        pass
    os.chmod(os.path.join(root, "b.json"), 0o640)
    os.chmod(os.path.join(root, "config.json"), 0o640)
    diffs = ownership.differences(root, Permissions.parse(mode="0640"))
    assert diffs == [{"path": ".", "mode": ["0755", "0750"]}, {"path": "sub", "mode": ["0755", "0750"]},
                     {"path": os.path.join("sub", "w.bin"), "mode": ["0644", "0640"]}]
    gid = os.lstat(root).st_gid
    assert ownership.differences(root, Permissions.parse(group=str(gid), mode="0640", directory_mode="0755")) == [
        {"path": "a", "mode": ["0750", "0755"]}, {"path": os.path.join("sub", "w.bin"), "mode": ["0644", "0640"]}]
    assert ownership.differences(root, Permissions.parse(group="54322"))[0] == {"path": ".", "group": [gid, 54322]}


def test_observed_shows_one_value_or_every_value_sorted_and_unknown_ids_as_numbers(tmp_path):
    _need_root()
    root = str(tmp_path / "v")
    _tree(root)
    p = Permissions.parse(owner="root", mode="0640")
    assert ownership.observed(root, p) == {"owner": "root", "mode": "0644", "directory_mode": "0755"}
    os.chmod(os.path.join(root, "config.json"), 0o600)
    os.chown(os.path.join(root, "sub", "w.bin"), 54321, 54322)
    assert ownership.observed(root, Permissions.parse(owner="root", group="root", mode="0640")) == {
        "owner": ["54321", "root"], "group": ["54322", "root"], "mode": ["0600", "0644"],
        "directory_mode": "0755"}
    assert ownership.observed(root, Permissions.parse(group="root")) == {"group": ["54322", "root"]}
    assert ownership.observed(root, Permissions.parse(directory_mode="0700")) == {"directory_mode": "0755"}


def test_a_model_directory_that_is_a_symlink_is_refused(tmp_path):
    root = str(tmp_path / "v")
    _tree(root)
    os.symlink(root, str(tmp_path / "link"))
    for call in (ownership.differences, ownership.apply, ownership.observed):
        with pytest.raises(ValidationError) as err:
            call(str(tmp_path / "link"), Permissions.parse(mode="0600"))
        assert "model directory" in err.value.msg and "symbolic link" in err.value.msg
    assert _mode(os.path.join(root, "config.json")) == 0o644
    os.symlink(os.path.join(root, "config.json"), os.path.join(root, "sub", "zz.json"))
    with pytest.raises(ValidationError) as err:
        ownership.observed(root, Permissions.parse(mode="0600"))
    assert "model file" in err.value.msg


def test_a_hard_linked_file_is_reported_with_its_link_count_only_when_it_would_change(tmp_path):
    root = str(tmp_path / "v")
    _tree(root)
    target = os.path.join(root, "config.json")
    os.link(target, str(tmp_path / "source.json"))
    os.link(target, str(tmp_path / "source2.json"))
    with pytest.raises(ValidationError) as err:
        ownership.differences(root, Permissions.parse(mode="0600"))
    assert f"{target} has 3 hard links" in err.value.msg and err.value.details == {"path": target}
    with pytest.raises(ValidationError) as err:
        ownership.apply_path(target, Permissions.parse(mode="0600"))
    assert f"{target} has 3 hard links" in err.value.msg and err.value.details == {"path": target}
    assert ownership.differences(root, Permissions.parse(mode="0644", directory_mode="0755")) == []
    assert ownership.apply_path(target, Permissions.parse(mode="0644")) is False, "nothing to change: no refusal"


def test_apply_path_changes_one_file_or_directory_and_says_so(tmp_path):
    root = str(tmp_path / "v")
    _tree(root)
    p = Permissions.parse(mode="0600", directory_mode="0711")
    assert ownership.apply_path(os.path.join(root, "config.json"), p) is True
    assert _mode(os.path.join(root, "config.json")) == 0o600 and _mode(os.path.join(root, "sub", "w.bin")) == 0o644
    assert ownership.apply_path(os.path.join(root, "sub"), p) is True and _mode(os.path.join(root, "sub")) == 0o711
    assert ownership.apply_path(os.path.join(root, "sub"), p) is False


def test_apply_path_refuses_what_is_neither_a_file_nor_a_directory(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo, 0o644)
    with pytest.raises(ValidationError) as err:
        ownership.apply_path(fifo, Permissions.parse(mode="0600"))
    assert "neither a regular file nor a directory" in err.value.msg and err.value.details == {"path": fifo}
    assert f"Remove {fifo}" in err.value.fix and _mode(fifo) == 0o644


def test_owner_and_group_are_changed_together_or_alone(tmp_path):
    _need_root()
    f = str(tmp_path / "f")
    with open(f, "w", encoding="utf-8"):
        pass
    os.chown(f, 0, 0)
    assert ownership.apply_path(f, Permissions.parse(owner="1")) is True
    assert (os.lstat(f).st_uid, os.lstat(f).st_gid) == (1, 0), "the group is kept"
    os.chown(f, 0, 0)
    assert ownership.apply_path(f, Permissions.parse(group="1")) is True
    assert (os.lstat(f).st_uid, os.lstat(f).st_gid) == (0, 1), "the owner is kept"
    assert ownership.apply_path(f, Permissions.parse(owner="0", group="0", mode="0640")) is True
    st = os.lstat(f)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o640)


def test_a_setgid_directory_mode_survives_the_change_of_group(tmp_path):
    _need_root()
    d = str(tmp_path / "d")
    os.mkdir(d, 0o755)
    assert ownership.apply_path(d, Permissions.parse(group="1", mode="0640", directory_mode="2750")) is True
    st = os.lstat(d)
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (1, 0o2750)


def test_changing_the_owner_without_the_right_says_to_become_root(tmp_path, monkeypatch):
    f = str(tmp_path / "f")
    with open(f, "w", encoding="utf-8"):
        pass
    os.chmod(f, 0o644)

    def denied(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(ownership.os, "fchown", denied)
    with pytest.raises(ValidationError) as err:
        ownership.apply_path(f, Permissions.parse(owner="54321", group="daemon", mode="0600"))
    assert "owner/group 54321:daemon" in err.value.msg and "become: true" in err.value.fix
    assert err.value.details == {"path": f} and _mode(f) == 0o644
    for given, shown in (({"group": "daemon"}, "owner/group :daemon:"), ({"owner": "54321"}, "owner/group 54321::")):
        with pytest.raises(ValidationError) as err:
            ownership.apply_path(f, Permissions.parse(**given))
        assert shown in err.value.msg


def test_without_permissions_nothing_is_walked(tmp_path):
    root = str(tmp_path / "v")
    _tree(root)
    os.symlink(os.path.join(root, "config.json"), os.path.join(root, "link.json"))
    assert ownership.differences(root, Permissions()) == [] and ownership.apply(root, Permissions()) == []
    assert ownership.observed(root, Permissions()) == {}


def test_apply_lists_at_most_200_changed_paths_but_changes_them_all(tmp_path):
    root = tmp_path / "v"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    for i in range(205):
        (root / f"f{i:03d}").write_text("")
        os.chmod(root / f"f{i:03d}", 0o644)
    changed = ownership.apply(str(root), Permissions.parse(mode="0600", directory_mode="0755"))
    assert len(changed) == 200 and changed[0] == "f000" and changed[-1] == "f199"
    assert all(_mode(str(p)) == 0o600 for p in root.iterdir())
    assert ownership.apply(str(root), Permissions.parse(mode="0600", directory_mode="0700"))[0] == "."
