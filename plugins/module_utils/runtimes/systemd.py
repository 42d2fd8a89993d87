# SPDX-License-Identifier: GPL-3.0-or-later
"""systemd control through ``systemctl`` / ``journalctl``, run by a caller-supplied runner.

The library starts no subprocess itself: the caller passes ``runner(argv) -> (rc, stdout, stderr)``
(in a module: ``module.run_command``; in tests: a small ``subprocess.run`` wrapper). Commands are
argv lists, never shell strings.
"""
from __future__ import annotations

import os
import time

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError

CGROUP_ROOT = "/sys/fs/cgroup"
_POLL = 0.1


def systemd_booted(run_dir: str = "/run/systemd/system") -> bool:
    """True if systemd is the init system (PID 1) of this host: sd_booted()'s test."""
    return os.path.isdir(run_dir)


def cgroup_dir(control_group: str) -> str | None:
    """The directory of a control group, cgroup v2 (unified) or v1 (systemd hierarchy); None if it is gone."""
    rel = control_group.lstrip("/")
    if not rel or ".." in rel.split("/"):
        return None
    for base in (CGROUP_ROOT, os.path.join(CGROUP_ROOT, "unified"), os.path.join(CGROUP_ROOT, "systemd")):
        path = os.path.join(base, rel)
        if os.path.exists(os.path.join(path, "cgroup.procs")):
            return path
    return None


def _cgroup_procs_file(control_group: str) -> str | None:
    """``cgroup.procs`` of a unit's control group (see ``cgroup_dir``)."""
    path = cgroup_dir(control_group)
    return os.path.join(path, "cgroup.procs") if path else None


def cgroup_pids(control_group: str | None) -> list[int]:
    """Pids in a control group and its sub-groups (none if the group no longer exists)."""
    if not control_group:
        return []
    procs_file = _cgroup_procs_file(control_group)
    if procs_file is None:
        return []
    pids: set[int] = set()
    for root, _dirs, files in os.walk(os.path.dirname(procs_file)):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(root, "cgroup.procs"), encoding="ascii") as fh:
                    pids |= {int(x) for x in fh.read().split()}
            except (OSError, ValueError):
                continue
    return sorted(pids)


class Systemd:
    """One host's systemd, driven through ``systemctl``."""

    def __init__(self, runner, systemctl: str = "systemctl", journalctl: str = "journalctl"):
        self.runner = runner
        self.systemctl = systemctl
        self.journalctl = journalctl

    def _run(self, *args: str, check: bool = True, what: str = "") -> tuple[int, str, str]:
        argv = [self.systemctl, *args]
        rc, out, err = self.runner(argv)
        if check and rc != 0:
            raise RuntimeControlError(
                f"'{' '.join(argv)}' failed (rc {rc}){': ' + what if what else ''}: {(err or out).strip()}",
                fix="Check the unit with 'systemctl status' and 'journalctl -u <unit>'.")
        return rc, out, err

    def show(self, unit: str, *props: str) -> dict[str, str]:
        args = ["show", "--no-pager"]
        for prop in props:
            args += ["-p", prop]
        _rc, out, _err = self._run(*args, "--", unit)
        values = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
        return values

    def load_state(self, unit: str) -> str:
        """'loaded', 'not-found', 'masked', 'bad-setting', 'error', ..."""
        return self.show(unit, "LoadState").get("LoadState", "")

    def unit_exists(self, unit: str) -> bool:
        return self.load_state(unit) in ("loaded", "masked")

    def is_active(self, unit: str) -> str:
        """'active', 'inactive', 'activating', 'deactivating', 'failed', ..."""
        _rc, out, _err = self._run("is-active", "--", unit, check=False)
        return out.strip() or "unknown"

    def main_pid(self, unit: str) -> int | None:
        value = self.show(unit, "MainPID").get("MainPID", "0")
        return int(value) if value.isdigit() and int(value) > 0 else None

    def control_group(self, unit: str) -> str | None:
        return self.show(unit, "ControlGroup").get("ControlGroup") or None

    def status(self, unit: str) -> dict[str, str]:
        return self.show(unit, "LoadState", "ActiveState", "SubState", "MainPID", "ControlGroup",
                         "ExecMainStartTimestampMonotonic", "NRestarts", "Result")

    def start(self, unit: str) -> None:
        self._check_loaded(unit)
        self._run("start", "--", unit, what=f"starting {unit}")

    def restart(self, unit: str) -> None:
        self._check_loaded(unit)
        self._run("restart", "--", unit, what=f"restarting {unit}")

    def reset_failed(self, unit: str) -> None:
        self._run("reset-failed", "--", unit, check=False)

    def daemon_reload(self) -> None:
        self._run("daemon-reload")

    def _check_loaded(self, unit: str) -> None:
        state = self.load_state(unit)
        if state == "masked":
            raise RuntimeControlError(f"The unit {unit} is masked.", fix=f"Unmask it: systemctl unmask {unit}.")
        if state != "loaded":
            raise RuntimeControlError(f"The unit {unit} does not exist on this host (LoadState {state or 'unknown'}).",
                                      fix="Install the runtime with its role (venom.models.vllm / venom.models.ollama), "
                                          "set 'unit', or use mode: process.")

    def stop(self, unit: str, confirm_timeout: float = 10.0) -> dict:
        """Stop ``unit`` and confirm that its control group is empty; raise naming what is left."""
        t0 = time.monotonic()
        cgroup = self.control_group(unit)
        before = cgroup_pids(cgroup)
        self._run("stop", "--", unit, what=f"stopping {unit}")
        deadline = time.monotonic() + confirm_timeout
        left = cgroup_pids(cgroup)
        while left and time.monotonic() < deadline:
            time.sleep(_POLL)
            left = cgroup_pids(cgroup)
        if left:
            raise RuntimeControlError(
                f"{unit} is stopped but its control group {cgroup} still holds processes: {', '.join(map(str, left))}.",
                fix=f"Check the unit's KillMode (it must be control-group) and TimeoutStopSec; inspect the pids, "
                    f"then 'systemctl kill --signal=SIGKILL {unit}'.", pids=left)
        return {"found": before, "cgroup": cgroup, "duration": round(time.monotonic() - t0, 3)}

    def journal_tail(self, unit: str, lines: int = 40) -> list[str]:
        rc, out, _err = self.runner([self.journalctl, "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit])
        return out.splitlines()[-lines:] if rc == 0 else []
