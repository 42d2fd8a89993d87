# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Owner, group and modes of an installed model's files and directories (``venom_model``'s
``owner``, ``group``, ``mode`` and ``directory_mode``).

* ``Permissions.parse`` validates the options: a user/group name or numeric id that exists on the
  host, modes as octal (``'0640'``, or the integer YAML makes of an unquoted ``0640``).
  ``mode`` without ``directory_mode`` gives directories the same bits plus search (``x``) wherever
  ``mode`` grants read, as ``chmod`` ``X`` does (``0640`` -> ``0750``).
* ``differences(root, perms)`` lists what differs under a model's directory (``lstat`` only);
  ``apply(root, perms)`` changes it. Both walk without following a symbolic link: each path is
  opened with ``O_NOFOLLOW`` (``safeio.open_state_file``) and changed through its descriptor
  (``fchown``/``fchmod``), so a link planted in a model's directory is refused, naming it, never
  followed. A file with more than one hard link shares its inode with another path (a local model
  adopted with hard links: the source), so changing it is refused too.
* Plain Python; the providers apply the permissions to the staging tree before it is renamed into
  place, so a model never appears with other permissions.
"""
from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import stat

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.store.safeio import open_state_file, refuse_link

KEYS = ("owner", "group", "mode", "directory_mode")
MAX_LISTED = 200


def _octal(value, name: str, allowed: int) -> int | None:
    if value is None:
        return None
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip() and all(c in "01234567" for c in value.strip()):
        number = int(value.strip(), 8)
    if number is None or number < 0 or number & ~allowed:
        raise ValidationError(
            f"{name} {value!r} is not an octal mode within {allowed:04o}.",
            fix=f"Give {name} as a quoted octal string such as '0640' (symbolic modes like 'u=rw,g=r' are not "
                "accepted; setuid/setgid bits are refused on model files).")
    return number


UNKNOWN_ID = -1  # check mode only: a user/group a real run creates first (differs from every file; never applied)


def _resolve(value, name: str, by_name, by_id, name_attr: str, id_attr: str, check_mode: bool = False) -> tuple:
    """(numeric id, display name) of a user or group given by name or number.

    In check mode a name that does not exist yet (a role earlier in the play creates it) resolves
    to ``UNKNOWN_ID``: it counts as a difference, and the caller warns."""
    if value is None:
        return None, None
    text = str(value).strip()
    if isinstance(value, bool) or not text:
        raise ValidationError(f"{name} {value!r} is not a {name} name or id.", fix=f"Give {name} as a name or a number.")
    try:
        if text.isdigit():
            number = int(text)
            try:
                return number, getattr(by_id(number), name_attr)
            except KeyError:
                return number, text  # a numeric id need not have a name (chown accepts it too)
        return getattr(by_name(text), id_attr), text
    except KeyError:
        if check_mode:
            return UNKNOWN_ID, text
        raise ValidationError(
            f"The {name} {text!r} does not exist on this host.",
            fix=f"Create it first (the venom.models.vllm role creates the user and group 'vllm'), or give a numeric "
                f"{'uid' if name == 'owner' else 'gid'}.") from None


@dataclasses.dataclass(frozen=True)
class Permissions:
    """What a model's files and directories must have; None: left as they are."""

    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    directory_mode: int | None = None
    owner_name: str | None = None
    group_name: str | None = None

    @classmethod
    def parse(cls, owner=None, group=None, mode=None, directory_mode=None, check_mode: bool = False) -> "Permissions":
        uid, owner_name = _resolve(owner, "owner", pwd.getpwnam, pwd.getpwuid, "pw_name", "pw_uid", check_mode)
        gid, group_name = _resolve(group, "group", grp.getgrnam, grp.getgrgid, "gr_name", "gr_gid", check_mode)
        file_mode = _octal(mode, "mode", 0o777)
        dir_mode = _octal(directory_mode, "directory_mode", 0o2777)
        if dir_mode is None and file_mode is not None:
            dir_mode = file_mode | ((file_mode & 0o444) >> 2)
        return cls(uid, gid, file_mode, dir_mode, owner_name, group_name)

    @classmethod
    def from_record(cls, record: dict | None, check_mode: bool = False) -> "Permissions":
        record = record or {}
        return cls.parse(*(record.get(k) for k in KEYS), check_mode=check_mode)

    def missing(self) -> list:
        """What check mode assumed a real run finds created: ``["group 'vllm'"]``."""
        return [f"{what} {name!r}" for what, number, name in (("user", self.uid, self.owner_name),
                                                              ("group", self.gid, self.group_name))
                if number == UNKNOWN_ID]

    def merged_over(self, recorded: "Permissions") -> "Permissions":
        """These permissions where set, else the ``recorded`` ones (a task that omits one keeps it)."""
        def pick(key):
            mine = getattr(self, key)
            return mine if mine is not None else getattr(recorded, key)
        return Permissions(**{f.name: pick(f.name) for f in dataclasses.fields(self)})

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.uid, self.gid, self.mode, self.directory_mode))

    def record(self) -> dict:
        """As the manifest records it and the diff shows it (names where known, modes as octal strings)."""
        out = {"owner": self.owner_name, "group": self.group_name,
               "mode": _fmt(self.mode), "directory_mode": _fmt(self.directory_mode)}
        return {k: v for k, v in out.items() if v is not None}

    def wanted(self, st: os.stat_result) -> dict:
        """attribute -> (actual, wanted) for what ``st`` lacks."""
        out = {}
        if self.uid is not None and st.st_uid != self.uid:
            out["owner"] = (st.st_uid, self.uid)
        if self.gid is not None and st.st_gid != self.gid:
            out["group"] = (st.st_gid, self.gid)
        want = self.directory_mode if stat.S_ISDIR(st.st_mode) else self.mode
        if want is not None and stat.S_IMODE(st.st_mode) != want:
            out["mode"] = (_fmt(stat.S_IMODE(st.st_mode)), _fmt(want))
        return out


def _fmt(mode: int | None) -> str | None:
    return None if mode is None else f"{mode:04o}"


def _walk(root: str):
    """(path, lstat) of ``root`` and everything below it; a symbolic link anywhere is refused."""
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode):
        raise refuse_link(root, "model directory")
    yield root, st
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise refuse_link(path, "model file")
            yield path, st


def _refuse_shared(path: str, st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise ValidationError(
            f"{path} has {st.st_nlink} hard links: it shares its content and permissions with another path (a local "
            "model adopted with hard links shares them with its source), so its owner and mode are not changed.",
            fix="Set the owner and mode on the source instead, or remove the model and adopt it again with "
                "adopt_mode: copy.", path=path)


def differences(root: str | None, perms: Permissions) -> list:
    """What differs under ``root``: ``[{path, <attribute>: [actual, wanted], ...}]`` (``lstat`` only)."""
    if not perms or not root or not os.path.lexists(root):
        return []
    out = []
    for path, st in _walk(root):
        diff = perms.wanted(st)
        if diff:
            _refuse_shared(path, st)
            out.append(dict({k: list(v) for k, v in diff.items()}, path=os.path.relpath(path, root)))
    return out


def observed(root: str | None, perms: Permissions) -> dict:
    """The current values of what ``perms`` sets, as the diff's "before" (a list where they differ)."""
    if not perms or not root or not os.path.lexists(root):
        return {}
    seen = {k: set() for k in KEYS}
    for _path, st in _walk(root):
        seen["owner"].add(_name(pwd.getpwuid, st.st_uid, "pw_name"))
        seen["group"].add(_name(grp.getgrgid, st.st_gid, "gr_name"))
        seen["directory_mode" if stat.S_ISDIR(st.st_mode) else "mode"].add(_fmt(stat.S_IMODE(st.st_mode)))
    wanted = perms.record()
    return {k: (next(iter(v)) if len(v) == 1 else sorted(v)) for k, v in seen.items() if k in wanted and v}


def _name(lookup, number: int, attr: str) -> str:
    try:
        return getattr(lookup(number), attr)
    except KeyError:
        return str(number)


def apply_path(path: str, perms: Permissions) -> bool:
    """Give one file or directory ``perms`` through a descriptor opened without following links."""
    if not perms:
        return False
    fd = open_state_file(path, os.O_RDONLY | os.O_NONBLOCK, what="model file")
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise ValidationError(f"{path} is neither a regular file nor a directory; model directories hold only those.",
                                  fix=f"Remove {path}, then run the task again (a repair fetches what is missing).",
                                  path=path)
        diff = perms.wanted(st)
        if not diff:
            return False
        _refuse_shared(path, st)
        if "owner" in diff or "group" in diff:
            try:
                os.fchown(fd, perms.uid if perms.uid is not None else -1, perms.gid if perms.gid is not None else -1)
            except PermissionError:
                raise ValidationError(
                    f"Cannot give {path} the owner/group {perms.owner_name or ''}:{perms.group_name or ''}: changing a "
                    "file's owner needs root (and a group needs membership).",
                    fix="Run the task with become: true, or leave owner/group out.", path=path) from None
        # chown clears setuid/setgid bits: the mode is set after it
        if perms.wanted(os.fstat(fd)).get("mode"):
            os.fchmod(fd, perms.directory_mode if stat.S_ISDIR(st.st_mode) else perms.mode)
        return True
    finally:
        os.close(fd)


def apply(root: str | None, perms: Permissions) -> list:
    """Give ``root`` and everything below it ``perms``; returns the paths changed (relative, up to 200)."""
    if not perms or not root or not os.path.lexists(root):
        return []
    changed = []
    for path, _st in list(_walk(root)):
        if apply_path(path, perms) and len(changed) < MAX_LISTED:
            changed.append(os.path.relpath(path, root))
    return changed
