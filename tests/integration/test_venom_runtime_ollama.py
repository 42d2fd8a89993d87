# SPDX-License-Identifier: GPL-3.0-or-later
"""venom.models.venom_runtime with Ollama, through ansible-playbook, in process mode.

No Ollama binary can be had here: the server is the Ollama test double
(tests/doubles/ollama/ollama_test_double.py), started by venom_runtime itself with the real
binary's command line (``serve``, ``OLLAMA_HOST``, ``OLLAMA_MODELS``). Models are installed
into its store by venom_model (provider ollama) from the real OCI registry of the test harness.
One scenario, in order: start, idempotence, activate with preload, switch (the previous model
is unloaded), a failing activation that keeps the previous model, restart and kill -9 (the
active model is loaded again), stop.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import pytest
import requests

from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from tests.lib.ansible_run import run_task
from tests.lib.ports import free_port

try:
    from tests.lib import ollama_env
except ImportError as exc:  # the test double lands with the Ollama provider (issue 4)
    pytest.fail(f"tests/lib/ollama_env.py (the Ollama test double's harness) is missing: {exc}", pytrace=False)


PORTS = (11470, 11499)  # this module's Ollama ports


@pytest.fixture(scope="module")
def sc(tmp_path_factory, oci_registry, ollama_models):  # pylint: disable=redefined-outer-name
    base_dir = tmp_path_factory.mktemp("ollama-runtime")
    store = str(base_dir / "ollama-store")
    os.makedirs(store)
    port = free_port(range(*PORTS))
    models_dir = str(base_dir / "venom")
    scenario = {
        "models_dir": models_dir, "store": store, "url": f"http://127.0.0.1:{port}", "models": ollama_models,
        "pid_file": os.path.join(models_dir, ".venom", "runtimes", "ollama.pid"), "registry": oci_registry,
        "base": {"name": "ollama", "mode": "process", "models_dir": models_dir, "port": port,
                 "command": [sys.executable, ollama_env.OLLAMA_DOUBLE, "serve"],
                 "env": {"OLLAMA_MODELS": store}, "health_timeout": 60, "stop_timeout": 10},
    }
    yield scenario
    try:
        rec = P.read_pid_file(scenario["pid_file"])
    except Exception:  # pylint: disable=broad-except
        rec = None
    if rec:
        P.stop_tree(rec, stop_timeout=5)


def task(sc, check=False, diff=False, **args):  # pylint: disable=redefined-outer-name
    return run_task("venom.models.venom_runtime", dict(sc["base"], **args), check=check, diff=diff).task()


def install(sc, key):  # pylint: disable=redefined-outer-name
    m = sc["models"][key]
    out = run_task("venom.models.venom_model", {
        "name": m.name, "provider": "ollama", "endpoint": sc["url"], "insecure": True,
        "models_path": sc["store"], "models_dir": sc["models_dir"]}).task()
    assert not out.get("failed"), out
    return out["name"]


def facts(sc, subsets=("runtimes",), **args):  # pylint: disable=redefined-outer-name
    out = run_task("venom.models.venom_model_facts",
                   dict({"models_dir": sc["models_dir"], "gather_subset": list(subsets)}, **args)).task()
    assert not out.get("failed"), out
    return out["ansible_facts"]


def ollama_facts(sc):  # pylint: disable=redefined-outer-name
    rts = facts(sc)["venom_runtimes"]
    assert rts["vllm"]["configured"] is False and rts["vllm"]["running"] is False
    return rts["ollama"]


def loaded(sc):  # pylint: disable=redefined-outer-name
    return sorted(m["name"] for m in requests.get(sc["url"] + "/api/ps", timeout=10).json()["models"])


def active(sc):  # pylint: disable=redefined-outer-name
    return sorted((e["name"], e.get("active_runtime")) for e in Manifest(sc["models_dir"]).models() if e.get("active"))


def test_start_and_idempotence(sc):  # pylint: disable=redefined-outer-name
    out = task(sc, check=True)
    assert out["changed"] is True and out["actions"] == ["start"]
    assert not os.path.exists(sc["pid_file"])
    assert ollama_facts(sc)["configured"] is False
    out = task(sc)
    assert out["changed"] is True and out["mode"] == "process" and out["status"]["healthy"] is True
    assert requests.get(sc["url"] + "/api/version", timeout=10).json()["version"]
    rt = ollama_facts(sc)
    assert rt["configured"] is True and rt["mode"] == "process" and rt["running"] is True and rt["healthy"] is True
    assert rt["pid"] == P.read_pid_file(sc["pid_file"])["pid"] and rt["url"] == sc["url"]
    assert rt["model"] is None and rt["restarts"] == 0
    for check in (True, False):
        assert task(sc, check=check)["changed"] is False


def test_activate_preloads_and_switch_unloads_the_previous(sc):  # pylint: disable=redefined-outer-name
    chat, nosys = install(sc, "chat"), install(sc, "nosys")
    sc["names"] = {"chat": chat, "nosys": nosys}
    assert loaded(sc) == []
    out = task(sc, check=True, diff=True, model=chat)
    assert out["changed"] is True and out["actions"] == ["activate"] and loaded(sc) == []
    out = task(sc, diff=True, model=chat)
    assert out["changed"] is True and out["model"] == chat and out["diff"]["after"]["model"] == chat
    assert loaded(sc) == [chat] and active(sc) == [(chat, "ollama")]
    assert task(sc, model=chat)["changed"] is False
    rt = ollama_facts(sc)
    assert rt["model"] == chat and rt["healthy"] is True, rt

    av = facts(sc, ["available"], provider="ollama", endpoint=sc["url"])["venom_available"]
    assert av["provider"] == "ollama" and av["endpoint"] == sc["url"]
    assert {m["name"] for m in av["models"]} == {chat, nosys}
    recorded = {e["name"]: e["revision"].removeprefix("sha256:") for e in Manifest(sc["models_dir"]).models()}
    for m in av["models"]:
        assert m["installed"] is True and m["available"] is True, m
        assert m["revision"].removeprefix("sha256:") == recorded[m["name"]] == m["installed_revision"].removeprefix("sha256:")
    assert all(m["size_bytes"] > 0 for m in av["models"])
    only = facts(sc, ["available"], provider="ollama", endpoint=sc["url"], search=nosys.rsplit("/", 1)[-1].split(":")[0].upper())
    assert [m["name"] for m in only["venom_available"]["models"]] == [nosys]
    asked = facts(sc, ["available"], provider="ollama", endpoint=sc["url"], names=[chat, "nowhere/none:1b"])
    have, missing = asked["venom_available"]["models"]
    assert have["name"] == chat and have["available"] is True
    assert missing == dict(missing, name="nowhere/none:1b", available=False, installed=False), missing

    out = task(sc, model=nosys, keep_alive="10m")
    assert out["changed"] is True and out["previous_model"] == chat
    assert loaded(sc) == [nosys], "the previous model is unloaded once the new one is loaded"
    assert active(sc) == [(nosys, "ollama")]
    expires = requests.get(sc["url"] + "/api/ps", timeout=10).json()["models"][0]["expires_at"]
    assert expires.startswith(time.strftime("%Y")), f"keep_alive 10m should expire soon, not {expires}"


def test_a_failing_activation_keeps_the_previous_model(sc):  # pylint: disable=redefined-outer-name
    v2 = install(sc, "chat_v2")
    # the model is in the manifest but gone from the server's store (deleted behind venom's back)
    assert requests.delete(sc["url"] + "/api/delete", json={"model": v2}, timeout=10).status_code == 200
    out = task(sc, model=v2)
    assert out["failed"] is True and out["rolled_back"] is True, out
    assert "Rolled back" in out["msg"] and sc["names"]["nosys"] in out["msg"] and "not found" in out["msg"]
    assert loaded(sc) == [sc["names"]["nosys"]] and active(sc) == [(sc["names"]["nosys"], "ollama")]


def test_restart_and_kill_9_load_the_active_model_again(sc):  # pylint: disable=redefined-outer-name
    nosys = sc["names"]["nosys"]
    pid = P.read_pid_file(sc["pid_file"])["pid"]
    out = task(sc, state="restarted")
    assert out["changed"] is True and out["pid"] != pid
    assert loaded(sc) == [nosys]

    rec = P.read_pid_file(sc["pid_file"])
    os.kill(rec["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while P.record_alive(rec) and time.monotonic() < deadline:
        time.sleep(0.05)
    rt = ollama_facts(sc)
    assert rt["running"] is False and rt["crashed"] is True and rt["healthy"] is False and rt["restarts"] == 0
    out = task(sc, check=True)
    assert out["changed"] is True and out["recovered"] is True
    out = task(sc)
    assert out["changed"] is True and out["recovered"] is True
    assert loaded(sc) == [nosys] and active(sc) == [(nosys, "ollama")]
    rt = ollama_facts(sc)
    assert rt["running"] is True and rt["healthy"] is True and rt["restarts"] == 1 and rt["model"] == nosys


def test_cpus_confine_the_server_and_a_bad_cpu_leaves_it_alone(sc):  # pylint: disable=redefined-outer-name
    nosys, last = sc["names"]["nosys"], max(os.sched_getaffinity(0))
    out = task(sc, check=True, diff=True, cpus=[last])
    assert out["changed"] is True and out["actions"] == ["restart"] and out["preflight"] == [f"CPUs {last} of " + out["preflight"][0].split(" of ")[1]]
    assert (out["diff"]["before"]["cpus"], out["diff"]["after"]["cpus"]) == (None, [last]), out["diff"]
    out = task(sc, cpus=[last])
    assert out["changed"] is True and out["status"]["healthy"] is True, out
    assert os.sched_getaffinity(P.read_pid_file(sc["pid_file"])["pid"]) == {last}
    assert loaded(sc) == [nosys] and ollama_facts(sc)["cpus"] == [last]
    assert task(sc, cpus=[last])["changed"] is False
    bad = task(sc, cpus=[last + 1000])
    assert bad["failed"] and f"asks for CPU {last + 1000}" in bad["msg"], bad
    assert os.sched_getaffinity(P.read_pid_file(sc["pid_file"])["pid"]) == {last}, "a refused run left the server alone"
    out = task(sc, diff=True)
    assert (out["diff"]["before"]["cpus"], out["diff"]["after"]["cpus"]) == ([last], None), out["diff"]
    assert out["changed"] is True and os.sched_getaffinity(P.read_pid_file(sc["pid_file"])["pid"]) == os.sched_getaffinity(0)
    assert ollama_facts(sc)["cpus"] is None and loaded(sc) == [nosys]


def test_stop(sc):  # pylint: disable=redefined-outer-name
    rec = P.read_pid_file(sc["pid_file"])
    out = task(sc, state="stopped", diff=True)
    assert out["changed"] is True and out["stop"]["port_free"] is True
    assert P.find_tree(rec) == {} and not os.path.exists(sc["pid_file"])
    assert task(sc, state="stopped")["changed"] is False
    rt = ollama_facts(sc)
    assert rt["configured"] is True and rt["running"] is False and rt["crashed"] is False and rt["pid"] is None
