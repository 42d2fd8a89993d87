# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model with provider: ollama, through ansible-playbook, against the Ollama test double."""
from __future__ import annotations

import json
import os
import threading
import time

import requests

from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from tests.lib.ansible_run import run_task

MODULE = "venom.models.venom_model"


def args_for(srv, name, tmp_path, **extra):
    out = {"name": name, "provider": "ollama", "endpoint": srv.url, "insecure": True, "models_path": srv.models_dir,
           "models_dir": str(tmp_path / "venom")}
    out.update(extra)
    return out


def test_check_real_check_real_then_absent_twice(ollama_double, ollama_models, tmp_path):
    m = ollama_models["chat"]
    args = args_for(ollama_double, m.name.rsplit(":", 1)[0], tmp_path)
    seq = []
    for check in (True, False, True, False):
        out = run_task(MODULE, args, check=check, diff=True).task()
        assert not out.get("failed"), out
        seq.append(out["changed"])
        if check and out["changed"]:
            assert out["plan"]["action"] == "install" and out["plan"]["fetch_bytes"] == m.size
            assert requests.get(ollama_double.url + "/api/tags", timeout=10).json()["models"] == [], "check mode pulls nothing"
    assert seq == [True, True, False, False], "check mode predicts, the real run pulls, then nothing to do"
    assert out["name"] == m.name and out["revision"] == m.manifest_digest and out["size_bytes"] == m.size
    caps = out["capabilities"]
    assert caps["supports_function_calling"] is True and caps["supports_system_role"] is True
    assert caps["max_context_length"] == 8192 and caps["quantization"] == "Q4_K_M"
    entry = Manifest(str(tmp_path / "venom")).get(m.name, "ollama")
    assert entry["status"] == "installed" and entry["revision"] == m.manifest_digest

    gone = [run_task(MODULE, dict(args, state="absent")).task() for _i in range(2)]
    assert [g["changed"] for g in gone] == [True, False], gone
    assert requests.get(ollama_double.url + "/api/tags", timeout=10).json()["models"] == []
    assert Manifest(str(tmp_path / "venom")).get(m.name, "ollama") is None


def test_pull_progress_is_visible_while_the_task_runs(ollama_double, ollama_models, oci_registry, tmp_path):
    m = ollama_models["big"]
    oci_registry.set_faults(throttle_bps=12 * 1024 * 1024)
    result = {}
    t = threading.Thread(target=lambda: result.update(out=run_task(MODULE, args_for(ollama_double, m.name, tmp_path)).task()))
    t.start()
    seen = []
    while t.is_alive():
        for rec in Journal(str(tmp_path / "venom")).list():
            if rec["status"] == "in_progress" and rec.get("bytes_done") and (not seen or rec["bytes_done"] != seen[-1]):
                seen.append(rec["bytes_done"])
        time.sleep(0.1)
    t.join()
    out = result["out"]
    assert not out.get("failed"), out
    assert len([s for s in seen if 0 < s < m.size]) >= 2, f"another process sees the progress move: {seen}"
    op = out["operation"]
    assert op["status"] == "completed" and op["bytes_total"] == m.size and out["bytes_downloaded"] == m.size


def test_unknown_model_fails_with_the_registry_answer(ollama_double, oci_registry, tmp_path):
    out = run_task(MODULE, args_for(ollama_double, f"{oci_registry.host}/library/nope:7b", tmp_path)).task()
    assert out["failed"] and "no model" in out["msg"] and "nope:7b" in out["msg"], out
    assert Manifest(str(tmp_path / "venom")).models() == []


def test_quota_refusal_pulls_nothing(ollama_double, ollama_models, tmp_path):
    m = ollama_models["big"]
    out = run_task(MODULE, args_for(ollama_double, m.name, tmp_path, quota_gb=0.01)).task()
    assert out["failed"] and "quota" in out["msg"] and "Nothing was downloaded" in out["msg"], out
    assert os.listdir(os.path.join(ollama_double.models_dir, "blobs")) == []
    assert requests.get(ollama_double.url + "/api/tags", timeout=10).json()["models"] == []


def test_verified_repairs_a_corrupted_blob(ollama_double, ollama_models, tmp_path):
    m = ollama_models["nosys"]
    args = args_for(ollama_double, m.name, tmp_path)
    out = run_task(MODULE, args).task()
    assert out["changed"] and out["capabilities"]["supports_system_role"] is False
    out = run_task(MODULE, dict(args, state="verified")).task()
    assert out["changed"] is False, out
    blob = os.path.join(ollama_double.models_dir, "blobs", m.model_layer["digest"].replace(":", "-"))
    with open(blob, "r+b") as fh:
        fh.seek(2000)
        fh.write(b"bitrot")
    out = run_task(MODULE, dict(args, state="verified"), check=True).task()
    assert out["changed"] and out["plan"]["action"] == "repair", out
    assert out["plan"]["problems"][0]["kind"] == "digest"
    out = run_task(MODULE, dict(args, state="verified")).task()
    assert out["changed"] and out["action"] == "repair", out
    assert run_task(MODULE, dict(args, state="verified")).task()["changed"] is False


def test_absent_removes_a_model_pulled_outside_venom(ollama_double, ollama_models, tmp_path):
    m = ollama_models["embed"]
    r = requests.post(ollama_double.url + "/api/pull", json={"model": m.name, "insecure": True, "stream": False}, timeout=60)
    assert r.json() == {"status": "success"}
    args = args_for(ollama_double, m.name, tmp_path, state="absent")
    out = run_task(MODULE, args, check=True).task()
    assert out["changed"] and out["plan"]["action"] == "remove", out
    out = run_task(MODULE, args).task()
    assert out["changed"], out
    assert requests.get(ollama_double.url + "/api/tags", timeout=10).json()["models"] == []
    assert json.loads(json.dumps(run_task(MODULE, args).task()))["changed"] is False


def test_present_for_a_model_the_server_already_has_records_it_without_a_pull(ollama_double, ollama_models, tmp_path):
    m = ollama_models["embed"]
    r = requests.post(ollama_double.url + "/api/pull", json={"model": m.name, "insecure": True, "stream": False}, timeout=60)
    assert r.json() == {"status": "success"}
    pulls = ollama_double.log_text().count("POST /api/pull")
    args = args_for(ollama_double, m.name, tmp_path)
    predicted = run_task(MODULE, args, check=True).task()
    assert predicted["changed"] is False and predicted["plan"]["action"] == "record", predicted
    assert Manifest(str(tmp_path / "venom")).get(m.name, "ollama") is None, "check mode writes nothing"
    out = run_task(MODULE, args).task()
    assert out["changed"] is False and out["action"] == "record" and out["bytes_downloaded"] == 0, out
    assert ollama_double.log_text().count("POST /api/pull") == pulls, "no pull for a model the server has"
    entry = Manifest(str(tmp_path / "venom")).get(m.name, "ollama")
    assert entry["status"] == "installed" and entry["revision"] == m.manifest_digest and entry["size_bytes"] == m.size
    again = run_task(MODULE, args).task()
    assert again["changed"] is False and again["action"] == "none", again
