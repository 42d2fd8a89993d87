# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the store reads and writes its own files: opened without following links, read up to a
limit, replaced atomically, laid out under models_dir (store.safeio, store.atomic, store.paths)."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import stat

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.store import atomic, paths, safeio


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask0():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# -- safeio: opening ---------------------------------------------------------------------------------

def test_a_state_file_is_created_with_the_given_mode_and_not_inherited_by_children(tmp_path, umask0):
    path = str(tmp_path / "state.json")
    fd = safeio.open_state_file(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, "a started runtime must not inherit it"
    finally:
        os.close(fd)
    assert _mode(path) == 0o640, "the default mode of a state file"
    fd = safeio.open_state_file(str(tmp_path / "key"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    assert _mode(str(tmp_path / "key")) == 0o600


def test_a_symlink_in_place_of_a_state_file_is_refused_naming_it_and_its_target(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    link = str(tmp_path / "lock")
    os.symlink(str(target), link)
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT, os.O_WRONLY | os.O_CREAT | os.O_EXCL):
        with pytest.raises(ValidationError) as err:
            safeio.open_state_file(link, flags, what="lock file")
        assert "lock file" in err.value.msg and link in err.value.msg and str(target) in err.value.msg
        assert err.value.details["path"] == link and f"rm {link}" in err.value.fix
    assert target.read_text() == "x"
    dangling = str(tmp_path / "dangling")
    os.symlink(str(tmp_path / "nowhere"), dangling)
    with pytest.raises(ValidationError, match="symbolic link"):
        safeio.open_state_file(dangling, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert not os.path.exists(str(tmp_path / "nowhere")), "nothing is created through the link"


def test_other_open_errors_pass_through_unchanged(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileNotFoundError):
        safeio.open_state_file(str(tmp_path / "missing"), os.O_RDONLY)
    with pytest.raises(FileExistsError):   # an existing regular file is no link
        safeio.open_state_file(str(tmp_path / "f"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def test_refuse_link_of_a_path_that_is_no_longer_a_link_shows_no_target(tmp_path):
    err = safeio.refuse_link(str(tmp_path / "gone"), "lock file")
    assert "(to ?)" in err.msg and err.details == {"path": str(tmp_path / "gone")}


# -- safeio: reading ---------------------------------------------------------------------------------

def test_a_state_file_is_read_up_to_one_byte_past_its_limit(tmp_path):
    path = str(tmp_path / "f")
    with open(path, "wb") as fh:
        fh.write(b"0123456789")
    assert safeio.read_state_file(path, 100) == b"0123456789"
    assert safeio.read_state_file(path, 10) == b"0123456789"
    assert safeio.read_state_file(path, 4) == b"01234", "one byte more than the limit tells it is too large"
    assert safeio.read_state_file(path, 0) == b"0"


def test_a_large_state_file_is_read_in_full_below_its_limit(tmp_path):
    path = str(tmp_path / "big")
    data = bytes(range(256)) * (5 * 4096 + 3)   # over 1 MiB: more than one read
    with open(path, "wb") as fh:
        fh.write(data)
    assert safeio.read_state_file(path, len(data) + 10) == data
    assert safeio.read_state_file(path, len(data) - 1) == data
    assert safeio.read_state_file(path, (1 << 20) + 5) == data[:(1 << 20) + 6]


def test_a_json_state_file_of_exactly_the_limit_is_read_and_one_over_it_is_not(tmp_path):
    path = str(tmp_path / "s.json")
    (tmp_path / "s.json").write_text('{"a": 1}')
    assert safeio.read_state_json(path, 8) == {"a": 1}
    assert safeio.read_state_json(path, 7) is None
    (tmp_path / "s.json").write_text("{not json")
    assert safeio.read_state_json(path, 100) is None
    (tmp_path / "s.json").write_text("[" * 100000 + "]" * 100000)
    assert safeio.read_state_json(path, 1 << 20) is None, "too deeply nested: treated as unreadable"
    with pytest.raises(FileNotFoundError):
        safeio.read_state_json(str(tmp_path / "missing"), 10)


def test_a_fifo_in_place_of_a_state_file_is_refused_without_hanging(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    with pytest.raises(ValidationError) as err:
        safeio.read_state_file(path, 10, what="lock file")
    assert "lock file" in err.value.msg and "not a regular file" in err.value.msg
    assert err.value.details == {"path": path} and path in err.value.fix


def test_a_state_file_another_user_may_change_is_refused_as_root_only(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text("{}")
    os.chmod(path, 0o646)
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 1000)
    assert safeio.read_state_json(str(path), 10) == {}
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    with pytest.raises(ValidationError, match="writable by others") as err:
        safeio.read_state_json(str(path), 10, what="record")
    assert err.value.msg.startswith(f"Refusing the record {path}:")


def test_the_file_checked_is_the_file_opened_not_what_replaces_it_later(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text('{"v": "opened"}')
    os.chmod(path, 0o644)
    loose = tmp_path / "loose.json"
    loose.write_text('{"v": "planted"}')
    os.chmod(loose, 0o666)
    real_fstat = os.fstat

    def fstat_after_swap(fd):
        if loose.exists():
            os.replace(str(loose), str(path))   # the path now names another, group-writable file
        return real_fstat(fd)
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    monkeypatch.setattr(safeio.os, "fstat", fstat_after_swap)
    assert safeio.read_state_json(str(path), 100) == {"v": "opened"}


# -- safeio: StrictModes -----------------------------------------------------------------------------

def _fake_stat(path, uid, mode):
    st = os.stat(path)
    return os.stat_result((stat.S_IFDIR | mode, st.st_ino, st.st_dev, 1, uid, 0, 0, 0, 0, 0))


@pytest.mark.parametrize("mode,who", [(0o775, "group"), (0o757, "others"), (0o777, "group and others")])
def test_strict_modes_name_who_may_write(tmp_path, mode, who):
    with pytest.raises(ValidationError) as err:
        safeio.strict_modes(str(tmp_path), _fake_stat(tmp_path, 0, mode), "models_dir", euid=0)
    assert f"it is writable by {who} (owner uid 0, mode {mode:04o})" in err.value.msg
    assert "models_dir" in err.value.msg and str(tmp_path) in err.value.fix
    assert err.value.details == {"path": str(tmp_path), "owner": 0, "mode": f"{mode:04o}"}


def test_strict_modes_call_an_unnamed_path_a_path(tmp_path):
    with pytest.raises(ValidationError) as err:
        safeio.strict_modes(str(tmp_path), _fake_stat(tmp_path, 0, 0o777), euid=0)
    assert err.value.msg.startswith(f"Refusing the path {tmp_path}: it is writable by group and others")


def test_strict_modes_accept_a_root_owned_directory_without_group_or_other_write(tmp_path):
    for mode in (0o755, 0o750, 0o700, 0o1755, 0o2750):
        safeio.strict_modes(str(tmp_path), _fake_stat(tmp_path, 0, mode), "models_dir", euid=0)


def test_strict_modes_look_at_the_path_itself_and_this_process_by_default(tmp_path, monkeypatch):
    target = tmp_path / "target"
    target.mkdir()
    os.chmod(target, 0o755)
    link = tmp_path / "link"
    os.symlink(str(target), str(link))
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    safeio.strict_modes(str(target), what="models_dir")
    with pytest.raises(ValidationError, match="writable by group and others"):   # the link itself (lstat)
        safeio.strict_modes(str(link), what="models_dir")
    os.chmod(target, 0o777)
    with pytest.raises(ValidationError, match="writable by group and others"):
        safeio.strict_modes(str(target), what="models_dir")
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 1000)
    safeio.strict_modes(str(target), what="models_dir")
    assert safeio.is_root() is False
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    assert safeio.is_root() is True


def test_check_dir_refuses_links_and_files_and_applies_strict_modes_only_when_asked(tmp_path, monkeypatch):
    safeio.check_dir(str(tmp_path / "missing"), "state directory")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValidationError) as err:
        safeio.check_dir(str(tmp_path / "file"), "state directory")
    assert "state directory" in err.value.msg and "not a directory" in err.value.msg
    assert err.value.details == {"path": str(tmp_path / "file")} and str(tmp_path / "file") in err.value.fix
    os.symlink(str(tmp_path), str(tmp_path / "link"))
    with pytest.raises(ValidationError, match="symbolic link"):
        safeio.check_dir(str(tmp_path / "link"), "state directory")
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    safeio.check_dir(str(loose), "state directory")
    with pytest.raises(ValidationError, match="writable by group and others") as err:
        safeio.check_dir(str(loose), "state directory", strict=True)
    assert err.value.msg.startswith(f"Refusing the state directory {loose}:")
    assert err.value.details == {"path": str(loose), "owner": 0, "mode": "0777"}


# -- safeio: the digest key --------------------------------------------------------------------------

def test_the_digest_key_is_made_once_private_and_reused(tmp_path, umask0):
    state = str(tmp_path / "state")
    assert safeio.digest_key(state, create=False) is None and not os.path.exists(state), "read-only: nothing made"
    key = safeio.digest_key(state)
    assert len(key) == 32 and _mode(state) == 0o750 and _mode(os.path.join(state, "digest.key")) == 0o600
    with open(os.path.join(state, safeio.DIGEST_KEY_NAME), "rb") as fh:
        assert fh.read() == key
    assert safeio.digest_key(state) == key and safeio.digest_key(state, create=False) == key
    assert safeio.keyed_digest(state, "s3cret") == hmac.new(key, b"s3cret", hashlib.sha256).hexdigest()
    assert safeio.keyed_digest(state, "s3cret", create=False) == safeio.keyed_digest(state, "s3cret")


def test_a_damaged_digest_key_is_refused_with_its_size(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    for size in (0, 31, 33, 70):
        (state / "digest.key").write_bytes(b"k" * size)
        for create in (True, False):
            with pytest.raises(ValidationError) as err:
                safeio.digest_key(str(state), create=create)
            assert f"The digest key {state / 'digest.key'} is damaged ({min(size, 65)} bytes, expected 32)" \
                in err.value.msg
            assert err.value.details == {"path": str(state / "digest.key")}
            assert f"Remove {state / 'digest.key'}" in err.value.fix
    (state / "digest.key").write_bytes(b"k" * 32)
    assert safeio.digest_key(str(state)) == b"k" * 32


def test_a_symlinked_digest_key_or_state_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(str(real), str(tmp_path / "state"))
    with pytest.raises(ValidationError, match="state directory"):
        safeio.digest_key(str(tmp_path / "state"))
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "key").write_bytes(b"k" * 32)
    os.symlink(str(tmp_path / "key"), str(other / "digest.key"))
    for create in (True, False):
        with pytest.raises(ValidationError, match="digest key"):
            safeio.digest_key(str(other), create=create)


def test_the_digest_key_is_written_durably(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(safeio.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    safeio.digest_key(str(tmp_path / "state"))
    assert synced


def test_no_secret_no_digest_and_no_key_in_check_mode(tmp_path):
    state = str(tmp_path / "state")
    assert safeio.keyed_digest(state, "") is None and safeio.keyed_digest(state, None) is None
    assert not os.path.exists(state)
    one = safeio.keyed_digest(state, "s3cret", create=False)
    assert one.startswith("unkeyed-") and len(one) == len("unkeyed-") + 16 and not os.path.exists(state)
    assert one != safeio.keyed_digest(state, "s3cret", create=False), "a one-off value, equal to nothing stored"


def test_a_concurrent_creator_s_key_is_read_not_replaced(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    real_open = safeio.os.open

    def racing_open(path, flags, mode=0o777):
        if path.endswith("digest.key") and flags & os.O_EXCL and not os.path.exists(path):
            with open(path, "wb") as fh:   # another run made it between our check and our open
                fh.write(b"r" * 32)
        return real_open(path, flags, mode)
    monkeypatch.setattr(safeio.os, "open", racing_open)
    assert safeio.digest_key(str(state)) == b"r" * 32


# -- atomic ------------------------------------------------------------------------------------------

def test_an_atomic_write_replaces_the_file_with_its_mode_and_leaves_no_temp_file(tmp_path, umask0):
    path = str(tmp_path / "m.json")
    atomic.atomic_write_bytes(path, b"old")
    assert _mode(path) == 0o644
    atomic.atomic_write_bytes(path, b"new", mode=0o600)
    with open(path, "rb") as fh:
        assert fh.read() == b"new"
    assert _mode(path) == 0o600 and os.listdir(tmp_path) == ["m.json"]
    atomic.atomic_write_json(path, {"b": 1, "a": "é"}, mode=0o640, durable=False)
    with open(path, "rb") as fh:
        assert fh.read() == '{\n  "a": "é",\n  "b": 1\n}\n'.encode("utf-8")
    assert _mode(path) == 0o640 and os.listdir(tmp_path) == ["m.json"]
    atomic.atomic_write_json(path, [1])
    assert _mode(path) == 0o644


def test_an_atomic_write_to_a_relative_path_lands_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic.atomic_write_bytes("rel.bin", b"x")
    assert (tmp_path / "rel.bin").read_bytes() == b"x"


def test_the_temp_file_is_hidden_and_named_after_the_target(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(src)
        return real_replace(src, dst)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic.atomic_write_bytes(str(tmp_path / "m.json"), b"x")
    assert os.path.dirname(seen[0]) == str(tmp_path), "beside the target: the rename stays on one file system"
    assert os.path.basename(seen[0]).startswith(".m.json.") and seen[0].endswith(".tmp")


def test_a_failed_atomic_write_keeps_the_old_content_and_removes_its_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    path.write_bytes(b"old")

    def fail(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError):
        atomic.atomic_write_bytes(str(path), b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.json"]


def test_a_failed_write_whose_temp_file_is_already_gone_raises_the_first_error(tmp_path, monkeypatch):
    def vanish(tmp, mode):
        os.unlink(tmp)
        raise PermissionError(errno.EPERM, "not permitted")
    monkeypatch.setattr(atomic.os, "chmod", vanish)
    with pytest.raises(PermissionError):
        atomic.atomic_write_bytes(str(tmp_path / "m.json"), b"new")
    assert os.listdir(tmp_path) == []


def test_a_durable_write_syncs_file_and_directory_and_a_fast_one_neither(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.atomic_write_bytes(str(tmp_path / "a"), b"x")
    assert synced == [False, True]
    synced.clear()
    atomic.atomic_write_json(str(tmp_path / "b"), {}, durable=False)
    assert synced == []
    atomic.atomic_write_json(str(tmp_path / "c"), {})
    assert synced == [False, True]


def test_fsync_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        atomic.fsync_dir(str(tmp_path / "f"))


def test_dir_size_counts_regular_files_and_links_only_when_followed(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
    outside = tmp_path.parent / f"{tmp_path.name}-blob"
    outside.write_bytes(b"z" * 100)
    os.symlink(str(outside), str(tmp_path / "sub" / "link"))
    os.symlink(str(tmp_path / "missing"), str(tmp_path / "dangling"))
    os.mkfifo(str(tmp_path / "fifo"))
    assert atomic.dir_size(str(tmp_path)) == 15
    assert atomic.dir_size(str(tmp_path), follow_symlinks=True) == 115
    assert atomic.dir_size(str(tmp_path / "missing")) == 0


# -- paths -------------------------------------------------------------------------------------------

def test_state_paths_lay_out_a_models_directory(tmp_path, monkeypatch):
    p = paths.StatePaths(str(tmp_path) + "/./models/")
    d = str(tmp_path / "models")
    assert (p.models_dir, p.manifest, p.state_dir) == (d, d + "/manifest.json", d + "/.venom")
    assert (p.locks_dir, p.operations_dir, p.staging_dir, p.records_dir) == tuple(
        d + "/.venom/" + n for n in ("locks", "operations", "staging", "records"))
    assert p.provider_dir("huggingface") == d + "/huggingface"
    assert repr(p) == f"StatePaths({d!r})"
    assert paths.StatePaths().models_dir == "/var/lib/venom/models" == paths.StatePaths("").models_dir
    monkeypatch.chdir(tmp_path)
    assert paths.StatePaths("rel").models_dir == str(tmp_path / "rel")
    assert paths.StatePaths.of(p) is p and paths.StatePaths.of(d).models_dir == d
    assert not os.path.exists(d), "creates nothing until ensure()"


def test_ensure_creates_the_skeleton_with_its_modes_and_is_repeatable(tmp_path, umask0):
    p = paths.StatePaths(str(tmp_path / "models"))
    assert p.ensure() is p
    assert _mode(p.models_dir) == 0o755
    for d in (p.state_dir, p.locks_dir, p.operations_dir, p.staging_dir, p.records_dir):
        assert os.path.isdir(d) and _mode(d) == 0o750, d
    os.rmdir(p.records_dir)
    p.ensure()
    assert os.path.isdir(p.records_dir)
    assert p.check() is p


@pytest.mark.parametrize("which", ["locks", "operations", "staging", "records"])
def test_a_symlinked_state_directory_is_refused_by_check_and_ensure(tmp_path, which):
    p = paths.StatePaths(str(tmp_path / "models")).ensure()
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.rmdir(os.path.join(p.state_dir, which))
    os.symlink(str(target), os.path.join(p.state_dir, which))
    for call in (p.check, p.ensure):
        with pytest.raises(ValidationError, match="symbolic link") as err:
            call()
        assert err.value.msg.startswith(f"The state directory {os.path.join(p.state_dir, which)} is a symbolic link")
    assert os.listdir(target) == []


def test_a_state_directory_another_run_creates_meanwhile_is_no_error(tmp_path, monkeypatch):
    p = paths.StatePaths(str(tmp_path / "models")).ensure()
    real_isdir = os.path.isdir
    asked = set()

    def isdir_before_the_other_run(path):   # each state directory is first seen missing, then made by another run
        if path in (p.state_dir, p.locks_dir, p.operations_dir, p.staging_dir, p.records_dir) and path not in asked:
            asked.add(path)
            return False
        return real_isdir(path)
    monkeypatch.setattr(paths.os.path, "isdir", isdir_before_the_other_run)
    assert p.ensure() is p and len(asked) == 5


def test_a_state_directory_that_is_a_file_is_refused(tmp_path):
    p = paths.StatePaths(str(tmp_path / "models")).ensure()
    os.rmdir(p.staging_dir)
    with open(p.staging_dir, "w", encoding="utf-8"):
        pass
    with pytest.raises(ValidationError, match="not a directory"):
        p.ensure()


def test_as_root_a_loose_state_directory_is_refused_but_a_loose_lock_directory_is_not(tmp_path, monkeypatch):
    p = paths.StatePaths(str(tmp_path / "models")).ensure()
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    os.chmod(p.locks_dir, 0o777)
    p.check()
    os.chmod(p.state_dir, 0o777)
    with pytest.raises(ValidationError, match="state directory .* writable by group and others"):
        p.check()
    os.chmod(p.state_dir, 0o750)
    os.chmod(p.models_dir, 0o777)
    with pytest.raises(ValidationError) as err:
        p.check()
    assert err.value.msg.startswith(f"Refusing the models_dir {p.models_dir}: it is writable by group and others")
    assert err.value.details["path"] == p.models_dir


def test_as_root_a_models_dir_may_be_a_symlink_to_a_directory_only_root_can_write(tmp_path, monkeypatch):
    real = tmp_path / "data"
    real.mkdir()
    os.chmod(real, 0o755)
    os.symlink(str(real), str(tmp_path / "models"))
    monkeypatch.setattr(safeio.os, "geteuid", lambda: 0)
    p = paths.StatePaths(str(tmp_path / "models")).ensure()
    assert os.path.isdir(str(real / ".venom" / "locks")) and p.check() is p


def test_keyed_file_names_are_readable_safe_and_unique():
    name = paths.keyed_file_name("model", "huggingface:org/a", ".lock")
    digest = hashlib.sha256(b"huggingface:org/a").hexdigest()[:12]
    assert name == f"model-huggingface_org_a-{digest}.lock"
    assert paths.keyed_file_name("model", "huggingface:org/A", ".lock") != name
    assert paths.keyed_file_name("model", "Org/Model.v2", "").startswith("model-Org_Model.v2-"), "case is kept"
    long_key = "a" * 100 + "/é"
    long_name = paths.keyed_file_name("runtime", long_key, ".json")
    long_digest = hashlib.sha256(long_key.encode("utf-8")).hexdigest()[:12]
    assert long_name == "runtime-" + "a" * 80 + "-" + long_digest + ".json"
    assert paths.keyed_file_name("m", "x.y_z-1", "") == "m-x.y_z-1-" + hashlib.sha256(b"x.y_z-1").hexdigest()[:12]
    assert json.dumps(paths.keyed_file_name("m", "a b//c", "")).startswith('"m-a_b_c-')
