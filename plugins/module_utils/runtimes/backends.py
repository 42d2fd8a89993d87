# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a runtime runs: a systemd unit (``SystemdBackend``) or a local process tree
(``ProcessBackend``). A backend starts, stops and reports on the server; it does not know which
engine (vLLM, Ollama) it runs: the engine gives it the command line and environment."""
from __future__ import annotations

import os
import time

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as proc
from ansible_collections.venom.models.plugins.module_utils.runtimes.systemd import cgroup_pids
from ansible_collections.venom.models.plugins.module_utils.store.procinfo import proc_start_ticks


def uptime_seconds(pid: int | None) -> float | None:
    """Seconds since ``pid`` started (None if it is gone): the boot clock minus its start ticks."""
    start = proc_start_ticks(pid) if pid else None
    if start is None:
        return None
    since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    return round(max(0.0, since_boot - start / os.sysconf("SC_CLK_TCK")), 1)


class SystemdBackend:
    """The runtime's systemd unit, driven with systemctl."""

    mode = "systemd"

    def __init__(self, spec, systemd):
        self.spec = spec
        self.systemd = systemd

    @property
    def log_where(self) -> str:
        return f"journalctl -u {self.spec.unit}"

    def status(self) -> dict:
        st = self.systemd.status(self.spec.unit)
        active = st.get("ActiveState", "")
        pid = int(st["MainPID"]) if st.get("MainPID", "0").isdigit() and int(st["MainPID"]) else None
        return {"running": active in ("active", "activating", "reloading"), "crashed": active == "failed",
                "pid": pid, "active_state": active, "sub_state": st.get("SubState"),
                "restarts": int(st["NRestarts"]) if st.get("NRestarts", "").isdigit() else None}

    def describe(self, engine) -> dict:
        """Where to find this runtime (status fields)."""
        out = {"unit": self.spec.unit}
        if engine.env_file:
            out["env_file"] = engine.env_file
        return out

    def state_fields(self, engine) -> dict:
        return {"unit": self.spec.unit, "env_file": engine.env_file, "pid_file": None, "log_file": None}

    def start(self, engine, act, launch: tuple | None = None) -> dict:  # pylint: disable=unused-argument
        engine.configure_unit(act)
        self.systemd.reset_failed(self.spec.unit)
        self.systemd.start(self.spec.unit)
        return {"pid": self.systemd.main_pid(self.spec.unit)}

    def launch(self):
        """What runs now, to start it again unchanged (systemd keeps that in the unit: nothing)."""
        return None

    def stop(self) -> dict | None:
        st = self.status()
        if not st["running"] and not st["crashed"]:
            return None
        res = self.systemd.stop(self.spec.unit, confirm_timeout=max(10.0, self.spec.stop_timeout))
        self.systemd.reset_failed(self.spec.unit)
        self._confirm_port_free()
        return res

    def _confirm_port_free(self) -> None:
        deadline = time.monotonic() + proc.PORT_GRACE
        while proc.port_in_use(self.spec.host, self.spec.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.port_in_use(self.spec.host, self.spec.port):
            holders = proc.port_holders(self.spec.port)
            raise RuntimeControlError(
                f"{self.spec.unit} is stopped, but port {self.spec.port} is still in use"
                + (f" by {proc.describe_pids(holders)}." if holders else "."),
                fix="Stop what holds the port, or point the unit and 'port' at another one.", pids=holders)

    def alive(self) -> bool:
        return self.status()["running"]

    def tree_pids(self) -> list:
        """The pids of the running server's whole tree (the unit's control group)."""
        return cgroup_pids(self.systemd.control_group(self.spec.unit))

    def log_tail(self) -> list:
        return self.systemd.journal_tail(self.spec.unit, 40)


class ProcessBackend:
    """A local process tree in its own session, with a PID file and a log file."""

    mode = "process"

    def __init__(self, spec, pid_file: str, log_file: str):
        self.spec = spec
        self.pid_file = pid_file
        self.log_file = log_file

    @property
    def log_where(self) -> str:
        return self.log_file

    def status(self) -> dict:
        rec = proc.read_pid_file(self.pid_file)
        if rec is None:
            return {"running": False, "crashed": False, "pid": None}
        alive = proc.record_alive(rec)
        return {"running": alive, "crashed": not alive, "pid": rec["pid"] if alive else None}

    def describe(self, engine) -> dict:  # pylint: disable=unused-argument
        return {"pid_file": self.pid_file, "log_file": self.log_file}

    def state_fields(self, engine) -> dict:  # pylint: disable=unused-argument
        return {"unit": None, "env_file": None, "pid_file": self.pid_file, "log_file": self.log_file}

    def start(self, engine, act, launch: tuple | None = None) -> dict:
        argv, env = launch if launch is not None else engine.process_argv(act)
        rec = proc.start_process(argv, pid_file=self.pid_file, log_file=self.log_file, env=env, cwd="/",
                                 name=self.spec.name, port=self.spec.port, host=self.spec.host,
                                 argv_for_record=list(argv), cpus=((act.process or {}).get("cpus") if act else None),
                                 startup_check=0)  # the health wait watches for an early exit
        return {"pid": rec["pid"]}

    def launch(self) -> tuple | None:
        """(argv, env) of the running server, read from /proc and kept only in memory, to start
        exactly that again on a rollback; None when nothing runs or it cannot be read."""
        rec = proc.read_pid_file(self.pid_file)
        if rec is None or not proc.record_alive(rec):
            return None
        argv, env = proc.proc_cmdline(rec["pid"]), proc.proc_environ(rec["pid"])
        if not argv or env is None:
            return None
        env.pop(proc.MARKER_ENV, None)
        return argv, env

    def stop(self) -> dict | None:
        res = proc.stop_pid_file(self.pid_file, stop_timeout=self.spec.stop_timeout, port=self.spec.port,
                                 host=self.spec.host)
        return res.as_dict() if res else None

    def alive(self) -> bool:
        return self.status()["running"]

    def tree_pids(self) -> list:
        """The pids of the running server's whole tree (session, descendants, marker); none
        without psutil (the facts' figures of the tree are null then)."""
        rec = proc.read_pid_file(self.pid_file)
        if rec is None or not proc.have_psutil() or not proc.record_alive(rec):
            return []
        return sorted(proc.find_tree(rec))

    def log_tail(self) -> list:
        lines = proc.tail_file(self.log_file, 400)
        starts = [i for i, line in enumerate(lines) if line.startswith(proc.LOG_START_MARK)]
        return lines[starts[-1]:][-40:] if starts else lines[-40:]
