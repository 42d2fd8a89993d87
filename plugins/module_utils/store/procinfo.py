# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Process identity without third-party packages: is a recorded (pid, start time) still alive?

A PID alone is not an identity: the kernel recycles PIDs. The library records the process's start
time (``/proc/<pid>/stat`` field 22, in clock ticks since boot) beside every PID it writes, and
treats a PID whose start time differs as a different process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc/<pid>/stat`` describes it."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    sid: int
    start: int  # start time, clock ticks since boot

    @property
    def zombie(self) -> bool:
        """A zombie (or dead) process holds no memory, files or ports; only its parent can reap it."""
        return self.state in ("Z", "X", "x")

    def describe(self) -> str:
        return f"{self.pid} ({self.comm}, state {self.state})"


def read_proc(pid: int) -> Proc | None:
    """The process ``pid`` or None if it does not exist (any more)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    lpar, rpar = data.find(b"("), data.rfind(b")")
    fields = data[rpar + 2:].split()  # starts at field 3
    try:
        return Proc(pid=int(pid), comm=data[lpar + 1:rpar].decode("utf-8", "replace"),
                    state=fields[0].decode(), ppid=int(fields[1]), pgrp=int(fields[2]),
                    sid=int(fields[3]), start=int(fields[19]))  # field 22: start time
    except (IndexError, ValueError):
        return None


def proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if there is no such process."""
    proc = read_proc(pid)
    return proc.start if proc is not None else None


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
    proc = read_proc(identity["pid"])
    if strict:
        return proc is not None and not proc.zombie and proc.start == identity.get("pid_start")
    start = proc.start if proc is not None else None
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
