# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Process identity without third-party packages: is a recorded (pid, start time) still alive?

A PID alone is not an identity: the kernel recycles PIDs. The library records the process's start
time (``/proc/<pid>/stat`` field 22, in clock ticks since boot) beside every PID it writes (lock
files, journal owners, runtime PID files), and treats a PID whose start time differs as a
different process.

Why this reads the tick count itself rather than ``psutil.Process.create_time()`` (psutil finds
and describes process trees: ``runtimes/process.py``): the tick count is the one figure psutil
does not expose. ``create_time()`` is a float of seconds since the epoch, the ticks divided by the
clock rate plus the boot time, and the kernel derives that boot time (``btime`` in
``/proc/stat``) from the current wall clock: a clock step (NTP, a suspended VM) moves it, so a
float recorded by one run would not match the same process in the next. The ticks are an exact
integer that never changes for the life of a process, and they are what every record already on
disk holds. And the store (locks, journal) runs in every module on every host: its identity
needs only the standard library.
"""
from __future__ import annotations

import os


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of ``pid``; None if there is none."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = data[data.rfind(b")") + 2:].split()  # starts at field 3, the state
    try:
        return fields[0].decode(), int(fields[19])  # field 22: start time
    except (IndexError, ValueError):
        return None


def proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if there is no such process."""
    stat = _stat(pid)
    return stat[1] if stat is not None else None


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def process_identity(pid: int | None = None) -> dict:
    """The identity of ``pid`` (default: this process) as the library records it."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_start": proc_start_ticks(pid), "boot_id": boot_id()}


def is_alive(identity: dict | None, strict: bool = False) -> bool:
    """True if the process described by ``identity`` (pid, pid_start, boot_id) still runs.

    ``strict``: the start time must be recorded and match, and a zombie counts as gone (for
    processes the library started itself and must stop)."""
    if not identity or not isinstance(identity.get("pid"), int):
        return False
    recorded_boot = identity.get("boot_id")
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return False
    stat = _stat(identity["pid"])
    if strict:
        return stat is not None and stat[0] not in ("Z", "X", "x") and stat[1] == identity.get("pid_start")
    start = stat[1] if stat is not None else None
    if start is None:
        if os.path.isdir("/proc/self"):
            return False
        try:
            os.kill(identity["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    recorded = identity.get("pid_start")
    return recorded is None or recorded == start
