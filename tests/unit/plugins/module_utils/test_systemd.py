# SPDX-License-Identifier: GPL-3.0-or-later
"""systemctl command construction and output parsing, and the cgroup emptiness check.

The real systemd path (a unit started, stopped and its cgroup checked on a host with systemd as
PID 1) is tested in the fleet tier; here the runner records the argv lists it is given."""
from __future__ import annotations

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import systemd as S
from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from tests.unit.plugins.module_utils.fake_clock import FakeClock


class Runner:
    """Answers systemctl calls from a table: {(verb, unit): (rc, out, err)}; records every argv."""

    def __init__(self, props=None, answers=None):
        self.calls = []
        self.props = props or {}
        self.answers = answers or {}

    def __call__(self, argv):
        self.calls.append(list(argv))
        if argv[1] == "show":
            wanted = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
            return 0, "".join(f"{p}={self.props.get(p, '')}\n" for p in wanted), ""
        return self.answers.get(argv[1], (0, "", ""))


def test_systemd_booted_is_sd_booted(tmp_path):
    assert S.systemd_booted(str(tmp_path)) is True
    assert S.systemd_booted(str(tmp_path / "absent")) is False


def test_show_parses_properties_and_passes_argv_without_a_shell():
    run = Runner(props={"LoadState": "loaded", "MainPID": "4242", "ControlGroup": "/system.slice/vllm.service"})
    sd = S.Systemd(run, systemctl="/bin/systemctl")
    assert sd.unit_exists("vllm.service")
    assert sd.main_pid("vllm.service") == 4242
    assert sd.control_group("vllm.service") == "/system.slice/vllm.service"
    assert run.calls[0] == ["/bin/systemctl", "show", "--no-pager", "-p", "LoadState", "--", "vllm.service"]


@pytest.mark.parametrize("state,exists", [("loaded", True), ("not-found", False), ("masked", True), ("", False)])
def test_unit_exists(state, exists):
    assert S.Systemd(Runner(props={"LoadState": state})).unit_exists("x.service") is exists


def test_main_pid_zero_means_none():
    assert S.Systemd(Runner(props={"MainPID": "0"})).main_pid("x.service") is None


def test_start_refuses_missing_and_masked_units_with_a_fix():
    with pytest.raises(RuntimeControlError, match="does not exist on this host") as err:
        S.Systemd(Runner(props={"LoadState": "not-found"})).start("vllm.service")
    assert "mode: process" in err.value.fix
    with pytest.raises(RuntimeControlError, match="is masked"):
        S.Systemd(Runner(props={"LoadState": "masked"})).restart("vllm.service")


def test_failed_command_names_rc_and_stderr():
    run = Runner(props={"LoadState": "loaded"}, answers={"start": (1, "", "Job for vllm.service failed.\n")})
    with pytest.raises(RuntimeControlError, match=r"'systemctl start -- vllm.service' failed \(rc 1\).*Job for vllm"):
        S.Systemd(run).start("vllm.service")


def test_is_active_reads_stdout_even_on_nonzero_rc():
    run = Runner(answers={"is-active": (3, "inactive\n", "")})
    assert S.Systemd(run).is_active("vllm.service") == "inactive"


def _fake_cgroup(root, rel, pids_by_sub):
    base = root.joinpath(*rel.strip("/").split("/"))
    for sub, pids in pids_by_sub.items():
        d = base / sub if sub else base
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))


def test_cgroup_pids_include_sub_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path))
    _fake_cgroup(tmp_path, "/system.slice/vllm.service", {"": [10, 11], "worker": [12]})
    assert S.cgroup_pids("/system.slice/vllm.service") == [10, 11, 12]
    assert S.cgroup_pids("/system.slice/absent.service") == []
    assert S.cgroup_pids(None) == []


def test_stop_confirms_the_cgroup_is_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path))
    cg = "/system.slice/vllm.service"
    _fake_cgroup(tmp_path, cg, {"": [10, 11]})
    procs = tmp_path / "system.slice" / "vllm.service" / "cgroup.procs"

    class StopEmpties(Runner):
        def __call__(self, argv):
            if argv[1] == "stop":
                procs.write_text("")
            return super().__call__(argv)

    res = S.Systemd(StopEmpties(props={"ControlGroup": cg})).stop("vllm.service")
    assert res["found"] == [10, 11] and res["cgroup"] == cg


def test_stop_that_leaves_processes_in_the_cgroup_fails_naming_them(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path))
    cg = "/system.slice/vllm.service"
    _fake_cgroup(tmp_path, cg, {"": [10], "engine": [11]})
    with pytest.raises(RuntimeControlError, match="still holds processes: 10, 11") as err:
        S.Systemd(Runner(props={"ControlGroup": cg})).stop("vllm.service", confirm_timeout=0.2)
    assert err.value.details["pids"] == [10, 11]
    assert "KillMode" in err.value.fix


def test_journal_tail_uses_journalctl():
    class J(Runner):
        def __call__(self, argv):
            self.calls.append(argv)
            return 0, "a\nb\nc\n", ""

    run = J()
    assert S.Systemd(run, journalctl="/bin/journalctl").journal_tail("vllm.service", 2) == ["b", "c"]
    assert run.calls[0] == ["/bin/journalctl", "--no-pager", "-o", "cat", "-n", "2", "-u", "vllm.service"]


def test_restart_and_daemon_reload_run_systemctl_with_the_unit_after_double_dash():
    run = Runner(props={"LoadState": "loaded"})
    S.Systemd(run).restart("vllm.service")
    assert run.calls[-1] == ["systemctl", "restart", "--", "vllm.service"]
    assert run.calls[0][-1] == "vllm.service", "the unit's LoadState is checked first"
    S.Systemd(run).daemon_reload()
    assert run.calls[-1] == ["systemctl", "daemon-reload"]
    expected = r"'systemctl restart -- vllm.service' failed \(rc 1\): restarting vllm.service: Job failed"
    with pytest.raises(RuntimeControlError, match=expected):
        failing = Runner(props={"LoadState": "loaded"}, answers={"restart": (1, "", "Job failed")})
        S.Systemd(failing).restart("vllm.service")
    with pytest.raises(RuntimeControlError, match="daemon-reload' failed"):
        S.Systemd(Runner(answers={"daemon-reload": (1, "", "no bus")})).daemon_reload()


def test_is_active_asks_for_the_unit_and_says_unknown_when_systemctl_says_nothing():
    run = Runner(answers={"is-active": (4, "", "")})
    assert S.Systemd(run).is_active("vllm.service") == "unknown"
    assert run.calls == [["systemctl", "is-active", "--", "vllm.service"]]


def test_a_control_group_is_found_under_the_unified_or_the_v1_systemd_hierarchy(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path))
    _fake_cgroup(tmp_path / "unified", "/system.slice/a.service", {"": [1]})
    _fake_cgroup(tmp_path / "systemd", "/system.slice/b.service", {"": [2]})
    _fake_cgroup(tmp_path, "/Xwayland.slice/c.scope", {"": [3]})
    assert S.cgroup_dir("/system.slice/a.service") == str(tmp_path / "unified" / "system.slice" / "a.service")
    assert S.cgroup_dir("/system.slice/b.service") == str(tmp_path / "systemd" / "system.slice" / "b.service")
    assert S.cgroup_dir("/Xwayland.slice/c.scope") == str(tmp_path / "Xwayland.slice" / "c.scope")
    assert S.cgroup_dir("/") is None and S.cgroup_dir("/system.slice/none.service") is None


def test_a_control_group_path_that_climbs_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path / "cgroup"))
    _fake_cgroup(tmp_path / "cgroup", "/system.slice/a.service", {"": [1]})
    _fake_cgroup(tmp_path, "/outside", {"": [2]})
    assert S.cgroup_dir("/system.slice/../../outside") is None
    assert S.cgroup_pids("/system.slice/../../outside") == []


def test_a_groups_pids_are_its_own_not_its_siblings(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path))
    _fake_cgroup(tmp_path, "/system.slice/a.service", {"": [1], "sub": [2]})
    _fake_cgroup(tmp_path, "/system.slice/b.service", {"": [3]})
    assert S.cgroup_pids("/system.slice/a.service") == [1, 2]


def test_a_directory_without_cgroup_procs_is_not_the_group(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path))
    (tmp_path / "system.slice" / "a.service").mkdir(parents=True)   # a hybrid host: v1 controller dir
    _fake_cgroup(tmp_path / "unified", "/system.slice/a.service", {"": [7]})
    assert S.cgroup_dir("/system.slice/a.service") == str(tmp_path / "unified" / "system.slice" / "a.service")
    assert S.cgroup_pids("/system.slice/a.service") == [7]


def test_the_journal_tail_is_40_lines_by_default_and_empty_when_journalctl_fails():
    class J(Runner):
        rc = 0

        def __call__(self, argv):
            self.calls.append(argv)
            return self.rc, "".join(f"line {i}\n" for i in range(50)), ""

    run = J()
    assert S.Systemd(run).journal_tail("vllm.service") == [f"line {i}" for i in range(10, 50)]
    assert run.calls[0][5] == "40"
    run.rc = 1
    assert S.Systemd(run).journal_tail("vllm.service") == []


def test_a_units_status_asks_systemctl_for_every_property_it_reports():
    run = Runner(props={"ActiveState": "active", "MainPID": "42", "NRestarts": "2"})
    st = S.Systemd(run).status("vllm.service")
    assert run.calls == [["systemctl", "show", "--no-pager", "-p", "LoadState", "-p", "ActiveState", "-p", "SubState",
                          "-p", "MainPID", "-p", "ControlGroup", "-p", "ExecMainStartTimestampMonotonic",
                          "-p", "NRestarts", "-p", "Result", "--", "vllm.service"]]
    assert st["ActiveState"] == "active" and st["MainPID"] == "42" and st["NRestarts"] == "2"


def test_a_start_checks_that_same_unit_and_names_an_unknown_state():
    run = Runner(props={"LoadState": "loaded"}, answers={"start": (1, "", "Job failed")})
    expected = r"'systemctl start -- vllm.service' failed \(rc 1\): starting vllm.service: Job failed"
    with pytest.raises(RuntimeControlError, match=expected):
        S.Systemd(run).start("vllm.service")
    assert run.calls[0] == ["systemctl", "show", "--no-pager", "-p", "LoadState", "--", "vllm.service"]

    class Silent(Runner):
        def __call__(self, argv):
            self.calls.append(list(argv))
            return 0, "", ""
    with pytest.raises(RuntimeControlError, match=r"does not exist on this host \(LoadState unknown\)"):
        S.Systemd(Silent()).start("vllm.service")
    assert S.Systemd(Silent()).main_pid("vllm.service") is None, "no MainPID shown: none"
    with pytest.raises(RuntimeControlError) as err:
        S.Systemd(Runner(props={"LoadState": "masked"})).start("vllm.service")
    assert err.value.fix == "Unmask it: systemctl unmask vllm.service."


def test_main_pid_asks_for_the_unit_and_reads_any_positive_pid():
    run = Runner(props={"MainPID": "1"})
    assert S.Systemd(run).main_pid("vllm.service") == 1
    assert run.calls == [["systemctl", "show", "--no-pager", "-p", "MainPID", "--", "vllm.service"]]


def test_reset_failed_names_the_unit_and_ignores_a_unit_that_was_not_failed():
    run = Runner(answers={"reset-failed": (1, "", "Unit vllm.service not loaded.")})
    S.Systemd(run).reset_failed("vllm.service")
    assert run.calls == [["systemctl", "reset-failed", "--", "vllm.service"]]


def test_a_unit_stop_waits_for_the_control_group_to_empty_and_reports_it(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(S, "time", clock)
    looks = []
    monkeypatch.setattr(S, "cgroup_pids", lambda group: looks.append(group) or ([10, 11] if len(looks) <= 3 else []))
    run = Runner(props={"ControlGroup": "/system.slice/vllm.service"})
    res = S.Systemd(run).stop("vllm.service", confirm_timeout=5)
    assert res == {"found": [10, 11], "cgroup": "/system.slice/vllm.service", "duration": round(4 * 0.12345, 3)}
    assert clock.sleeps == [0.1, 0.1] and set(looks) == {"/system.slice/vllm.service"}
    assert run.calls == [["systemctl", "show", "--no-pager", "-p", "ControlGroup", "--", "vllm.service"],
                         ["systemctl", "stop", "--", "vllm.service"]]


def test_a_failed_stop_and_a_failed_command_without_a_purpose_are_worded_exactly():
    with pytest.raises(RuntimeControlError) as err:
        S.Systemd(Runner(answers={"stop": (1, "", "Access denied")})).stop("vllm.service")
    assert err.value.msg == "'systemctl stop -- vllm.service' failed (rc 1): stopping vllm.service: Access denied"
    assert err.value.fix == "Check the unit with 'systemctl status' and 'journalctl -u <unit>'."
    with pytest.raises(RuntimeControlError) as err:
        S.Systemd(Runner(answers={"daemon-reload": (1, "", "no bus\n")})).daemon_reload()
    assert err.value.msg == "'systemctl daemon-reload' failed (rc 1): no bus"


def test_show_keeps_an_equals_sign_inside_a_value_and_the_journal_is_journalctls():
    class Env(Runner):
        def __call__(self, argv):
            self.calls.append(list(argv))
            return 0, "Environment=A=1 B=2\nControlGroup=/system.slice/vllm.service\n", ""
    run = Env()
    assert S.Systemd(run).show("vllm.service", "Environment")["Environment"] == "A=1 B=2"
    assert S.Systemd(run).control_group("vllm.service") == "/system.slice/vllm.service"
    assert run.calls[-1][-1] == "vllm.service"
    S.Systemd(run).journal_tail("vllm.service")
    assert run.calls[-1][0] == "journalctl"


def test_an_unreadable_procs_file_does_not_hide_the_sub_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CGROUP_ROOT", str(tmp_path))
    _fake_cgroup(tmp_path, "/system.slice/a.service", {"": [], "sub": [5], "zsub": [6]})
    (tmp_path / "system.slice" / "a.service" / "cgroup.procs").write_text("garbage\n")
    assert S.cgroup_pids("/system.slice/a.service") == [5, 6]


def test_systemd_booted_looks_where_sd_booted_looks(monkeypatch):
    asked = []
    monkeypatch.setattr(S.os.path, "isdir", lambda path: asked.append(path) or True)
    assert S.systemd_booted() is True and asked == ["/run/systemd/system"]
