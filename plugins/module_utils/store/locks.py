# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inter-process locks on files (``fcntl.flock``).

* A lock dies with its holder: the kernel releases a ``flock`` when the process exits, however it
  exits (SIGKILL included), so there are no stale locks to clean by hand.
* The lock file holds who has it (pid, host, operation id, purpose, since); a waiter that times
  out reports that in its error.
* Lock files are removed on release while still locked; an acquirer checks that the file it
  locked is still the one at the path (same inode) and retries otherwise, so removal is safe.
* Locks are not re-entrant: taking a lock this process already holds raises at once instead of
  deadlocking.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time

from ansible_collections.venom.models.plugins.module_utils.errors import LockTimeout, VenomError
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths, keyed_file_name
from ansible_collections.venom.models.plugins.module_utils.store.procinfo import process_identity
from ansible_collections.venom.models.plugins.module_utils.store.safeio import check_dir, open_state_file, read_state_json
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso

# The default of every lock wait, and of the modules' lock_timeout option (doc fragment common)
DEFAULT_LOCK_TIMEOUT = 600.0
_held: set[str] = set()
_held_guard = threading.Lock()


class FileLock:
    """An exclusive inter-process lock on ``path``; use as a context manager."""

    def __init__(self, path: str, timeout: float = DEFAULT_LOCK_TIMEOUT, purpose: str = "",
                 operation_id: str | None = None, poll_interval: float = 0.05, remove_on_release: bool = True):
        self.path = os.path.abspath(path)
        self.timeout = timeout
        self.purpose = purpose
        self.operation_id = operation_id
        self.poll_interval = poll_interval
        self.remove_on_release = remove_on_release
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict | None:
        """What the lock file says about its current holder (best effort)."""
        try:
            data = read_state_json(self.path, 64 * 1024, "lock file")
        except (OSError, VenomError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self) -> "FileLock":
        with _held_guard:
            if self.path in _held:
                raise VenomError(f"This process already holds the lock {self.path}; locks are not re-entrant.",
                                 fix="This is a bug in venom.models; please report it.")
        deadline = time.monotonic() + max(0.0, self.timeout)
        directory = os.path.dirname(self.path)
        for d in (os.path.dirname(directory), directory):
            check_dir(d, "state directory")  # .venom and locks/: never through a symlink
        os.makedirs(directory, mode=0o750, exist_ok=True)
        while True:
            fd = open_state_file(self.path, os.O_RDWR | os.O_CREAT, 0o640, what="lock file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise self._timeout_error() from None
                time.sleep(self.poll_interval)
                continue
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is None or (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)  # the previous holder removed this file on release: lock the new one
                continue
            self._fd = fd
            break
        with _held_guard:
            _held.add(self.path)
        self._write_holder(fd)
        return self

    def _write_holder(self, fd: int) -> None:
        """Record who holds the lock, best effort: a full disk must not stop a removal (no space needed)."""
        info = dict(process_identity(), host=socket.gethostname(), purpose=self.purpose,
                    operation_id=self.operation_id, since=iso())
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info, sort_keys=True).encode(), 0)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                self.release()
                raise

    def _timeout_error(self) -> LockTimeout:
        who = self.holder() or {}
        desc = ", ".join(f"{k} {who[k]}" for k in ("pid", "host", "operation_id", "purpose", "since") if who.get(k))
        return LockTimeout(
            f"Timed out after {self.timeout:g}s waiting for the lock {self.path}"
            + (f" held by {desc}." if desc else "."),
            fix="Wait for the other run to finish (see its operation in venom_model_facts, gather_subset operations) "
                "or raise lock_timeout; a lock is released automatically when its holder exits, so there is "
                "nothing to delete by hand.",
            holder=who)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self.remove_on_release:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
            with _held_guard:
                _held.discard(self.path)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def model_lock(models_dir: str | StatePaths, provider: str, name: str, timeout: float = DEFAULT_LOCK_TIMEOUT,
               operation_id: str | None = None, purpose: str = "") -> FileLock:
    """The lock that serializes every change to one model (install, remove, verify, update)."""
    paths = StatePaths.of(models_dir)
    return FileLock(os.path.join(paths.locks_dir, keyed_file_name("model", f"{provider}:{name}", ".lock")), timeout=timeout,
                    purpose=purpose or f"{provider} model {name}", operation_id=operation_id)


def runtime_lock(models_dir: str | StatePaths, runtime: str, timeout: float = DEFAULT_LOCK_TIMEOUT,
                 operation_id: str | None = None, purpose: str = "") -> FileLock:
    """The lock that serializes start/stop/activation of one runtime on this host."""
    paths = StatePaths.of(models_dir)
    return FileLock(os.path.join(paths.locks_dir, keyed_file_name("runtime", runtime, ".lock")), timeout=timeout,
                    purpose=purpose or f"runtime {runtime}", operation_id=operation_id)


def manifest_lock(models_dir: str | StatePaths, timeout: float = DEFAULT_LOCK_TIMEOUT) -> FileLock:
    """The lock held for the short read-modify-write of the manifest."""
    paths = StatePaths.of(models_dir)
    return FileLock(os.path.join(paths.locks_dir, "manifest.lock"), timeout=timeout, purpose="manifest update")
