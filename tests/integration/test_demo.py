# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``make demo`` end to end, as a user runs it: scripts/demo.sh, then again, then ``stop``.

The demo runs for real (an olah mirror seeded with all-MiniLM-L6-v2, venom_model installing it
through the mirror, venom_runtime serving it with vLLM on the CPU, an embeddings request) in a
fresh state directory (``VENOM_DEMO_STATE``), never the checkout's ./demo-state, on this suite's
ports (olah 18101-18109, vLLM 8021-8029). One scenario in order, because vLLM takes about a
minute to start: the first run installs, serves and answers; the second changes nothing and is
quick; ``stop`` leaves no process and frees both ports.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from tests.lib.ports import free_port, port_is_free

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "scripts", "demo.sh")
OLAH_PORTS = range(18101, 18110)
VLLM_PORTS = range(8021, 8030)
# a cold cache builds the vLLM venv first (minutes); vLLM then needs a minute or two on 2 cores
RUN_TIMEOUT = float(os.environ.get("VENOM_DEMO_TIMEOUT", "3600"))
# no download, no start: far below a first run (the README's timings are measured, not asserted);
# generous so that a loaded CI machine does not fail a run that changed nothing
SECOND_RUN_BUDGET = 240.0
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
INSTALL_TASK = "Install the model through the mirror"
SERVE_TASK = "Serve the model with vLLM on the CPU"


def run_demo(sc: dict, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(["bash", DEMO, *args], env=sc["env"], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    return proc, time.monotonic() - t0


def recap(stdout: str) -> dict:
    """The recap of the demo playbook: the first of the output (the fleet report follows as its
    own run and writes its files on every run)."""
    found = RECAP.findall(stdout)
    assert found, f"no play recap in the output:\n{stdout[-3000:]}"
    ok, changed, unreachable, failed = map(int, found[0])
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


def task_status(stdout: str, name: str) -> str:
    """The status line word (ok, changed, failed, skipping) of the task ``name`` on localhost."""
    parts = re.split(r"^TASK \[", stdout, flags=re.M)
    for part in parts[1:]:
        if part.startswith(name + "]"):
            m = re.search(r"^(ok|changed|failed|fatal|skipping): \[localhost\]", part, re.M)
            assert m, f"no status for task {name!r}:\n{part[:2000]}"
            return m.group(1)
    raise AssertionError(f"task {name!r} did not run:\n{stdout[-3000:]}")


def pid_files(sc: dict) -> dict:
    return {"olah": os.path.join(sc["state"], "olah", "olah.pid"),
            "vllm": os.path.join(sc["state"], "models", ".venom", "runtimes", "vllm.pid")}


def procs_of_the_demo(sc: dict) -> list:
    """Live processes whose command line names the demo's state directory (olah's config, the
    model path vLLM serves)."""
    out = []
    for proc in P.all_procs():
        if proc.zombie:
            continue
        try:
            cmd = " ".join(P.proc_cmdline(proc.pid))
        except OSError:
            continue
        if sc["state"] in cmd:
            out.append(f"{proc.pid} {cmd}")
    return out


def embedding(url: str, model: str) -> list:
    req = urllib.request.Request(f"{url}/v1/embeddings", data=json.dumps({"model": model, "input": "venom"}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 (loopback)
        return json.loads(resp.read())["data"][0]["embedding"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("demo-state"))
    olah_port, vllm_port = free_port(OLAH_PORTS), free_port(VLLM_PORTS)
    env = dict(os.environ, VENOM_DEMO_STATE=state, VENOM_DEMO_OLAH_PORT=str(olah_port),
               VENOM_DEMO_VLLM_PORT=str(vllm_port), ANSIBLE_NOCOLOR="1")
    sc = {"state": state, "env": env, "olah_port": olah_port, "vllm_port": vllm_port,
          "url": f"http://127.0.0.1:{vllm_port}", "runs": {}}
    yield sc
    # whatever happened: nothing of the demo may outlive the test
    run_demo(sc, "stop")
    for path in pid_files(sc).values():
        try:
            P.stop_pid_file(path, stop_timeout=10)
        except Exception:  # pylint: disable=broad-except  # best effort; the stop test reports it
            pass


def test_first_run_installs_serves_and_answers(demo):
    sc = demo
    proc, seconds = run_demo(sc)
    sc["runs"]["first"] = seconds
    out = proc.stdout
    assert proc.returncode == 0, f"rc {proc.returncode}\n{out[-6000:]}\n{proc.stderr[-4000:]}"
    rc = recap(out)
    assert rc["failed"] == 0 and rc["unreachable"] == 0
    assert task_status(out, INSTALL_TASK) == "changed"
    assert task_status(out, SERVE_TASK) == "changed"
    assert task_status(out, "Check the answer (all-MiniLM-L6-v2 embeds in 384 dimensions)") == "ok"
    # the summary: what happened, where, how to call it, what next
    for text in ("What happened", "sentence-transformers/all-MiniLM-L6-v2 (huggingface)", "installed now",
                 f"the olah mirror http://127.0.0.1:{sc['olah_port']}", "started and healthy in",
                 f"{sc['url']}/v1 (OpenAI API)", "returned a 384-dimension embedding",
                 f"curl -s {sc['url']}/v1/embeddings", "What to try next", "playbooks/site.yml",
                 "make demo-stop", os.path.join(sc["state"], "models")):
        assert text in out, f"{text!r} is not in the summary:\n{out[-4000:]}"
    revision = re.search(r"revision\s+([0-9a-f]{40}) \(branch main\)", out)
    assert revision, out[-4000:]
    manifest = json.load(open(os.path.join(sc["state"], "models", "manifest.json"), encoding="utf-8"))
    (entry,) = manifest["models"]
    assert entry["revision"] == revision.group(1) and entry["active"] is True
    assert entry["size_bytes"] > 80_000_000
    # vLLM and olah keep running after the command, and answer
    assert len(embedding(sc["url"], "minilm")) == 384
    for name, path in pid_files(sc).items():
        assert P.record_alive(P.read_pid_file(path)), f"{name} is not running after the demo"
    assert "demo finished in" in out
    check_report(sc, out)


def check_report(sc: dict, out: str) -> None:
    """The demo writes the fleet report of its host."""
    report_dir = os.path.join(sc["state"], "report")
    with open(os.path.join(report_dir, "fleet-report.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    assert report["summary"]["models_installed"] == 1, report["summary"]
    host = report["hosts"][0]
    assert host["active_models"] == {"vllm": "sentence-transformers/all-MiniLM-L6-v2"}, host
    assert host["runtimes"]["vllm"]["healthy"] is True and host["runtimes"]["vllm"]["mode"] == "process", host
    assert "the fleet report" in out and "fleet-report.md" in out
    with open(os.path.join(report_dir, "fleet-report.md"), encoding="utf-8") as fh:
        assert "sentence-transformers/all-MiniLM-L6-v2" in fh.read()


def test_second_run_changes_nothing_and_is_quick(demo):
    sc = demo
    assert "first" in sc["runs"], "the first run did not pass"
    proc, seconds = run_demo(sc)
    out = proc.stdout
    assert proc.returncode == 0, f"rc {proc.returncode}\n{out[-6000:]}\n{proc.stderr[-4000:]}"
    rc = recap(out)
    assert rc["changed"] == 0 and rc["failed"] == 0, out[-3000:]
    assert task_status(out, INSTALL_TASK) == "ok"
    assert task_status(out, SERVE_TASK) == "ok"
    assert "already installed: no download, no change" in out and "already serving this model: no change" in out
    assert "already running" in out  # the mirror was reused, not started again
    assert seconds < SECOND_RUN_BUDGET, f"the second run took {seconds:.0f}s"
    assert len(embedding(sc["url"], "minilm")) == 384


def test_stop_leaves_nothing_running(demo):
    sc = demo
    before = {name: P.read_pid_file(path) for name, path in pid_files(sc).items()}
    proc, _seconds = run_demo(sc, "stop")
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "Stop the demo's vLLM" in proc.stdout and '"stopped"' in proc.stdout
    for name, path in pid_files(sc).items():
        assert not os.path.exists(path), f"{name}'s PID file is left"
        assert before[name] is None or not P.record_alive(before[name]), f"{name} still runs"
    assert port_is_free(sc["olah_port"]) and port_is_free(sc["vllm_port"])
    assert procs_of_the_demo(sc) == []
    # a second stop has nothing to do and says so without failing
    proc, _seconds = run_demo(sc, "stop")
    assert proc.returncode == 0 and '"stopped": null' in proc.stdout, proc.stdout[-3000:]
