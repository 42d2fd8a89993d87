# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Opening the library's own state files without being redirected (see docs/security.md).

Everyone who can write under ``models_dir`` could otherwise plant a symbolic link where the
library keeps a lock, a record or the manifest, and make a root run write through it. So:

* every state file is opened with ``O_NOFOLLOW | O_CLOEXEC``: a symlink in its place is refused
  (``refuse_link`` names it), never followed;
* the state directories (``.venom`` and below) must be real directories, not symlinks;
* running as root, ``models_dir``, ``.venom`` and the manifest must belong to root and not be
  writable by group or others, the way ssh's ``StrictModes`` treats ``~/.ssh``.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import stat

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def refuse_link(path: str, what: str) -> ValidationError:
    target = os.readlink(path) if os.path.islink(path) else "?"
    return ValidationError(
        f"The {what} {path} is a symbolic link (to {target}); venom.models never follows links in its state.",
        fix=f"Remove the link ('rm {path}'); venom.models recreates the {what} itself on the next run.",
        path=path)


def open_state_file(path: str, flags: int, mode: int = 0o640, what: str = "state file") -> int:
    """``os.open`` with ``O_NOFOLLOW | O_CLOEXEC``; a symlink at ``path`` raises ValidationError."""
    try:
        return os.open(path, flags | NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EEXIST and os.path.islink(path)):
            raise refuse_link(path, what) from None
        raise


def read_state_file(path: str, limit: int, what: str = "state file") -> bytes:
    """Up to ``limit`` + 1 bytes of a regular file, opened without following a symlink."""
    fd = open_state_file(path, os.O_RDONLY | os.O_NONBLOCK, what=what)  # O_NONBLOCK: a planted FIFO cannot hang the run
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(f"The {what} {path} is not a regular file.", fix=f"Remove {path}.", path=path)
        strict_modes(path, st, what)
        chunks, left = [], limit + 1
        while left > 0:
            data = os.read(fd, min(left, 1 << 20))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_state_json(path: str, limit: int, what: str = "state file"):
    """The JSON document of a state file read with ``read_state_file`` (no symlink followed, at
    most ``limit`` bytes). FileNotFoundError when it is missing; ValidationError for a link, a
    non-regular file, or (as root) a file another user could change; None when it is too large
    or not JSON (the caller says what that means)."""
    data = read_state_file(path, limit, what)
    if len(data) > limit:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def is_root() -> bool:
    return os.geteuid() == 0


def strict_modes(path: str, st: os.stat_result | None = None, what: str = "path", euid: int | None = None) -> None:
    """As root, refuse ``path`` when another user owns it or group/others may write it (StrictModes)."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return
    st = os.lstat(path) if st is None else st
    perms = stat.S_IMODE(st.st_mode)
    if st.st_uid != 0 or perms & 0o022:
        if st.st_uid != 0:
            problem = f"is owned by uid {st.st_uid}"
        else:
            problem = "is writable by " + {0o022: "group and others", 0o020: "group", 0o002: "others"}[perms & 0o022]
        raise ValidationError(
            f"Refusing the {what} {path}: it {problem} (owner uid {st.st_uid}, mode {perms:04o}); a root run only "
            "trusts files that no other user can change.",
            fix=f"Run 'chown root:root {path} && chmod go-w {path}' if its content is trusted, or point models_dir "
                "at a directory only root can write.",
            path=path, owner=st.st_uid, mode=f"{perms:04o}")


def check_dir(path: str, what: str, strict: bool = False) -> None:
    """Refuse a directory that is a symlink (or not a directory); as root with ``strict`` apply StrictModes."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise refuse_link(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise ValidationError(f"The {what} {path} is not a directory.", fix=f"Move {path} aside.", path=path)
    if strict:
        strict_modes(path, st, what)


DIGEST_KEY_NAME = "digest.key"


def digest_key(state_dir: str, create: bool = True) -> bytes | None:
    """This host's random key for keyed digests (``<state_dir>/digest.key``, mode 0600, created once).

    ``create=False`` (check mode, read-only callers) never creates it: None when there is none yet.
    """
    path = os.path.join(state_dir, DIGEST_KEY_NAME)
    check_dir(state_dir, "state directory")
    if not create:
        try:
            return _read_digest_key(path)
        except FileNotFoundError:
            return None
    os.makedirs(state_dir, mode=0o750, exist_ok=True)
    try:
        fd = open_state_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, what="digest key")
    except FileExistsError:
        return _read_digest_key(path)
    key = os.urandom(32)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def _read_digest_key(path: str) -> bytes:
    key = read_state_file(path, 64, what="digest key")
    if len(key) != 32:
        raise ValidationError(f"The digest key {path} is damaged ({len(key)} bytes, expected 32).",
                              fix=f"Remove {path}; a new key is made on the next run (runtimes restart once).",
                              path=path)
    return key


def keyed_digest(state_dir: str, text: str | None, create: bool = True) -> str | None:
    """HMAC-SHA256 of ``text`` under this host's key: detects a changed secret without storing a guessable digest.

    Without a key and ``create=False``: a one-off value that equals no stored digest (a digest
    made now would use a new key, so it would differ from any stored one too).
    """
    if not text:
        return None
    key = digest_key(state_dir, create=create)
    if key is None:
        return f"unkeyed-{os.urandom(8).hex()}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
