# SPDX-License-Identifier: GPL-3.0-or-later
"""The runtime library against a real vLLM (CPU build) serving a real model, in process mode:
start detached, health gate, embeddings, a complete stop, and the cleanup of the orphans that
a ``kill -9`` of the API server leaves (vLLM's EngineCore and worker keep running).

Each vLLM start costs about a minute on 2 cores: this module starts it three times (the last
one with a broken model, which fails fast)."""
from __future__ import annotations

import json
import math
import os
import signal
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import health as H
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from tests.lib.ports import free_port
from tests.lib.vllm_env import VLLM_HEALTH_TIMEOUT, VLLM_PORTS, vllm_argv, vllm_process_env


FAST = ["--enforce-eager"]  # no torch.compile warm-up: ~50 s instead of ~75-110 s to healthy


def _start(venv, model, served, tmp_path, tag):
    port = free_port(VLLM_PORTS)
    pid_file, log_file = str(tmp_path / f"{tag}.pid"), str(tmp_path / f"{tag}.log")
    rec = P.start_process(vllm_argv(venv, model, served, port, extra=FAST), pid_file=pid_file, log_file=log_file,
                          env=vllm_process_env(), name="vllm", port=port, host="127.0.0.1")
    return rec, pid_file, port, H.base_url("127.0.0.1", port)


def _wait_healthy(rec, url, served):
    return H.wait_ready(lambda: H.vllm_check(url, served), VLLM_HEALTH_TIMEOUT, "vLLM",
                        alive=lambda: P.record_alive(rec), log_tail=lambda: P.tail_file(rec["log_file"]),
                        log_where=rec["log_file"])


def _marked_processes(marker):
    """Every process on the host whose environment carries the runtime's marker."""
    return [p.pid for p in P.all_procs() if not p.zombie and (P.proc_environ(p.pid) or {}).get(P.MARKER_ENV) == marker]


@pytest.fixture
def cleanup():
    recs = []
    yield recs
    for rec in recs:  # a failed test must not leave a vLLM behind
        for proc in P.find_tree(rec).values():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_serve_embed_and_stop_leaves_nothing(vllm_venv, model_dirs, tmp_path, cleanup):
    rec, pid_file, port, url = _start(vllm_venv, model_dirs["minilm"], "minilm", tmp_path, "serve")
    cleanup.append(rec)
    ready = _wait_healthy(rec, url, "minilm")
    assert ready["seconds"] > 0

    ok, _reason, models = H.vllm_check(url, "minilm")
    assert ok and [m["id"] for m in models] == ["minilm"]
    assert models[0]["root"] == model_dirs["minilm"] and models[0]["max_model_len"] == 256

    status, body = H.http("POST", f"{url}/v1/embeddings", {"model": "minilm", "input": ["venom models", "hello"]},
                          timeout=120)
    assert status == 200, body
    data = json.loads(body)["data"]
    assert len(data) == 2
    for item in data:
        vec = item["embedding"]
        assert len(vec) == 384 and all(math.isfinite(x) for x in vec)
        assert abs(math.sqrt(sum(x * x for x in vec)) - 1.0) < 1e-3  # MiniLM's pooler normalises
    assert data[0]["embedding"] != data[1]["embedding"]

    tree = P.find_tree(rec)
    comms = sorted(p.comm for p in tree.values())
    assert any(c.startswith("VLLM::EngineCor") for c in comms), comms
    assert any(c.startswith("VLLM::Worker") for c in comms), comms

    res = P.stop_pid_file(pid_file, stop_timeout=60)
    assert sorted(res.found) == sorted(tree)
    assert res.killed == [], f"SIGTERM should have been enough: {res.as_dict()}"
    assert res.port_free is True and not P.port_in_use("127.0.0.1", port)
    assert _marked_processes(rec["marker"]) == []
    for pid, proc in tree.items():
        now = P.read_proc(pid)
        assert now is None or now.start != proc.start or now.zombie, f"{proc.describe()} is still running"
    assert not os.path.exists(pid_file)
    assert H.vllm_check(url, "minilm")[0] is False


def test_orphans_of_a_killed_api_server_are_cleaned_up(vllm_venv, model_dirs, tmp_path, cleanup):
    rec, pid_file, port, url = _start(vllm_venv, model_dirs["minilm"], "minilm", tmp_path, "kill9")
    cleanup.append(rec)
    _wait_healthy(rec, url, "minilm")
    engine = [p for p in P.find_tree(rec).values() if p.comm.startswith("VLLM::")]
    assert len(engine) >= 2, engine

    os.kill(rec["pid"], signal.SIGKILL)
    os.waitpid(rec["pid"], 0)  # our child: reap it, as init would
    time.sleep(2)
    assert not P.record_alive(rec)
    orphans = P.find_tree(rec)
    # the problem this code exists for: vLLM's engine outlives its API server
    assert {p.pid for p in engine} <= set(orphans), (engine, orphans)
    assert all(orphans[p.pid].ppid != rec["pid"] for p in engine)

    res = P.stop_pid_file(pid_file, stop_timeout=60)
    assert set(res.found) == set(orphans)
    assert _marked_processes(rec["marker"]) == []
    assert res.port_free is True and not P.port_in_use("127.0.0.1", port)


def test_a_broken_model_fails_the_health_gate_with_the_log(vllm_venv, model_dirs, tmp_path, cleanup):
    rec, pid_file, _port, url = _start(vllm_venv, model_dirs["broken"], "broken", tmp_path, "broken")
    cleanup.append(rec)
    t0 = time.monotonic()
    with pytest.raises(RuntimeControlError, match="exited before it became healthy") as err:
        _wait_healthy(rec, url, "broken")
    assert time.monotonic() - t0 < VLLM_HEALTH_TIMEOUT / 2, "the wait must end when the server dies"
    tail = "\n".join(err.value.details["log_tail"])
    assert "config.json" in tail or "JSONDecodeError" in tail or "Expecting" in tail, tail
    assert rec["log_file"] in err.value.msg
    P.stop_pid_file(pid_file, stop_timeout=30)
    assert _marked_processes(rec["marker"]) == []
