# SPDX-License-Identifier: GPL-3.0-or-later
"""Two real vLLM instances (CPU, process mode) on one host through ansible-playbook: instance A is
switched to a broken model and rolled back while instance B answers every request (zero
failures); facts per instance; the manifest's active_instances; a served model cannot be removed.

Costs four vLLM starts (A, B, A's failed switch, A's rollback): run it under flock /work/heavy.lock.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import controller as R
from ansible_collections.venom.models.plugins.module_utils.runtimes import health as H
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from tests.integration.test_venom_runtime_vllm import install_local
from tests.lib.ansible_run import run_task
from tests.lib.ports import free_port
from tests.lib.vllm_env import VLLM_ENV, VLLM_HEALTH_TIMEOUT, VLLM_PORTS


@pytest.fixture(scope="module")
def two(vllm_venv, model_dirs, tmp_path_factory):  # pylint: disable=redefined-outer-name
    models_dir = str(tmp_path_factory.mktemp("instances-models"))
    paths = {name: install_local(models_dir, name, model_dirs[src])
             for name, src in (("minilm", "minilm"), ("minilm-b", "minilm_b"), ("broken", "broken"))}
    port_a = free_port(VLLM_PORTS, start=8021)
    port_b = free_port(VLLM_PORTS, start=port_a + 1)
    base = {"runtime": "vllm", "mode": "process", "models_dir": models_dir,
            "command": [os.path.join(vllm_venv, "bin", "python"), "-m", "vllm.entrypoints.openai.api_server"],
            "args": ["--enforce-eager"], "max_model_len": 256, "env": dict(VLLM_ENV),
            "health_timeout": VLLM_HEALTH_TIMEOUT, "stop_timeout": 60}
    sc = {"models_dir": models_dir, "paths": paths, "base": base, "ports": {"a": port_a, "b": port_b}}
    yield sc
    for name in ("a", "b"):
        rec = P.read_pid_file(os.path.join(models_dir, ".venom", "runtimes", f"{name}.pid"))
        if rec:
            P.stop_tree(rec, stop_timeout=10)


# Nothing is pinned on this 2-core test host ("nobind"). With vLLM's default binding ("auto") both
# instances bind to core 0, and B's worker, busy with the requests below, starved A's start. With a
# core each ("0" and "1"), A's new API server still stalled: torch's MKL start-up pins the process
# to every CPU in turn, and pinned to B's core it got no CPU time for minutes (docs/runtime.md).
CPU_BIND = "nobind"


def task(sc, name, **args):
    env = dict(sc["base"]["env"], VLLM_CPU_OMP_THREADS_BIND=CPU_BIND)
    res = run_task("venom.models.venom_runtime", dict(sc["base"], name=name, env=env, **args),
                   timeout=4 * VLLM_HEALTH_TIMEOUT)
    return res.task(), res


def embed(port, model):
    status, body = H.http("POST", f"{H.base_url('127.0.0.1', port)}/v1/embeddings",
                          {"model": model, "input": "venom"}, timeout=60)
    return status, body


def test_each_instance_starts_with_its_own_port_and_files(two):  # pylint: disable=redefined-outer-name
    for name, model in (("a", "minilm"), ("b", "minilm-b")):
        out, res = task(two, name, model=model, port=two["ports"][name])
        assert not out.get("failed") and out["changed"] and out["status"]["healthy"], res.stdout[-3000:]
        assert out["status"]["log_file"].endswith(f"/{name}.log") and out["status"]["pid_file"].endswith(f"/{name}.pid")
        assert embed(two["ports"][name], model)[0] == 200
    active = {e["name"]: e.get("active_instances") for e in Manifest(two["models_dir"]).models() if e.get("active")}
    assert active == {"minilm": ["a"], "minilm-b": ["b"]}
    out, _res = task(two, "c", model="minilm", port=two["ports"]["b"])
    assert out["failed"] and f"Port {two['ports']['b']} is the port of the runtime instance 'b'" in out["msg"]
    assert not os.path.exists(os.path.join(two["models_dir"], ".venom", "runtimes", "c.pid"))


def test_a_is_broken_and_rolled_back_while_b_answers_every_request(two):  # pylint: disable=redefined-outer-name
    b_pid = P.read_pid_file(os.path.join(two["models_dir"], ".venom", "runtimes", "b.pid"))["pid"]
    counts = {"ok": 0, "failed": []}
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                status, body = embed(two["ports"]["b"], "minilm-b")
            except Exception as exc:  # pylint: disable=broad-except  # any failure counts
                status, body = None, str(exc).encode()
            if status == 200:
                counts["ok"] += 1
            else:
                counts["failed"].append((status, body[:200]))
            time.sleep(0.2)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        out, res = task(two, "a", model="broken")
    finally:
        stop.set()
        thread.join(timeout=120)
    assert out["failed"] and out["rolled_back"] is True, res.stdout[-3000:]
    assert "'minilm' is serving again" in out["msg"]
    assert counts["failed"] == [] and counts["ok"] >= 10, counts
    assert embed(two["ports"]["a"], "minilm")[0] == 200
    assert P.read_pid_file(os.path.join(two["models_dir"], ".venom", "runtimes", "b.pid"))["pid"] == b_pid, \
        "B was never restarted"


def test_facts_and_the_manifest_per_instance(two):  # pylint: disable=redefined-outer-name
    facts = run_task("venom.models.venom_model_facts", {"models_dir": two["models_dir"], "gather_subset": ["runtimes"]}
                     ).task()["ansible_facts"]["venom_runtimes"]
    assert {"a", "b", "vllm", "ollama"} <= set(facts)
    for name, model in (("a", "minilm"), ("b", "minilm-b")):
        st = facts[name]
        assert st["runtime"] == "vllm" and st["mode"] == "process" and st["port"] == two["ports"][name], st
        assert st["healthy"] is True and st["model"] == model and st["uptime"] > 0, st
        assert st["rss_bytes"] > 100 * 2 ** 20 and len(st["pids"]) >= 2 and st["vram_bytes"] is None, st
    out = run_task("venom.models.venom_model", {"name": "minilm-b", "provider": "local", "state": "absent",
                                                "models_dir": two["models_dir"]}).task()
    assert out["failed"] and "force" in out["msg"]
    assert R.instance_states(two["models_dir"]).keys() >= {"a", "b"}


def test_stopping_a_leaves_b_serving(two):  # pylint: disable=redefined-outer-name
    out, _res = task(two, "a", state="stopped")
    assert out["changed"] and out["stop"]["port_free"] is True
    assert embed(two["ports"]["b"], "minilm-b")[0] == 200
    out, _res = task(two, "b", state="stopped")
    assert out["changed"] and not P.port_in_use("127.0.0.1", two["ports"]["b"])
    entries = {e["name"]: e for e in Manifest(two["models_dir"]).models()}
    assert entries["minilm"]["active_instances"] == ["a"], "a stopped instance keeps its model marked"
