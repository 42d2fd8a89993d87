# SPDX-License-Identifier: GPL-3.0-or-later
"""What the two backends report and do, without a real unit or server: the systemd unit's status
as systemctl shows it, its stop confirmed by a free port, the process tree's log excerpt and the
uptime of a runtime's main process."""
from __future__ import annotations

import os
import socket
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from ansible_collections.venom.models.plugins.module_utils.runtimes import backends as B
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import Activation, RuntimeSpec
from tests.lib.ports import free_port


class FakeSystemd:
    """The Systemd object of one unit: ``props`` is what ``systemctl show`` says; calls are recorded."""

    def __init__(self, **props):
        self.props, self.calls = props, []

    def status(self, unit):  # systemctl show prints every property asked for, empty if it has none
        self.calls.append(("status", unit))
        return {p: self.props.get(p, "") for p in ("LoadState", "ActiveState", "SubState", "MainPID", "NRestarts")}

    def stop(self, unit, confirm_timeout=10.0):
        self.calls.append(("stop", unit, confirm_timeout))
        self.props["ActiveState"] = "inactive"
        return {"found": [42]}

    def reset_failed(self, unit):
        self.calls.append(("reset-failed", unit))

    def start(self, unit):
        self.calls.append(("start", unit))

    def main_pid(self, unit):
        return 4242

    def control_group(self, unit):
        return "/system.slice/" + unit

    def journal_tail(self, unit, lines=40):
        self.calls.append(("journal", unit, lines))
        return ["last"]


class FakeEngine:  # pylint: disable=too-few-public-methods
    def __init__(self, env_file=None):
        self.env_file, self.configured = env_file, []

    def configure_unit(self, act):
        self.configured.append(act)


def unit_backend(stop_timeout=30.0, **props):
    spec = RuntimeSpec(name="vllm", mode="systemd", port=free_port(), stop_timeout=stop_timeout)
    return B.SystemdBackend(spec, FakeSystemd(**props))


@pytest.mark.parametrize("props,expected", [
    ({"ActiveState": "active", "SubState": "running", "MainPID": "4242", "NRestarts": "3"},
     {"running": True, "crashed": False, "pid": 4242, "active_state": "active", "sub_state": "running", "restarts": 3}),
    ({"ActiveState": "activating", "MainPID": "0", "NRestarts": ""},
     {"running": True, "crashed": False, "pid": None, "active_state": "activating", "sub_state": "", "restarts": None}),
    ({"ActiveState": "reloading", "MainPID": "x"},
     {"running": True, "crashed": False, "pid": None, "active_state": "reloading", "sub_state": "", "restarts": None}),
    ({"ActiveState": "failed", "SubState": "failed", "NRestarts": "5"},
     {"running": False, "crashed": True, "pid": None, "active_state": "failed", "sub_state": "failed", "restarts": 5}),
    ({}, {"running": False, "crashed": False, "pid": None, "active_state": "", "sub_state": "", "restarts": None}),
])
def test_a_units_status_is_read_from_systemctl(props, expected):
    b = unit_backend(**props)
    assert b.status() == expected and b.systemd.calls == [("status", "vllm.service")]


def test_a_unit_is_described_by_its_name_and_env_file_and_logs_to_the_journal():
    b = unit_backend()
    assert b.describe(FakeEngine("/etc/venom-models/vllm.env")) == {"unit": "vllm.service",
                                                                    "env_file": "/etc/venom-models/vllm.env"}
    assert b.describe(FakeEngine()) == {"unit": "vllm.service"}
    assert b.state_fields(FakeEngine("/e")) == {"unit": "vllm.service", "env_file": "/e", "pid_file": None,
                                                "log_file": None}
    assert b.log_where == "journalctl -u vllm.service"
    assert b.log_tail() == ["last"] and ("journal", "vllm.service", 40) in b.systemd.calls
    assert b.launch() is None


def test_a_unit_start_writes_its_activation_first_and_clears_a_failed_state():
    b = unit_backend()
    engine = FakeEngine()
    assert b.start(engine, "act") == {"pid": 4242}
    assert engine.configured == ["act"]
    assert b.systemd.calls == [("reset-failed", "vllm.service"), ("start", "vllm.service")]


def test_a_stopped_unit_is_not_stopped_again():
    b = unit_backend(ActiveState="inactive")
    assert b.stop() is None
    assert [c[0] for c in b.systemd.calls] == ["status"]


@pytest.mark.parametrize("stop_timeout,confirm", [(3.0, 10.0), (45.0, 45.0)])
def test_a_unit_stop_waits_at_least_ten_seconds_for_its_control_group(stop_timeout, confirm):
    b = unit_backend(stop_timeout=stop_timeout, ActiveState="active")
    assert b.stop() == {"found": [42]}
    assert ("stop", "vllm.service", confirm) in b.systemd.calls and ("reset-failed", "vllm.service") in b.systemd.calls
    failed = unit_backend(ActiveState="failed")
    assert failed.stop() == {"found": [42]}, "a failed unit is stopped too (its leftovers)"


def test_a_unit_stop_that_leaves_the_port_taken_fails_naming_the_holder(monkeypatch):
    monkeypatch.setattr(P, "PORT_GRACE", 0.1)
    b = unit_backend(ActiveState="active")
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", b.spec.port))
        stranger.listen()
        with pytest.raises(RuntimeControlError, match=rf"vllm.service is stopped, but port {b.spec.port} is still in "
                                                      rf"use by {os.getpid()} ") as err:
            b.stop()
    assert err.value.details["pids"] == [os.getpid()]


def test_the_units_tree_is_its_control_group(monkeypatch):
    seen = []
    monkeypatch.setattr(B, "cgroup_pids", lambda group: seen.append(group) or [7, 8])
    assert unit_backend().tree_pids() == [7, 8] and seen == ["/system.slice/vllm.service"]


def test_uptime_is_the_boot_clock_minus_the_start_to_a_tenth_of_a_second(monkeypatch):
    ticks = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(B, "proc_start_ticks", lambda pid: 100 * ticks if pid == 7 else None)
    monkeypatch.setattr(B.time, "clock_gettime", lambda clock: 250.06 if clock == time.CLOCK_BOOTTIME else 0.0)
    assert B.uptime_seconds(7) == 150.1
    assert B.uptime_seconds(8) is None and B.uptime_seconds(None) is None and B.uptime_seconds(0) is None
    monkeypatch.setattr(B.time, "clock_gettime", lambda clock: 99.0)
    assert B.uptime_seconds(7) == 0.0, "never negative"


def _process_backend(tmp_path):
    spec = RuntimeSpec(name="vllm", mode="process", port=free_port())
    return B.ProcessBackend(spec, str(tmp_path / "vllm.pid"), str(tmp_path / "vllm.log"))


def test_a_process_tree_is_described_by_its_pid_and_log_files(tmp_path):
    b = _process_backend(tmp_path)
    assert b.status() == {"running": False, "crashed": False, "pid": None}
    assert b.describe(None) == {"pid_file": b.pid_file, "log_file": b.log_file} and b.log_where == b.log_file
    assert b.state_fields(None) == {"unit": None, "env_file": None, "pid_file": b.pid_file, "log_file": b.log_file}
    assert b.tree_pids() == [] and b.launch() is None and b.stop() is None


def test_the_log_excerpt_is_at_most_40_lines_of_the_last_start(tmp_path):
    b = _process_backend(tmp_path)
    lines = [f"{P.LOG_START_MARK}vllm at t1: old"] + [f"line {i}" for i in range(100)]
    (tmp_path / "vllm.log").write_text("\n".join(lines) + "\n")
    assert b.log_tail() == [f"line {i}" for i in range(60, 100)]
    (tmp_path / "vllm.log").write_text("\n".join(f"plain {i}" for i in range(50)) + "\n")
    assert b.log_tail() == [f"plain {i}" for i in range(10, 50)], "a log without a start mark: its end"
    many = [f"line {i}" for i in range(450)] + [f"{P.LOG_START_MARK}vllm at t2: new", "boom"]
    (tmp_path / "vllm.log").write_text("\n".join(many) + "\n")
    assert b.log_tail() == [f"{P.LOG_START_MARK}vllm at t2: new", "boom"]


def test_a_running_tree_is_relaunched_as_it_runs_without_its_marker_and_not_seen_without_psutil(tmp_path, monkeypatch):
    b = _process_backend(tmp_path)
    P.start_process(["sleep", "30"], pid_file=b.pid_file, log_file=b.log_file, env={"PATH": os.defpath, "K": "v"},
                    startup_check=0, log_max_bytes=None, scope=None)
    try:
        argv, env = b.launch()
        assert argv == ["sleep", "30"] and env == {"PATH": os.defpath, "K": "v"}
        assert b.status()["running"] is True and len(b.tree_pids()) == 1
        monkeypatch.setattr(P, "have_psutil", lambda: False)
        assert b.tree_pids() == []
    finally:
        P.stop_pid_file(b.pid_file, stop_timeout=2)


def test_a_recycled_or_unreadable_process_is_never_relaunched(tmp_path, monkeypatch):
    b = _process_backend(tmp_path)
    P.atomic_write_json(b.pid_file, {"kind": P.PID_FILE_KIND, "pid": os.getpid(), "pid_start": 1})
    assert b.launch() is None, "the pid is another process now (its start differs)"
    assert b.status() == {"running": False, "crashed": True, "pid": None}
    P.start_process(["sleep", "30"], pid_file=b.pid_file, log_file=b.log_file, env={"PATH": os.defpath},
                    startup_check=0, log_max_bytes=None, scope=None)
    try:
        monkeypatch.setattr(P, "proc_environ", lambda pid: None)
        assert b.launch() is None, "an environment that cannot be read: no relaunch"
        monkeypatch.setattr(P, "proc_environ", lambda pid: {"PATH": "/bin"})
        assert b.launch() == (["sleep", "30"], {"PATH": "/bin"}), "a process that dropped the marker"
    finally:
        monkeypatch.undo()
        P.stop_pid_file(b.pid_file, stop_timeout=2)


def test_a_unit_stop_gives_the_port_time_to_close(monkeypatch):
    looks = []

    def port_in_use(host, port):   # the socket closes at the third look
        looks.append((host, port))
        return len(looks) <= 2
    monkeypatch.setattr(P, "port_in_use", port_in_use)
    b = unit_backend(ActiveState="active")
    b.spec.host = "127.0.0.2"
    assert b.stop() == {"found": [42]}
    assert len(looks) == 4 and set(looks) == {("127.0.0.2", b.spec.port)}


def test_a_unit_stop_checks_the_port_on_the_units_own_address():
    b = unit_backend(ActiveState="active")
    b.spec.host = "127.0.0.2"
    with socket.socket() as other:   # 127.0.0.1:port is bound by someone else (not listening)
        other.bind(("127.0.0.1", b.spec.port))
        assert b.stop() == {"found": [42]}


def test_a_process_start_passes_the_instance_its_address_cpus_and_no_startup_wait(tmp_path, monkeypatch):
    b = _process_backend(tmp_path)
    b.spec.host = "127.0.0.2"
    calls = []
    monkeypatch.setattr(P, "start_process", lambda argv, **kw: calls.append((argv, kw)) or {"pid": 7})

    class Engine:  # pylint: disable=too-few-public-methods
        def process_argv(self, act):
            return ["srv", "--x"], {"K": "v"}
    act = Activation(process={"cpus": [0, 1]})
    assert b.start(Engine(), act) == {"pid": 7}
    assert calls[-1] == (["srv", "--x"], {"pid_file": b.pid_file, "log_file": b.log_file, "env": {"K": "v"},
                                          "cwd": "/", "name": "vllm", "port": b.spec.port, "host": "127.0.0.2",
                                          "argv_for_record": ["srv", "--x"], "cpus": [0, 1], "startup_check": 0})
    b.start(Engine(), None, launch=(["old"], {"K": "old"}))
    assert calls[-1][0] == ["old"] and calls[-1][1]["env"] == {"K": "old"} and calls[-1][1]["cpus"] is None


def test_a_process_stop_passes_the_instances_timeout_and_address(tmp_path, monkeypatch):
    b = _process_backend(tmp_path)
    b.spec.host, b.spec.stop_timeout = "127.0.0.2", 7.0
    calls = []
    monkeypatch.setattr(P, "stop_pid_file", lambda path, **kw: calls.append((path, kw)) or P.StopResult(found=[3]))
    assert b.stop()["found"] == [3]
    assert calls == [(b.pid_file, {"stop_timeout": 7.0, "port": b.spec.port, "host": "127.0.0.2"})]


def test_a_unit_stop_that_leaves_the_port_to_no_one_visible_still_fails_with_the_fix(monkeypatch):
    monkeypatch.setattr(P, "PORT_GRACE", 0.05)
    monkeypatch.setattr(P, "port_in_use", lambda host, port: True)
    monkeypatch.setattr(P, "port_holders", lambda port: [])
    b = unit_backend(ActiveState="active")
    with pytest.raises(RuntimeControlError) as err:
        b.stop()
    assert err.value.msg == f"vllm.service is stopped, but port {b.spec.port} is still in use."
    assert err.value.fix == "Stop what holds the port, or point the unit and 'port' at another one."
