# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama provider (plugins/module_utils/models/ollama.py) against the Ollama test double and a real registry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ansible_collections.venom.models as collection
from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ProviderError, QuotaError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import new_entry
from ansible_collections.venom.models.plugins.module_utils.models.ollama import OllamaProvider
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest, Progress, Target
from ansible_collections.venom.models.plugins.module_utils.store.quota import plan, require_fit
from tests.lib.ollama_env import ModelSpec, publish_model

COLLECTIONS_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(list(collection.__path__)[0])))


def make(srv, name, tmp_path, **req):
    request = ModelRequest(name=name, provider="ollama", endpoint=srv.url, models_dir=str(tmp_path / "venom"), **req)
    return OllamaProvider(request, StatePaths(str(tmp_path / "venom")), insecure=True, models_path=srv.models_dir)


def install(prov, entry=None, latest=False):
    target = prov.resolve(entry, latest=latest)
    progress = Progress()
    fields = prov.install(target, progress, entry)
    return target, fields, progress


def as_entry(prov, fields):
    keep = {k: v for k, v in fields.items() if k in ("revision", "local_path", "files", "size_bytes")}
    return new_entry(prov.canonical_name(), "ollama", capabilities=fields["capabilities_detected"], **keep)


def pulls_in_log(srv):
    return srv.log_text().count("POST /api/pull")


def test_install_then_present_is_a_no_op(ollama_double, ollama_models, tmp_path):
    m = ollama_models["chat"]
    prov = make(ollama_double, m.name, tmp_path)
    target, fields, progress = install(prov)
    assert target.revision == m.manifest_digest and target.fetch_bytes == m.size and not target.extra["already_present"]
    assert progress.done == progress.total == m.size and progress.transferred == m.size
    assert fields["revision"] == m.manifest_digest and fields["size_bytes"] == m.size
    assert sorted(f["path"] for f in fields["files"]) == sorted("blobs/" + x["digest"].replace(":", "-") for x in m.layers)
    assert all(f["sha256"] == f["path"][len("blobs/sha256-"):] for f in fields["files"])
    caps = fields["capabilities_detected"]
    assert caps["supports_function_calling"] is True and caps["supports_system_role"] is True
    assert caps["max_context_length"] == 8192 and caps["quantization"] == "Q4_K_M"
    assert ".System" in caps["prompt_template"]

    entry = as_entry(prov, fields)
    again = make(ollama_double, m.name, tmp_path)
    assert again.satisfies(entry) and again.quick_check(entry) == []
    pulls = pulls_in_log(ollama_double)
    target, fields2, _progress = install(again, entry)
    assert target.extra["already_present"] and target.fetch_bytes == 0
    assert fields2["revision"] == fields["revision"] and pulls_in_log(ollama_double) == pulls, "no second pull"


def test_names_are_normalised_and_match_case_insensitively(ollama_double, ollama_models, tmp_path):
    m = ollama_models["chat"]
    bare = m.name.rsplit(":", 1)[0]
    prov = make(ollama_double, bare, tmp_path)
    assert prov.canonical_name() == m.name, "the tag defaults to latest"
    _t, fields, _p = install(prov)
    entry = as_entry(prov, fields)
    upper = make(ollama_double, bare.upper() + ":LATEST", tmp_path)
    assert upper.satisfies(entry), "Ollama matches existing names case-insensitively"
    with pytest.raises(ValidationError):
        make(ollama_double, "bad name!", tmp_path)


def test_capabilities_of_a_template_without_system_role(ollama_double, ollama_models, tmp_path):
    _t, fields, _p = install(make(ollama_double, ollama_models["nosys"].name, tmp_path))
    caps = fields["capabilities_detected"]
    assert caps["supports_system_role"] is False and caps["supports_function_calling"] is False
    assert caps["max_context_length"] == 2048 and caps["quantization"] == "Q8_0"


def test_unknown_model_fails_early_and_in_the_stream(ollama_double, oci_registry, tmp_path):
    prov = make(ollama_double, f"{oci_registry.host}/library/no-such-model:1b", tmp_path)
    with pytest.raises(NotFoundError) as err:
        prov.resolve(None)
    assert "no-such-model:1b" in str(err.value) and err.value.fix
    # the server's own answer: an error line after the stream began
    with pytest.raises(NotFoundError) as err:
        prov.install(Target(revision="0" * 64, requested_revision="1b", files=[], local_path=None), Progress())
    assert "pull model manifest: file does not exist" in str(err.value)
    assert os.listdir(os.path.join(ollama_double.models_dir, "blobs")) == []


def test_quota_counts_only_missing_layers_and_refuses_before_pulling(ollama_double, ollama_models, tmp_path):
    a, b = ollama_models["chat"], ollama_models["chat_v2"]
    install(make(ollama_double, a.name, tmp_path))
    prov = make(ollama_double, b.name, tmp_path)
    target = prov.resolve(None)
    shared = {x["digest"] for x in a.layers}
    assert target.fetch_bytes == sum(x["size"] for x in b.layers if x["digest"] not in shared) < b.size
    blobs = sorted(os.listdir(os.path.join(ollama_double.models_dir, "blobs")))
    report = plan([{"name": a.name, "size_bytes": a.size}], target.fetch_bytes, quota_gb=(a.size + 1000) / 1e9,
                  reserve_gb=0, path=target.disk_path)
    with pytest.raises(QuotaError) as err:
        require_fit(report, prov.canonical_name(), [{"name": a.name, "size_bytes": a.size}])
    assert "Nothing was downloaded" in str(err.value)
    assert sorted(os.listdir(os.path.join(ollama_double.models_dir, "blobs"))) == blobs
    assert prov.client.find(b.name) is None


DRIVER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
    from ansible_collections.venom.models.plugins.module_utils.models.ollama import OllamaProvider
    from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
    from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest, Progress
    endpoint, name, venom_dir, store = sys.argv[2:6]
    req = ModelRequest(name=name, provider="ollama", endpoint=endpoint, models_dir=venom_dir)
    prov = OllamaProvider(req, StatePaths(venom_dir).ensure(), insecure=True, models_path=store)
    op = Journal(venom_dir).start("install", prov.canonical_name(), provider="ollama")
    print(json.dumps({"op": op.id}), flush=True)
    progress = Progress(lambda done, total, msg, force: op.update(bytes_done=done, bytes_total=total, message=msg, force=force))
    target = prov.resolve(None)
    fields = prov.install(target, progress)
    op.complete("installed", result={"revision": fields["revision"]})
""")


def test_progress_is_visible_to_another_process(ollama_double, ollama_models, oci_registry, tmp_path):
    m = ollama_models["big"]
    oci_registry.set_faults(throttle_bps=24 * 1024 * 1024)
    venom_dir = str(tmp_path / "venom")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, COLLECTIONS_ROOT, ollama_double.url, m.name, venom_dir,
                             ollama_double.models_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    op_id = json.loads(proc.stdout.readline())["op"]
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rec = Journal(venom_dir).get(op_id)
        if rec.get("bytes_done") is not None and (not seen or rec["bytes_done"] != seen[-1]):
            seen.append(rec["bytes_done"])
        if rec["status"] in ("completed", "failed"):
            break
        time.sleep(0.1)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert rec["status"] == "completed" and rec["bytes_total"] == m.size, rec
    assert len([s for s in seen if 0 < s < m.size]) >= 2, f"progress moved while pulling: {seen}"
    assert seen == sorted(seen)


def test_server_stopped_mid_pull_fails_clearly_then_resumes(ollama_double, ollama_models, oci_registry, tmp_path):
    m = ollama_models["big"]
    layer = m.model_layer
    oci_registry.set_faults(throttle_bps=16 * 1024 * 1024)
    prov = make(ollama_double, m.name, tmp_path)
    target = prov.resolve(None)
    outcome = {}
    progress = Progress()

    def run():
        try:
            prov.install(target, progress)
        except ProviderError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while progress.done < 4 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.05)
    ollama_double.stop()  # systemctl stop ollama in the middle of the pull
    t.join(30)
    assert "error" in outcome and "Run the task again" in str(outcome["error"]), outcome
    oci_registry.reset_faults()
    ollama_double.start()
    prov = make(ollama_double, m.name, tmp_path)
    assert prov.client.find(m.name) is None, "nothing half-installed is listed"
    target = prov.resolve(None)
    assert target.staged_bytes >= 4 * 1024 * 1024 and target.fetch_bytes == m.size - target.staged_bytes
    fields = prov.install(target, Progress())
    assert fields["revision"] == m.manifest_digest
    gets = [r for r in oci_registry.storage_requests() if r["method"] == "GET" and layer["digest"][7:] in r["path"]]
    assert gets[0]["range"] == f"bytes={target.staged_bytes}-{layer['size'] - 1}", "the download resumed"


def test_verified_finds_a_corrupted_blob_and_repairs_it(ollama_double, ollama_models, tmp_path):
    m = ollama_models["chat"]
    prov = make(ollama_double, m.name, tmp_path)
    _t, fields, _p = install(prov)
    entry = as_entry(prov, fields)
    assert prov.verify(entry, Progress()) == []
    blob = os.path.join(ollama_double.models_dir, "blobs", m.model_layer["digest"].replace(":", "-"))
    with open(blob, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"corrupt!")
    problems = prov.verify(entry, Progress())
    assert [(p.path, p.kind) for p in problems] == [("blobs/" + os.path.basename(blob), "digest")]
    assert prov.quick_check(entry) == [], "a same-size corruption is only found by hashing"
    fixed = prov.repair(entry, problems, Progress())
    assert fixed["revision"] == m.manifest_digest
    assert prov.verify(entry, Progress()) == []


def test_remove_then_remove_again(ollama_double, ollama_models, tmp_path):
    a, b = ollama_models["chat"], ollama_models["chat_v2"]
    install(make(ollama_double, b.name, tmp_path))
    prov = make(ollama_double, a.name, tmp_path)
    _t, fields, _p = install(prov)
    entry = as_entry(prov, fields)
    removed = prov.remove(entry)
    shared = {x["digest"] for x in b.layers}
    assert sorted(os.path.basename(p) for p in removed) == sorted(x["digest"].replace(":", "-") for x in a.layers
                                                                  if x["digest"] not in shared)
    assert prov.client.find(a.name) is None and prov.client.find(b.name) is not None
    assert prov.remove(entry) == [], "already gone: nothing to do, no error"


def test_latest_pulls_only_when_the_registry_changed(ollama_double, oci_registry, tmp_path):
    build = str(tmp_path / "build")
    v1 = publish_model(oci_registry, ModelSpec("venom/moving", size=96 * 1024), build)
    prov = make(ollama_double, v1.name, tmp_path)
    _t, fields, _p = install(prov)
    entry = as_entry(prov, fields)
    target = prov.resolve(entry, latest=True)
    assert target.revision == entry["revision"] and target.fetch_bytes == 0
    v2 = publish_model(oci_registry, ModelSpec("venom/moving", size=128 * 1024), build)
    target = prov.resolve(entry, latest=True)
    assert target.revision == v2.manifest_digest != v1.manifest_digest
    assert target.fetch_bytes == v2.model_layer["size"] + v2.layers[-1]["size"], "only the new weights and config"
    fields = prov.install(target, Progress(), entry)
    assert fields["revision"] == v2.manifest_digest
    blobs = os.listdir(os.path.join(ollama_double.models_dir, "blobs"))
    assert v1.model_layer["digest"].replace(":", "-") not in blobs, "Ollama removed the layers only the old version used"
