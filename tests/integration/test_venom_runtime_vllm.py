# SPDX-License-Identifier: GPL-3.0-or-later
"""venom.models.venom_runtime through ansible-playbook against a real vLLM (CPU) in process mode.

One scenario on one models directory, in order (each vLLM start costs about a minute, so the
steps share the running server): check mode, activate, idempotence, switch to a second model, a
broken model rolled back, kill -9 recovered by ``started``, a complete stop. The systemd mode of
the same module is exercised in the fleet tier, on real systemd hosts.

The models are installed by ``venom_model`` (provider local) from plain model directories.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import health as H
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.store.locks import runtime_lock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from tests.lib.ansible_run import run_task
from tests.lib.ports import free_port
from tests.lib.vllm_env import VLLM_ENV, VLLM_HEALTH_TIMEOUT, VLLM_PORTS


MODULE = "venom.models.venom_runtime"


def install_local(models_dir: str, name: str, src: str) -> str:
    """Install a model directory with venom_model (provider local) for vLLM; its installed path."""
    out = run_task("venom.models.venom_model", {"name": name, "provider": "local", "source": src, "runtime": "vllm",
                                                "models_dir": models_dir}).task()
    assert not out.get("failed") and out["changed"], out
    return Manifest(models_dir).get(name, "local")["local_path"]


@pytest.fixture(scope="module")
def scenario(vllm_venv, model_dirs, tmp_path_factory):
    models_dir = str(tmp_path_factory.mktemp("runtime-models"))
    paths = {name: install_local(models_dir, name, model_dirs[src])
             for name, src in (("minilm", "minilm"), ("minilm-b", "minilm_b"), ("broken", "broken"))}
    Manifest(models_dir).upsert(new_entry("llama3.2:1b", "ollama", runtime="ollama", size_bytes=1))
    port = free_port(VLLM_PORTS, start=8020)
    base = {
        "name": "vllm", "mode": "process", "models_dir": models_dir, "port": port,
        "command": [os.path.join(vllm_venv, "bin", "python"), "-m", "vllm.entrypoints.openai.api_server"],
        "args": ["--enforce-eager"], "max_model_len": 256, "env": dict(VLLM_ENV),
        "health_timeout": VLLM_HEALTH_TIMEOUT, "stop_timeout": 60,
    }
    sc = {"models_dir": models_dir, "paths": paths, "port": port, "base": base,
          "url": H.base_url("127.0.0.1", port), "pid_file": os.path.join(models_dir, ".venom", "runtimes", "vllm.pid")}
    yield sc
    rec = None
    try:
        rec = P.read_pid_file(sc["pid_file"])
    except Exception:  # pylint: disable=broad-except
        pass
    if rec:
        P.stop_tree(rec, stop_timeout=10)


def task_res(sc, check=False, diff=False, **args):
    res = run_task(MODULE, dict(sc["base"], **args), check=check, diff=diff, timeout=3 * VLLM_HEALTH_TIMEOUT)
    return res.task(), res


def task(sc, check=False, diff=False, **args):
    return task_res(sc, check=check, diff=diff, **args)[0]


def active_in_manifest(sc):
    return sorted((e["name"], e.get("active_runtime")) for e in Manifest(sc["models_dir"]).models() if e.get("active"))


API_KEY = "venom-test-key-7f3a9c1e"


def served(sc):
    ok, reason, models = H.vllm_check(sc["url"], api_key=sc["base"].get("api_key"))
    assert ok, reason
    return [(m["id"], m["root"]) for m in models]


def embed(sc, model):
    key = sc["base"].get("api_key")
    status, body = H.http("POST", f"{sc['url']}/v1/embeddings", {"model": model, "input": "venom"}, timeout=120,
                          headers={"Authorization": f"Bearer {key}"} if key else None)
    assert status == 200, body
    return json.loads(body)["data"][0]["embedding"]


def engine_procs():
    return [p for p in P.all_procs() if not p.zombie and p.comm.startswith("VLLM::")]


# -- errors that need no running server ---------------------------------------------------------

def test_errors_name_the_problem_and_the_fix(scenario):
    sc = scenario
    out = task(sc, model="not-installed")
    assert out["failed"] and "is not installed" in out["msg"] and "venom_model" in out["msg"]
    out = task(sc, model="llama3.2:1b")
    assert out["failed"] and "cannot serve" in out["msg"]
    out = task(sc, model="minilm", state="stopped")
    assert out["failed"] and "cannot be combined with state: stopped" in out["msg"]
    out = task(sc, mode="systemd", model="minilm")
    assert out["failed"] and "systemd" in out["msg"]
    out = task(sc)
    assert out["failed"] and "no model to serve" in out["msg"]
    assert not os.path.exists(sc["pid_file"]) and not P.port_in_use("127.0.0.1", sc["port"])


def test_the_runtime_lock_serialises_runs(scenario):
    sc = scenario
    with runtime_lock(sc["models_dir"], "vllm", timeout=5, purpose="test holder"):
        t0 = time.monotonic()
        out = task(sc, model="minilm", lock_timeout=2)
        assert time.monotonic() - t0 >= 2
    assert out["failed"] and "Timed out" in out["msg"] and "test holder" in out["msg"]
    assert out["changed"] is False
    assert not os.path.exists(sc["pid_file"]), "nothing may start without the lock"


# -- the scenario -------------------------------------------------------------------------------

def test_check_mode_predicts_activation_and_changes_nothing(scenario):
    sc = scenario
    out = task(sc, check=True, diff=True, model="minilm")
    assert out["changed"] is True and out["mode"] == "process"
    assert "activate" in out["actions"] and "start" in out["actions"]
    assert out["diff"]["before"]["state"] == "stopped" and out["diff"]["after"] == {
        "state": "started", "model": "minilm", "healthy": None, "mode": "process",  # health is not predicted
        "gpus": None, "cpus": None}  # placed nowhere in particular: all the CPUs, no GPU
    assert not os.path.exists(sc["pid_file"]) and not P.port_in_use("127.0.0.1", sc["port"])
    assert active_in_manifest(sc) == []


def test_activate_serves_embeddings_and_marks_the_manifest(scenario):
    sc = scenario
    out, res = task_res(sc, diff=True, model="minilm", served_model_name="minilm")
    assert not out.get("failed"), res.stdout[-3000:]
    assert out["changed"] is True and out["mode"] == "process" and out["model"] == "minilm"
    assert out["status"]["healthy"] is True and out["status"]["pid"] == out["pid"]
    assert out["diff"]["after"]["model"] == "minilm"
    assert served(sc) == [("minilm", sc["paths"]["minilm"])]
    assert len(embed(sc, "minilm")) == 384
    assert active_in_manifest(sc) == [("minilm", "vllm")]
    rec = P.read_pid_file(sc["pid_file"])
    assert P.record_alive(rec) and rec["pid"] == out["pid"]
    assert out["operation"]["type"] == "activate"
    # the runtime outlived the ansible-playbook run that started it, in its own session
    assert P.read_proc(rec["pid"]).sid == rec["pid"]


def test_same_request_again_changes_nothing(scenario):
    sc = scenario
    pid = P.read_pid_file(sc["pid_file"])["pid"]
    for check in (True, False):
        out = task(sc, check=check, model="minilm", served_model_name="minilm")
        assert out["changed"] is False and out["actions"] == [], out
    out = task(sc)  # no model: keep what it serves
    assert out["changed"] is False and out["model"] == "minilm"
    out = task(sc, check=True, state="restarted")
    assert out["changed"] is True and out["actions"] == ["restart"], "restarted always restarts"
    out = task(sc, check=True, model="minilm", max_model_len=128)
    assert out["changed"] is True and "activate" in out["actions"], "a changed flag needs a restart"
    assert P.read_pid_file(sc["pid_file"])["pid"] == pid


def test_switch_to_a_second_model(scenario):
    sc = scenario
    out = task(sc, check=True, model="minilm-b")
    assert out["changed"] is True and "activate" in out["actions"]
    assert served(sc)[0][0] == "minilm", "check mode must not touch the server"
    out, res = task_res(sc, diff=True, model="minilm-b", api_key=API_KEY)
    sc["base"]["api_key"] = API_KEY  # from here on every task and check uses the key
    assert out["changed"] is True and out["previous_model"] == "minilm" and out["model"] == "minilm-b"
    assert out["diff"]["before"]["model"] == "minilm" and out["diff"]["after"]["model"] == "minilm-b"
    assert out["stop"]["killed"] == [] and out["stop"]["port_free"] is True
    assert served(sc) == [("minilm-b", sc["paths"]["minilm-b"])]
    assert len(embed(sc, "minilm-b")) == 384
    assert active_in_manifest(sc) == [("minilm-b", "vllm")]
    # the API key guards /v1/* and never shows: not in the output, the command line or our files
    assert H.http("GET", f"{sc['url']}/v1/models")[0] == 401
    assert API_KEY not in res.text
    rec = P.read_pid_file(sc["pid_file"])
    for pid in P.find_tree(rec):
        assert API_KEY not in " ".join(P.proc_cmdline(pid))
    state_dir = os.path.dirname(sc["pid_file"])
    for name in os.listdir(state_dir):
        if not name.endswith(".log"):
            with open(os.path.join(state_dir, name), encoding="utf-8") as fh:
                assert API_KEY not in fh.read(), name
    assert task(sc, check=True, model="minilm-b")["changed"] is False


def test_a_broken_model_is_rolled_back(scenario):
    sc = scenario
    out, res = task_res(sc, model="broken")
    assert out["failed"] is True and out["rolled_back"] is True and out["changed"] is True, res.stdout[-3000:]
    assert "rolled back" in out["msg"] and "'minilm-b' is serving again" in out["msg"]
    assert "Why 'broken' failed" in out["msg"] and "is not a valid JSON file" in out["msg"]
    assert served(sc) == [("minilm-b", sc["paths"]["minilm-b"])]
    assert len(embed(sc, "minilm-b")) == 384
    assert active_in_manifest(sc) == [("minilm-b", "vllm")]
    out = task(sc, check=True, model="minilm-b")
    assert out["changed"] is False, "after the rollback the runtime is exactly as before"


def test_started_recovers_after_kill_9(scenario):
    sc = scenario
    rec = P.read_pid_file(sc["pid_file"])
    engine = {p.pid for p in P.find_tree(rec).values() if p.comm.startswith("VLLM::")}
    assert engine
    os.kill(rec["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while P.record_alive(rec) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not P.record_alive(rec)
    assert engine <= set(P.find_tree(rec)), "vLLM's engine outlives its API server (the orphan problem)"
    out = task(sc, check=True)
    assert out["changed"] is True and out["recovered"] is True
    out = task(sc)
    assert out["changed"] is True and out["recovered"] is True and "recover" in out["actions"]
    assert set(out["stop"]["found"]) >= engine
    assert P.find_tree(rec) == {}, "the orphans of the killed server are gone"
    assert served(sc) == [("minilm-b", sc["paths"]["minilm-b"])]
    assert out["pid"] != rec["pid"]
    facts = run_task("venom.models.venom_model_facts", {
        "models_dir": sc["models_dir"], "gather_subset": ["runtimes"],
        "api_key": sc["base"].get("api_key")}).task()["ansible_facts"]["venom_runtimes"]
    vllm = facts["vllm"]
    assert vllm["configured"] is True and vllm["mode"] == "process" and vllm["running"] is True, vllm
    assert vllm["healthy"] is True and vllm["pid"] == out["pid"] and vllm["port"] == sc["port"], vllm
    assert vllm["model"] == "minilm-b" and vllm["model_path"] == sc["paths"]["minilm-b"]
    assert vllm["restarts"] == 1, "the recovery is counted"
    assert facts["ollama"]["configured"] is False


def test_stop_leaves_no_engine_or_worker(scenario):
    sc = scenario
    rec = P.read_pid_file(sc["pid_file"])
    tree = P.find_tree(rec)
    assert any(p.comm.startswith("VLLM::EngineCor") for p in tree.values())
    out = task(sc, check=True, state="stopped")
    assert out["changed"] is True and P.record_alive(rec)
    out = task(sc, diff=True, state="stopped")
    assert out["changed"] is True and out["stop"]["port_free"] is True
    assert out["diff"]["after"]["state"] == "stopped"
    assert sorted(out["stop"]["found"]) == sorted(tree)
    assert P.find_tree(rec) == {}
    assert [p for p in engine_procs() if p.pid in tree] == []
    assert not P.port_in_use("127.0.0.1", sc["port"]) and not os.path.exists(sc["pid_file"])
    out = task(sc, state="stopped")
    assert out["changed"] is False
