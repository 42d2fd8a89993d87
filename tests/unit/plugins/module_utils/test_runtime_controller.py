# SPDX-License-Identifier: GPL-3.0-or-later
"""What a run of the runtime controller leaves behind and reports, with the process table faked
(test_runtime.py's FakeProcesses): the journal's operation, the state file's restarts, the
resources of a running instance, the other instances it sees, and its refusals."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import (
    LockTimeout, RuntimeControlError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.runtimes import backends
from ansible_collections.venom.models.plugins.module_utils.runtimes import controller as R
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.locks import runtime_lock

from tests.unit.plugins.module_utils.test_runtime import ctl, fake_processes


def _ops(models_dir):
    return Journal(models_dir).list()


@pytest.mark.parametrize("state,model,op_type", [("started", "a", "activate"), ("restarted", None, "restart")])
def test_each_run_is_a_journal_operation_of_its_kind(models_dir, monkeypatch, state, model, op_type):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    res = c.ensure(state, model) if state == "started" else c.ensure(state)
    if state == "started":   # the same model again: nothing to do, no operation
        assert res["changed"] is False and "operation" not in res
        return
    op = _ops(models_dir)[0]
    assert res["operation"] == {"id": op["id"], "type": op_type} and op["type"] == op_type
    assert op["status"] == "completed" and op["model"] == "a" and op["provider"] == "local"
    assert op["message"].startswith("vllm: restart") and " done in " in op["message"]
    assert isinstance(res["seconds"], float) and res["pid"] == 4242


def test_a_first_start_and_a_stop_are_operations_too(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    res = c.ensure("started", "a")
    assert res["operation"]["type"] == "activate"
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    res = c.ensure("stopped")
    op = _ops(models_dir)[0]
    assert res["operation"] == {"id": op["id"], "type": "stop"} and res["pid"] is None
    assert res["stop"] == {"found": [4242]} and "stopped_at" in c.read_state()


def test_a_failed_run_is_a_failed_operation_with_the_error(models_dir, monkeypatch):
    c, _fake = fake_processes(models_dir, monkeypatch, None, command=["bad"], api_key="s3cret")
    with pytest.raises(RuntimeControlError):
        c.ensure("started", "a")
    op = _ops(models_dir)[0]
    assert op["status"] == "failed" and "did not become healthy" in op["error"]
    assert "s3cret" not in json.dumps(op), "the API key is masked in the journal"


def test_a_crash_recovery_counts_a_restart_and_the_status_shows_it(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    assert c.read_state()["restarts"] == 0
    for expected in (1, 2):
        c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
        fake.status = lambda: {"running": False, "crashed": True, "pid": None}
        c.ensure("started", "a")
        assert c.read_state()["restarts"] == expected
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    c.ensure("restarted")
    assert c.read_state()["restarts"] == 2, "a restart asked for is not a crash"
    assert c.status()["restarts"] == 2


def test_the_state_file_records_where_and_how_the_instance_runs(models_dir, monkeypatch):
    c, _fake = fake_processes(models_dir, monkeypatch, None, command=["good"], gpu_share=True)
    c.ensure("started", "a")
    doc = c.read_state()
    assert doc["kind"] == "venom.models/runtime" and doc["name"] == "vllm" and doc["runtime"] == "vllm"
    assert doc["mode"] == "process" and doc["url"] == "http://127.0.0.1:8039" and doc["host"] == "127.0.0.1"
    assert doc["port"] == 8039 and doc["gpus"] is None and doc["gpu_share"] is True
    assert doc["pid_file"] == c.pid_file and doc["log_file"] == c.log_file and doc["unit"] is None
    assert doc["activation"]["model"] == "a" and doc["updated_at"]
    assert oct(os.stat(c.state_file).st_mode & 0o777) == "0o640"


def test_the_resources_of_a_running_instance(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"], cpus=[0])
    c.ensure("started", "a")
    fake.tree_pids = lambda: [4242, 4243]
    monkeypatch.setattr(R, "uptime_seconds", lambda pid: 12.5 if pid == 4242 else None)
    monkeypatch.setattr(R, "tree_rss_bytes", lambda pids: 1000 * len(pids))

    class Gpus:  # pylint: disable=too-few-public-methods
        def vram_of(self, pids):
            return 7 * len(pids)
    res = c.resources({"running": True, "pid": 4242}, Gpus())
    assert res == {"uptime": 12.5, "pids": [4242, 4243], "rss_bytes": 2000, "vram_bytes": 14, "gpus": None,
                   "cpus": [0]}
    assert c.resources({"running": True, "pid": 4242})["vram_bytes"] is None, "no NVML: no VRAM figure"
    idle = c.resources({"running": False, "pid": None}, Gpus())
    assert idle["pids"] == [] and idle["rss_bytes"] is None and idle["vram_bytes"] is None and idle["uptime"] is None


def test_unknown_states_are_refused_with_the_choices(models_dir):
    with pytest.raises(ValidationError, match="Unknown state 'running'") as err:
        ctl(models_dir).ensure("running")
    assert err.value.fix == "Use one of started, stopped, restarted."


def test_only_valid_state_files_of_instances_are_other_instances(models_dir, monkeypatch):
    c, _fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    d = c.state_dir
    with open(os.path.join(d, "notes.txt"), "w", encoding="utf-8") as fh:
        fh.write("{}")
    with open(os.path.join(d, "Bad Name.json"), "w", encoding="utf-8") as fh:
        json.dump({"kind": "venom.models/runtime"}, fh)
    with open(os.path.join(d, "other.json"), "w", encoding="utf-8") as fh:
        json.dump({"kind": "something-else"}, fh)
    with open(os.path.join(d, "list.json"), "w", encoding="utf-8") as fh:
        json.dump(["x"], fh)
    with open(os.path.join(d, "broken.json"), "w", encoding="utf-8") as fh:
        fh.write("{not json")
    assert list(R.instance_states(models_dir)) == ["vllm"]
    assert R.read_state_doc(c.paths, "list") == {}, "a state file that is not an object reads as none"


def test_the_public_result_leaves_out_private_keys():
    assert R.public_result({"changed": True, "_plan": object(), "model": "a"}) == {"changed": True, "model": "a"}


def test_an_instance_configured_is_one_with_a_state_file(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: False)
    c = ctl(models_dir, mode="auto")
    assert c.configured() is False
    c.resolve_mode()
    c.write_state(None)
    assert c.configured() is True


def _systemctl(load_state, calls):
    def runner(argv):
        calls.append(list(argv))
        if argv[1] == "show":
            props = {"LoadState": load_state, "ActiveState": "inactive", "MainPID": "0", "NRestarts": "0"}
            wanted = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
            return 0, "".join(f"{p}={props.get(p, '')}\n" for p in wanted), ""
        return 0, "", ""
    return runner


def test_instances_never_managed_are_listed_as_not_configured(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    calls = []
    out = R.runtimes_status(models_dir, runner=_systemctl("not-found", calls))
    assert sorted(out) == ["ollama", "vllm"] and calls, "systemctl asked through the runner given"
    assert out["vllm"] == {"name": "vllm", "runtime": "vllm", "mode": "process", "url": "http://127.0.0.1:8000",
                           "running": False, "healthy": False, "health": "not configured on this host", "pid": None,
                           "port": 8000, "model": None, "model_path": None, "served_model_name": None,
                           "crashed": False, "restarts": None, "uptime": None, "pids": [], "rss_bytes": None,
                           "vram_bytes": None, "gpus": None, "cpus": None, "unit": None, "configured": False}


def test_an_installed_unit_is_configured_without_a_state_file(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    c = R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir), runner=_systemctl("loaded", []))
    assert c.configured() is True
    st = R.runtimes_status(models_dir, runner=_systemctl("loaded", []))["vllm"]
    assert st["configured"] is True and st["mode"] == "systemd" and st["unit"] == "vllm.service"


def test_an_instance_without_an_activation_has_no_placement(models_dir):
    c = ctl(models_dir)
    expected = {"uptime": None, "pids": [], "rss_bytes": None, "vram_bytes": None, "gpus": None, "cpus": None}
    assert c.resources({"running": False, "pid": None}) == expected


# -- issue 20, round 3: start, stop and switch paths, and what a failure leaves serving --------------

def test_a_start_after_a_stop_is_a_start_operation_that_serves_the_same_model_again(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    c.ensure("stopped")
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    res = c.ensure("started")
    assert res["actions"] == ["start"] and res["changed"] is True and res["model"] == "a"
    op = _ops(models_dir)[0]
    assert res["operation"] == {"id": op["id"], "type": "start"} and op["message"].startswith("vllm: start done in ")
    assert "stopped_at" not in c.read_state() and fake.stops == 0 and len(fake.started) == 1
    assert res["pid"] == 4242 and res["previous_model"] == "a"


def test_a_stop_of_a_stopped_runtime_changes_nothing_and_records_nothing(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    res = c.ensure("stopped")
    assert res["changed"] is False and res["actions"] == [] and "operation" not in res
    assert fake.stops == 0 and _ops(models_dir) == [] and not os.path.exists(c.state_file)


def test_a_stop_of_a_crashed_runtime_cleans_it_up_and_keeps_its_activation(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    fake.status = lambda: {"running": False, "crashed": True, "pid": None}
    res = c.ensure("stopped")
    assert res["actions"] == ["stop"] and fake.stops == 1 and res["model"] == "a"
    doc = c.read_state()
    assert doc["activation"]["model"] == "a" and "stopped_at" in doc and doc["restarts"] == 0


def test_a_healthy_runtime_serving_the_model_asked_for_is_left_alone(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    for model in ("a", None):
        res = c.ensure("started", model)
        assert res["changed"] is False and res["actions"] == [] and fake.stops == 0 and fake.started == []


def test_a_restart_asked_for_stops_and_starts_the_same_model(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    res = c.ensure("restarted")
    assert res["actions"] == ["restart"] and fake.stops == 1 and len(fake.started) == 1
    assert res["model"] == "a" and c.read_state()["activation"]["model"] == "a"


def test_a_runtime_running_but_unhealthy_is_restarted(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    answers = [(False, "/v1/models lists []")]
    c.engine.health = lambda act, timeout=5.0: answers.pop(0) if answers else (True, "answers")
    res = c.ensure("started", "a")
    assert res["actions"] == ["restart-unhealthy"] and fake.stops == 1 and len(fake.started) == 1


def test_a_switch_that_fails_keeps_the_previous_model_serving_marked_and_recorded(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    healthy_models = ["/local/a"]
    c.engine.health = lambda act, timeout=5.0: (fake.running is not None and act is not None
                                                and act.model_path.endswith(tuple(healthy_models)), "checked")
    with pytest.raises(RuntimeControlError, match="rolled back") as err:
        c.ensure("started", "b")
    assert err.value.details["rolled_back"] is True
    assert fake.running is not None and "/local/a" in " ".join(fake.running[0])
    assert c.read_state()["activation"]["model"] == "a"
    assert R.Manifest(models_dir).served_by("vllm")["name"] == "a"
    op = _ops(models_dir)[0]
    assert op["type"] == "activate" and op["status"] == "failed" and op["model"] == "b"
    assert c.touched is True


def test_the_status_of_a_running_instance_names_its_model_health_and_files(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    st = c.status()
    assert st["running"] is True and st["healthy"] is True and st["health"] == "answers" and st["pid"] == 4242
    assert st["model"] == "a" and st["model_path"].endswith("/local/a") and st["served_model_name"] == "a"
    assert st["name"] == "vllm" and st["runtime"] == "vllm" and st["mode"] == "process" and st["port"] == 8039
    assert st["url"] == "http://127.0.0.1:8039" and st["restarts"] == 0
    assert st["pid_file"] == c.pid_file and st["log_file"] == c.log_file


def test_the_status_of_a_stopped_instance_asks_no_health_check(models_dir, monkeypatch):
    c, _fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    asked = []
    c.engine.health = lambda act, timeout=5.0: asked.append(act) or (True, "answers")
    st = c.status()
    assert st["running"] is False and st["healthy"] is False and st["health"] == "not running" and asked == []
    assert st["model"] is None and st["model_path"] is None and st["served_model_name"] is None


def test_systemd_mode_without_a_command_runner_is_refused(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    with pytest.raises(RuntimeControlError, match="no command runner was given") as err:
        ctl(models_dir, mode="systemd").resolve_mode()
    assert "runner=" in err.value.fix
    assert ctl(models_dir, mode="auto").resolve_mode() == "process", "auto without a runner: process mode"


def test_the_mode_is_resolved_once_per_controller(models_dir, monkeypatch):
    booted = []
    monkeypatch.setattr(R, "systemd_booted", lambda: booted.append(1) or False)
    c = ctl(models_dir, mode="auto")
    assert c.resolve_mode() == "process" and c.resolve_mode() == "process" and len(booted) == 1
    assert c.backend is c.backend, "one backend per mode"


def test_a_controller_from_state_takes_mode_host_port_unit_and_files_as_recorded(models_dir, tmp_path):
    c = ctl(models_dir, name="chat", runtime="vllm", port=8044, host="127.0.0.3", log_file=str(tmp_path / "c.log"))
    c.resolve_mode()
    c.write_state(None)
    again = R.RuntimeController.from_state(models_dir, "chat", api_key="k")
    s = again.spec
    assert (s.runtime, s.mode, s.host, s.port, s.log_file, s.api_key) == (
        "vllm", "process", "127.0.0.3", 8044, str(tmp_path / "c.log"), "k")
    assert s.unit is None or s.unit == "vllm@chat.service"
    assert again.log_file == str(tmp_path / "c.log") and again.url == "http://127.0.0.3:8044"


def test_the_state_directory_missing_means_no_other_instances(models_dir):
    assert R.instance_states(models_dir) == {}


def test_the_facts_of_a_running_instance_include_its_resources(models_dir, monkeypatch):
    c, _fake = fake_processes(models_dir, monkeypatch, None, name="embed", runtime="vllm", port=8005, command=["good"])
    c.ensure("started", "a")
    monkeypatch.setattr(R.ProcessBackend, "status", lambda self: {"running": True, "crashed": False, "pid": 4242})
    monkeypatch.setattr(R.ProcessBackend, "tree_pids", lambda self: [4242])
    monkeypatch.setattr(R.RuntimeController, "resources",
                        lambda self, st, gpu_host=None: {"pids": [4242], "rss_bytes": 1, "api": self.spec.api_key})
    monkeypatch.setattr(R.ENGINES["vllm"], "health", lambda self, act, timeout=5.0: (True, "ok"))
    st = R.runtimes_status(models_dir, api_key="k")["embed"]
    assert st["running"] is True and st["configured"] is True and st["pids"] == [4242] and st["rss_bytes"] == 1
    assert st["api"] == "k" and st["unit"] is None and st["healthy"] is True


def test_a_controller_from_a_systemd_record_reads_the_unit_and_its_env_file(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: False)
    c = ctl(models_dir, name="chat", runtime="vllm", port=8044)
    c.resolve_mode()
    c.write_state(None, {"unit": "vllm@chat.service", "env_file": "/etc/venom-models/vllm-chat.env", "mode": "systemd",
                         "host": None})
    s = R.RuntimeController.from_state(models_dir, "chat").spec
    assert s.unit == "vllm@chat.service" and s.env_file == "/etc/venom-models/vllm-chat.env" and s.mode == "systemd"
    assert s.host == "127.0.0.1", "no recorded host: the loopback address"
    c.write_state(None, {"env_file": "", "mode": None})
    s = R.RuntimeController.from_state(models_dir, "chat").spec
    assert s.env_file == "/etc/venom-models/vllm-chat.env" and s.mode == "auto", "nothing recorded: the defaults"


def test_a_run_holds_the_instances_lock_naming_itself_and_makes_a_private_state_directory(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    holders = []
    start = backends.proc.start_process

    def start_process(argv, env=None, **kw):
        holders.append(runtime_lock(models_dir, "vllm").holder())
        return start(argv, env=env, **kw)
    monkeypatch.setattr(backends.proc, "start_process", start_process)
    c.ensure("started", "a")
    assert holders[0]["purpose"] == "venom_runtime vllm started" and holders[0]["pid"] == os.getpid()
    assert fake.started and stat.S_IMODE(os.stat(c.state_dir).st_mode) == 0o750


def test_a_run_waits_for_another_runs_lock_only_lock_timeout_long(models_dir):
    import ansible_collections  # pylint: disable=import-outside-toplevel
    code = ("import sys, time\n"
            "from ansible_collections.venom.models.plugins.module_utils.store.locks import runtime_lock\n"
            "with runtime_lock(sys.argv[1], 'vllm', purpose='other run'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(30)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(list(ansible_collections.__path__)[0]))
    other = subprocess.Popen([sys.executable, "-c", code, models_dir], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout, match=r"Timed out after 0\.3s .* purpose other run"):
            ctl(models_dir, lock_timeout=0.3).ensure("started", "a")
    finally:
        other.kill()
        other.wait()
        other.stdout.close()


def test_systemctl_and_journalctl_are_run_from_the_paths_given_and_restarts_come_from_systemd(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    calls = []

    def runner(argv):
        calls.append(list(argv))
        if argv[1] == "show":
            props = {"LoadState": "loaded", "ActiveState": "failed", "MainPID": "0", "NRestarts": "3", "SubState": "x"}
            wanted = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
            return 0, "".join(f"{p}={props.get(p, '')}\n" for p in wanted), ""
        return 0, "a journal line\n", ""
    c = R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir, port=8039), runner=runner,
                            systemctl="/usr/bin/systemctl", journalctl="/usr/bin/journalctl")
    st = c.status()
    assert st["mode"] == "systemd" and st["restarts"] == 3 and st["crashed"] is True and st["running"] is False
    assert {argv[0] for argv in calls} == {"/usr/bin/systemctl"}
    c.backend.log_tail()
    assert calls[-1][0] == "/usr/bin/journalctl"


def test_a_controller_warns_nowhere_unless_told_and_starts_untouched(models_dir):
    c = ctl(models_dir)
    assert c.warn("anything") is None and c.touched is False and c.plan is None and c.mode is None
    said = []
    c2 = R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir, port=8039), warn=said.append)
    c2.warn("x")
    assert said == ["x"]


def test_a_controller_from_state_keeps_a_unit_and_env_file_that_are_not_the_defaults(models_dir):
    c = ctl(models_dir, name="chat", runtime="vllm", port=8044)
    c.resolve_mode()
    c.write_state(None, {"unit": "venom-chat.service", "env_file": "/srv/venom/chat.env"})
    spec = R.RuntimeController.from_state(models_dir, "chat").spec
    assert spec.unit == "venom-chat.service" and spec.env_file == "/srv/venom/chat.env"


def test_a_controller_from_state_takes_the_options_it_is_given(models_dir):
    said = []
    c = R.RuntimeController.from_state(models_dir, "vllm", check_mode=True, warn=said.append, nvml="fake-nvml")
    assert c.check_mode is True and c.nvml == "fake-nvml"
    c.warn("x")
    assert said == ["x"]


def test_a_stop_needs_neither_a_free_port_nor_a_placement_check(models_dir, monkeypatch):
    one, _fake = fake_processes(models_dir, monkeypatch, None, name="one", runtime="vllm", port=8001, command=["good"])
    one.ensure("started", "a")
    two, fake = fake_processes(models_dir, monkeypatch, (["good"], {}), name="two", runtime="vllm", port=8001,
                               command=["good"], gpus=[7])
    two.nvml = object()   # an NVML that would fail any placement check
    res = two.ensure("stopped")
    assert res["actions"] == ["stop"] and fake.stops == 1 and "preflight" not in res


def test_a_runs_seconds_are_given_to_the_millisecond(models_dir, monkeypatch):
    c, _fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    res = c.ensure("started", "a")
    assert res["seconds"] == round(res["seconds"], 3) and res["seconds"] >= 0
    assert f"done in {res['seconds']}s" in _ops(models_dir)[0]["message"]


def test_a_runs_seconds_are_the_time_it_took(models_dir, monkeypatch):
    c, _fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    res = c.ensure("started", "a")
    assert 0 <= res["seconds"] < 600, "seconds since the run began, not a clock reading"


def test_the_journal_masks_the_values_of_the_runtimes_env(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"], env={"HF_TOKEN": "hf_s3cret"})

    def start_process(argv, env=None, **_kw):   # the server logs its token, then never answers
        with open(c.log_file, "a", encoding="utf-8") as fh:
            fh.write(f"starting with token {env['HF_TOKEN']}\n")
        fake.started.append((list(argv), dict(env)))
        fake.running = (list(argv), dict(env))
        return {"pid": 4242}
    monkeypatch.setattr(backends.proc, "start_process", start_process)
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", "a")
    assert "hf_s3cret" in err.value.msg, "the error shows the log as it is"
    op = _ops(models_dir)[0]
    assert op["status"] == "failed" and "hf_s3cret" not in json.dumps(op) and "starting with token" in op["error"]


def test_check_mode_answers_for_the_state_asked(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    c.ensure("started", "a")
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    c.check_mode = True
    res = c.ensure("restarted")
    assert res["state"] == "restarted" and res["actions"] == ["restart"] and res["changed"] is True
    assert fake.stops == 0 and fake.started == []
    res = c.ensure("stopped")
    assert res["state"] == "stopped" and res["actions"] == ["stop"] and fake.stops == 0
