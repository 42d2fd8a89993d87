# SPDX-License-Identifier: GPL-3.0-or-later
"""What a run of the runtime controller leaves behind and reports, with the process table faked
(test_runtime.py's FakeProcesses): the journal's operation, the state file's restarts, the
resources of a running instance, the other instances it sees, and its refusals."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.runtimes import controller as R
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal

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
