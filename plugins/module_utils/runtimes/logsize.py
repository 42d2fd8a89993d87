# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Size-bounded log files for runtimes in process mode.

A process-mode runtime writes its stdout and stderr into a pipe; a small rotator process reads
the pipe and appends to the log file, and when the next write would take the file past
``max_bytes`` it renames ``log`` to ``log.1`` (``log.1`` to ``log.2`` ... up to ``keep`` old
files, the oldest dropped) and starts a new ``log``. So the logs of one runtime never take more
than about ``(keep + 1) * max_bytes`` of disk, and the runtime keeps logging across rotations.

The rotator is plain Python run by the same interpreter (no third-party code), in its own
session: it is not part of the runtime's process tree and needs no stop; it ends when the last
writer of the pipe (the runtime and all its children) is gone. Write errors (disk full) drop
the data instead of blocking or killing the runtime.
"""
from __future__ import annotations

import os
import sys
import time

from ansible_collections.venom.models.plugins.module_utils.runtimes.spawn import spawn_detached

DEFAULT_MAX_BYTES = 100 * 2 ** 20
DEFAULT_KEEP = 3

ROTATOR = r"""
import os, signal, sys
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)  # it ends at EOF, after the runtime's last words
path, limit, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def open_log():
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
def rotate():
    for i in range(keep - 1, 0, -1):
        if os.path.exists(f"{path}.{i}"):
            os.replace(f"{path}.{i}", f"{path}.{i + 1}")
    os.replace(path, f"{path}.1")
fd = open_log()
size = os.fstat(fd).st_size
while True:
    try:
        data = os.read(0, 65536)
    except InterruptedError:
        continue
    if not data:
        break
    try:
        if size and size + len(data) > limit:
            os.close(fd)
            rotate()
            fd = open_log()
            size = 0
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        size += len(data)
    except OSError:
        pass  # disk full or the directory gone: lose the line, never block the runtime
"""


def validate(max_bytes: int, keep: int) -> None:
    if int(max_bytes) < 1024 or int(keep) < 1:
        raise ValueError(f"log rotation needs max_bytes >= 1024 and keep >= 1 (got {max_bytes}, {keep})")


def start_rotator(log_file: str, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
                  python: str | None = None) -> tuple[int, int]:
    """Start the rotator for ``log_file``; returns ``(write_fd, pid)``.

    Give ``write_fd`` to the runtime as its stdout and stderr, then close it here: the rotator
    ends once every process that holds it has exited.
    """
    validate(max_bytes, keep)
    read_fd, write_fd = os.pipe()  # both close-on-exec: the rotator gets only the read end, as stdin
    try:
        exe = python or sys.executable or "/usr/bin/python3"
        pid = spawn_detached(exe, [exe, "-c", ROTATOR, os.path.abspath(log_file), str(int(max_bytes)), str(int(keep))],
                             {"PATH": os.defpath, "LC_ALL": "C"}, stdin=read_fd)
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return write_fd, pid


def wait_rotator(pid: int, timeout: float = 2.0) -> None:
    """After the runtime died: wait until the rotator wrote its last bytes and exited (our child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done == pid:
            return
        time.sleep(0.02)
