# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama server test double against a real OCI registry: API shapes, store, pulls, faults.

These tests pin the behaviour that the Ollama provider and role rely on to what upstream Ollama
does (routes, status codes, error strings, the NDJSON pull stream, the on-disk store).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
import time

import requests

from tests.lib.ollama_env import OLLAMA_DOUBLE, ModelSpec, OllamaTestDouble, publish_model


def pull(srv, name, **kw):
    """POST /api/pull streaming; returns (status, content type, [lines])."""
    body = {"model": name, "insecure": True}
    body.update(kw)
    with requests.post(srv.url + "/api/pull", json=body, stream=True, timeout=120) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
        return r.status_code, r.headers.get("Content-Type"), lines


def statuses(lines):
    return [line.get("status", "error") for line in lines]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def blob_files(srv):
    return sorted(os.listdir(os.path.join(srv.models_dir, "blobs")))


def test_root_version_methods_and_bad_requests(ollama_double):
    url = ollama_double.url
    r = requests.get(url + "/", timeout=10)
    assert (r.status_code, r.text) == (200, "Ollama is running")
    r = requests.head(url + "/", timeout=10)
    assert r.status_code == 200 and r.text == ""
    assert requests.get(url + "/api/version", timeout=10).json() == {"version": "0.33.0"}
    r = requests.get(url + "/api/pull", timeout=10)
    assert r.status_code == 405, "a known path with the wrong method is 405 (gin HandleMethodNotAllowed)"
    assert requests.post(url + "/api/tags", timeout=10).status_code == 405
    assert requests.get(url + "/api/nope", timeout=10).status_code == 404
    r = requests.post(url + "/api/pull", timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "missing request body"})
    r = requests.post(url + "/api/pull", json={"model": "bad name!"}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "invalid model name"})
    r = requests.post(url + "/api/pull", json={"model": ""}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "invalid model name"})
    r = requests.post(url + "/api/show", json={}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})
    r = requests.delete(url + "/api/delete", json={"model": ""}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})
    assert requests.get(url + "/api/tags", timeout=10).json() == {"models": []}
    assert requests.get(url + "/api/ps", timeout=10).json() == {"models": []}


def test_pull_stream_sequence_and_true_store(ollama_double, ollama_models):
    m = ollama_models["chat"]
    code, ctype, lines = pull(ollama_double, m.name)
    assert code == 200 and ctype == "application/x-ndjson"
    st = statuses(lines)
    assert st[0] == "pulling manifest"
    assert st[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer_lines = [line for line in lines if line["status"].startswith("pulling ") and "digest" in line]
    assert {line["digest"] for line in layer_lines} == {layer["digest"] for layer in m.layers}
    for line in layer_lines:
        assert line["status"] == "pulling " + line["digest"][7:19]
        assert line["total"] == next(layer["size"] for layer in m.layers if layer["digest"] == line["digest"])
        assert 0 <= line.get("completed", 0) <= line["total"]
    finals = {line["digest"]: line for line in layer_lines}
    assert all(line["completed"] == line["total"] for line in finals.values())

    # the store: manifest bytes as the registry serves them, blobs named by their true digest
    host, repo = m.name.split("/", 1)
    repo, tag = repo.rsplit(":", 1)
    mpath = os.path.join(ollama_double.models_dir, "manifests", host, *repo.split("/"), tag)
    with open(mpath, "rb") as f:
        assert f.read() == m.manifest
    files = blob_files(ollama_double)
    assert files == sorted(layer["digest"].replace(":", "-") for layer in m.layers)
    for name in files:
        assert name == "sha256-" + sha256_file(os.path.join(ollama_double.models_dir, "blobs", name))

    tags = requests.get(ollama_double.url + "/api/tags", timeout=10).json()["models"]
    assert len(tags) == 1
    t = tags[0]
    assert t["name"] == t["model"] == m.name
    assert t["digest"] == m.manifest_digest == hashlib.sha256(m.manifest).hexdigest()
    assert t["size"] == m.size
    assert t["details"]["family"] == "llama" and t["details"]["quantization_level"] == "Q4_K_M"
    assert t["details"]["families"] == ["llama"] and t["details"]["parameter_size"] == "1M"


def test_second_pull_is_cached_and_idempotent(ollama_double, ollama_models, oci_registry):
    m = ollama_models["chat"]
    pull(ollama_double, m.name)
    before = {name: os.stat(os.path.join(ollama_double.models_dir, "blobs", name)).st_mtime_ns for name in blob_files(ollama_double)}
    oci_registry.reset_faults()
    code, _ctype, lines = pull(ollama_double, m.name)
    assert code == 200
    layer_lines = [line for line in lines if "digest" in line]
    assert len(layer_lines) == len(m.layers), "a cached blob sends exactly one line"
    assert all(line["completed"] == line["total"] == next(x["size"] for x in m.layers if x["digest"] == line["digest"])
               for line in layer_lines)
    assert statuses(lines)[-1] == "success" and "removing unused layers" not in statuses(lines)
    assert not [r for r in oci_registry.storage_requests() if r["method"] == "GET"], "nothing downloaded again"
    after = {name: os.stat(os.path.join(ollama_double.models_dir, "blobs", name)).st_mtime_ns for name in blob_files(ollama_double)}
    assert before == after


def test_unknown_model_error_line_after_stream_started(ollama_double, oci_registry):
    code, ctype, lines = pull(ollama_double, f"{oci_registry.host}/library/does-not-exist:latest")
    assert code == 200 and ctype == "application/x-ndjson", "the error comes after streaming began"
    assert lines == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    r = requests.post(ollama_double.url + "/api/pull", timeout=30,
                      json={"model": f"{oci_registry.host}/library/does-not-exist", "insecure": True, "stream": False})
    assert (r.status_code, r.json()) == (500, {"error": "pull model manifest: file does not exist"})
    assert blob_files(ollama_double) == []


def test_stream_false_success_and_insecure_rules(ollama_double, ollama_models, oci_registry):
    m = ollama_models["chat_v2"]
    r = requests.post(ollama_double.url + "/api/pull", json={"model": m.name, "insecure": True, "stream": False}, timeout=60)
    assert (r.status_code, r.json()) == (200, {"status": "success"})
    assert r.headers["Content-Type"].startswith("application/json")
    # an http:// name without insecure fails before anything was streamed: HTTP 500
    r = requests.post(ollama_double.url + "/api/pull", json={"model": f"http://{m.name}"}, timeout=30)
    assert (r.status_code, r.json()) == (500, {"error": "insecure protocol http"})
    # https (the default scheme) against a plain-HTTP registry: the error line after the manifest status
    _code, _ctype, lines = pull(ollama_double, m.name, insecure=False)
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1]["error"].startswith(f'pull model manifest: Get "https://{oci_registry.host}/v2/library/tiny-chat/manifests/v2"')


def test_delete_keeps_shared_blobs_and_is_404_the_second_time(ollama_double, ollama_models):
    a, b = ollama_models["chat"], ollama_models["chat_v2"]
    pull(ollama_double, a.name)
    pull(ollama_double, b.name)
    shared = {x["digest"] for x in a.layers} & {x["digest"] for x in b.layers}
    assert shared, "the two tags share the licence/params/template blobs"
    r = requests.delete(ollama_double.url + "/api/delete", json={"model": a.name}, timeout=10)
    assert (r.status_code, r.content) == (200, b"")
    left = set(blob_files(ollama_double))
    assert left == {x["digest"].replace(":", "-") for x in b.layers}, "only blobs no other manifest uses are removed"
    r = requests.delete(ollama_double.url + "/api/delete", json={"model": a.name}, timeout=10)
    assert (r.status_code, r.json()) == (404, {"error": f"model '{a.name}' not found"})
    r = requests.delete(ollama_double.url + "/api/delete", json={"model": b.name.upper()}, timeout=10)
    assert r.status_code == 200, "names match case-insensitively"
    assert blob_files(ollama_double) == []
    assert os.listdir(os.path.join(ollama_double.models_dir, "manifests")) == [], "empty manifest dirs are pruned"


def test_show_fields_and_capabilities(ollama_double, ollama_models):
    for key in ("chat", "nosys", "embed"):
        pull(ollama_double, ollama_models[key].name)

    def show(name):
        return requests.post(ollama_double.url + "/api/show", json={"model": name}, timeout=10)

    chat = show(ollama_models["chat"].name).json()
    assert chat["capabilities"] == ["completion", "tools"]
    assert ".System" in chat["template"] and chat["system"] == "You are a helpful test model."
    assert chat["license"].startswith("Test licence")
    assert chat["model_info"]["general.architecture"] == "llama"
    assert chat["model_info"]["general.file_type"] == 15
    assert chat["model_info"]["llama.context_length"] == 8192
    assert chat["model_info"]["general.parameter_count"] == 65536
    assert "general.name" not in chat["model_info"] and "tokenizer.chat_template" not in chat["model_info"]
    assert chat["model_info"]["tokenizer.ggml.tokens"] == [], "long arrays are elided unless verbose"
    assert chat["details"]["quantization_level"] == "Q4_K_M"
    assert 'stop                           "</s>"' in chat["parameters"]
    assert chat["modelfile"].startswith('# Modelfile generated by "ollama show"')
    assert {"modified_at", "details", "model_info", "tensors"} <= set(chat)
    verbose = requests.post(ollama_double.url + "/api/show", json={"model": ollama_models["chat"].name, "verbose": True}, timeout=10).json()
    assert len(verbose["model_info"]["tokenizer.ggml.tokens"]) == 7

    nosys = show(ollama_models["nosys"].name).json()
    assert nosys["capabilities"] == ["completion"]
    assert ".System" not in nosys["template"] and "system" not in nosys
    assert nosys["model_info"]["gemma.context_length"] == 2048 and nosys["details"]["quantization_level"] == "Q8_0"

    embed = show(ollama_models["embed"].name).json()
    assert embed["capabilities"] == ["embedding"]
    assert embed["template"] == "{{ .Prompt }}", "no template layer: upstream's default template"

    r = show(f"{ollama_models['chat'].name.rsplit(':', 1)[0]}:nope")
    assert r.status_code == 404
    assert r.json() == {"error": f"model '{ollama_models['chat'].name.rsplit(':', 1)[0]}:nope' not found"}
    r = show("tiny")
    assert (r.status_code, r.json()) == (404, {"error": "model 'tiny:latest' not found"})


def test_tags_normalisation_and_case_insensitive_names(ollama_double, ollama_models):
    m = ollama_models["chat"]
    pull(ollama_double, m.name)
    url = ollama_double.url
    for dst in ("tiny-chat", "myns/Tiny:Q4"):
        assert requests.post(url + "/api/copy", json={"source": m.name, "destination": dst}, timeout=10).status_code == 200
    names = sorted(t["name"] for t in requests.get(url + "/api/tags", timeout=10).json()["models"])
    assert names == sorted([m.name, "tiny-chat:latest", "myns/Tiny:Q4"]), "shortest display form, tag always shown"
    for alias in ("TINY-CHAT", "tiny-chat:LATEST", "registry.ollama.ai/library/tiny-chat:latest", "library/tiny-chat", "MyNs/tiny:q4"):
        r = requests.post(url + "/api/show", json={"model": alias}, timeout=10)
        assert r.status_code == 200, (alias, r.text)
    path = os.path.join(ollama_double.models_dir, "manifests", "registry.ollama.ai", "myns", "Tiny", "Q4")
    assert os.path.isfile(path), "the manifest path keeps the spelling first written"


def test_generate_preload_keep_alive_and_ps(ollama_double, ollama_models):
    m, e = ollama_models["chat"], ollama_models["embed"]
    pull(ollama_double, m.name)
    pull(ollama_double, e.name)
    url = ollama_double.url
    r = requests.post(url + "/api/generate", json={"model": m.name, "keep_alive": -1}, timeout=10)
    assert r.status_code == 200 and r.json()["done"] is True and r.json()["done_reason"] == "load"
    ps = requests.get(url + "/api/ps", timeout=10).json()["models"]
    assert [p["name"] for p in ps] == [m.name] and ps[0]["digest"] == m.manifest_digest
    assert ps[0]["expires_at"] > "2300", "keep_alive -1 keeps the model loaded (about 292 years)"
    assert ps[0]["context_length"] == 4096 and ps[0]["size_vram"] == 0
    r = requests.post(url + "/api/generate", json={"model": m.name, "keep_alive": 0}, timeout=10)
    assert r.json()["done_reason"] == "unload"
    assert requests.get(url + "/api/ps", timeout=10).json() == {"models": []}
    r = requests.post(url + "/api/generate", json={"model": m.name, "keep_alive": "10m"}, timeout=10)
    assert r.json()["done_reason"] == "load"
    r = requests.post(url + "/api/generate", json={"model": m.name, "keep_alive": "-1"}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": 'time: missing unit in duration "-1"'})
    r = requests.post(url + "/api/generate", json={"model": e.name}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": f'"{e.name}" does not support generate'})
    r = requests.post(url + "/api/generate", json={"model": "missing"}, timeout=10)
    assert (r.status_code, r.json()) == (404, {"error": "model 'missing' not found"})


def test_drop_mid_pull_is_resumed_with_range(ollama_double, ollama_models, oci_registry):
    m = ollama_models["big"]
    layer = m.model_layer
    oci_registry.set_faults(drop_after_bytes=3 * 1024 * 1024, drop_count=1)
    code, _ctype, lines = pull(ollama_double, m.name)
    assert code == 200 and statuses(lines)[-1] == "success", lines[-3:]
    gets = [r for r in oci_registry.storage_requests() if r["method"] == "GET" and layer["digest"][7:] in r["path"]]
    assert gets[0]["dropped"] and gets[0]["sent"] == 3 * 1024 * 1024
    assert gets[0]["range"] == f"bytes=0-{layer['size'] - 1}"
    assert gets[1]["range"] == f"bytes={3 * 1024 * 1024}-{layer['size'] - 1}", "the retry resumes where the drop left off"
    blob = os.path.join(ollama_double.models_dir, "blobs", layer["digest"].replace(":", "-"))
    assert "sha256:" + sha256_file(blob) == layer["digest"]
    assert "part 0 attempt 0 failed" in ollama_double.log_text()


def test_interrupted_pull_keeps_partial_and_resumes_after_restart(ollama_double, ollama_models, oci_registry):
    m = ollama_models["big"]
    layer = m.model_layer
    oci_registry.set_faults(throttle_bps=16 * 1024 * 1024)
    seen = []
    with requests.post(ollama_double.url + "/api/pull", json={"model": m.name, "insecure": True}, stream=True, timeout=60) as r:
        for raw in r.iter_lines():
            line = json.loads(raw)
            if line.get("digest") == layer["digest"]:
                seen.append(line["completed"])
                if line["completed"] >= 4 * 1024 * 1024:
                    break
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] < layer["size"], "progress moves while pulling"
    blob = os.path.join(ollama_double.models_dir, "blobs", layer["digest"].replace(":", "-"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the client went away: the download stops and records its part
        with open(blob + "-partial-0", encoding="utf-8") as f:
            part = json.load(f)
        if part["Completed"] and not [d for d in oci_registry.storage_requests() if d["method"] == "GET" and d.get("sent") is None]:
            break
        time.sleep(0.1)
    assert os.path.exists(blob + "-partial") and part["Completed"] >= 4 * 1024 * 1024 and part["Size"] == layer["size"]
    assert ollama_double.stop() == 0, "SIGTERM stops the test double cleanly"
    ollama_double.start()
    assert os.path.exists(blob + "-partial-0"), "fresh partial downloads survive a restart"
    with open(blob + "-partial-0", encoding="utf-8") as f:
        done = json.load(f)["Completed"]
    oci_registry.reset_faults()
    code, _ctype, lines = pull(ollama_double, m.name)
    assert code == 200 and statuses(lines)[-1] == "success"
    gets = [r for r in oci_registry.storage_requests() if r["method"] == "GET" and layer["digest"][7:] in r["path"]]
    assert gets[0]["range"] == f"bytes={done}-{layer['size'] - 1}"
    assert "sha256:" + sha256_file(blob) == layer["digest"]
    assert not glob.glob(blob + "-partial*")


def test_corrupted_registry_blob_fails_verification(ollama_double, oci_registry, tmp_path):
    pm = publish_model(oci_registry, ModelSpec("venom/corrupt-me", size=64 * 1024), str(tmp_path / "build"))
    layer = pm.model_layer
    hexd = layer["digest"][7:]
    data = os.path.join(oci_registry.root, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")
    with open(data, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 16)
    code, _ctype, lines = pull(ollama_double, pm.name)
    assert code == 200 and statuses(lines)[-2] == "verifying sha256 digest"
    assert lines[-1]["error"].startswith(f"digest mismatch, file must be downloaded again: want {layer['digest']}, got sha256:")
    assert layer["digest"].replace(":", "-") not in blob_files(ollama_double), "the bad blob is removed"
    assert requests.get(ollama_double.url + "/api/tags", timeout=10).json() == {"models": []}


def test_command_line_version_and_host(tmp_path):
    env = dict(os.environ, OLLAMA_HOST="127.0.0.1:1")
    out = subprocess.run([sys.executable, OLLAMA_DOUBLE, "--version"], env=env, capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout == "Warning: could not connect to a running Ollama instance\nWarning: client version is 0.33.0\n"
    srv = OllamaTestDouble(str(tmp_path / "m"), env={"OLLAMA_KEEP_ALIVE": "-1"}).start()
    try:
        env["OLLAMA_HOST"] = f"http://127.0.0.1:{srv.port}"
        out = subprocess.run([sys.executable, OLLAMA_DOUBLE, "-v"], env=env, capture_output=True, text=True, timeout=20, check=True)
        assert out.stdout == "ollama version is 0.33.0\n"
        assert os.path.isdir(tmp_path / "m" / "blobs") and os.path.isdir(tmp_path / "m" / "manifests")
    finally:
        assert srv.stop() == 0
    bad = subprocess.run([sys.executable, OLLAMA_DOUBLE, "run", "x"], capture_output=True, text=True, timeout=20, check=False)
    assert bad.returncode == 1 and "test double" in bad.stderr
