# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Process identity without third-party packages: is a recorded (pid, start time) still alive?

A PID alone is not an identity: the kernel recycles PIDs. The library records the process's start
time (``/proc/<pid>/stat`` field 22, in clock ticks since boot) beside every PID it writes, and
treats a PID whose start time differs as a different process.
"""
from __future__ import annotations

import os


def proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if there is no such process."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    tail = data[data.rfind(b")") + 2:].split()
    try:
        return int(tail[19])  # field 22 overall; tail starts at field 3
    except (IndexError, ValueError):
        return None


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


def is_alive(identity: dict | None) -> bool:
    """True if the process described by ``identity`` (pid, pid_start, boot_id) still runs."""
    if not identity or not isinstance(identity.get("pid"), int):
        return False
    recorded_boot = identity.get("boot_id")
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return False
    start = proc_start_ticks(identity["pid"])
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
