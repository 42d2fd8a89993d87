# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model_facts through the real ansible-playbook on this machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from tests.lib.ansible_run import run_task
from tests.lib.olah_env import tiny_gemma_files

_SLOW_INSTALL = r"""
import sys, time
sys.path[:0] = sys.argv[2:]
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
op = Journal(sys.argv[1]).start("install", "org/slow", provider="huggingface", bytes_total=1000)
print(op.id, flush=True)
for i in range(1, 1001):
    op.update(bytes_done=i, force=True)
    time.sleep(0.02)
op.complete("installed")
"""


def test_facts_on_empty_dir_and_check_mode(tmp_path):
    for check in (False, True):
        res = run_task("venom.models.venom_model_facts", {"models_dir": str(tmp_path / "m")}, check=check)
        out = res.task()
        assert res.rc == 0, res.stdout + res.stderr
        assert out["changed"] is False
        facts = out["ansible_facts"]
        assert facts["venom_models"] == [] and facts["venom_operations"] == []
        assert facts["venom_usage"]["models_count"] == 0 and facts["venom_usage"]["disk_limit_gb"] == 50
        assert facts["venom_usage"]["memory_total_gb"] > 0
    assert not (tmp_path / "m").exists(), "facts never create anything"


def test_facts_show_a_running_install_from_another_process(tmp_path):
    d = str(tmp_path)
    Manifest(d).upsert(new_entry("org/done", "huggingface", size_bytes=123,
                                 capabilities={"supports_system_role": True, "max_context_length": 512},
                                 files=[{"path": "a", "size": 123}]))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_INSTALL, d] + sys.path, stdout=subprocess.PIPE, text=True)
    try:
        op_id = proc.stdout.readline().strip()
        seen = []
        for _round in range(2):
            res = run_task("venom.models.venom_model_facts", {"models_dir": d, "gather_subset": ["all", "!usage", "!available"]})
            facts = res.task()["ansible_facts"]
            ops = {o["id"]: o for o in facts["venom_operations"]}
            assert ops[op_id]["status"] == "in_progress"
            assert "finished_at" not in ops[op_id] and "duration_seconds" not in ops[op_id]
            seen.append(ops[op_id]["bytes_done"])
            assert "venom_usage" not in facts
            assert facts["venom_models"][0]["capabilities"]["max_context_length"] == 512
            time.sleep(1)
        assert seen[1] > seen[0], f"progress moves between two fact gatherings: {seen}"
    finally:
        proc.wait(60)
    rec = Journal(d).get(op_id)
    assert rec["status"] == "completed" and rec["duration_seconds"] > 0


def test_bad_subset_and_corrupt_manifest_fail_clearly(tmp_path):
    res = run_task("venom.models.venom_model_facts", {"models_dir": str(tmp_path), "gather_subset": ["bogus"]})
    out = res.task()
    assert out["failed"] and "Unknown gather_subset 'bogus'" in out["msg"]
    (tmp_path / "manifest.json").write_text("{oops")
    res = run_task("venom.models.venom_model_facts", {"models_dir": str(tmp_path)})
    out = res.task()
    assert out["failed"] and "not valid JSON" in out["msg"] and out["error"] == "ManifestError"
    assert (tmp_path / "manifest.json").read_text() == "{oops"
    json.dumps(out)


# -- venom_model_info (and the deprecated available subset), against a real Hub mirror (olah) ----------

FACTS = "venom.models.venom_model_facts"
INFO = "venom.models.venom_model_info"
SECRET = "hf_" + "Kp7" * 12 + "FACTSTOKEN"


def _available(olah, models_dir, check=False, **args):
    res = run_task(INFO, dict({"models_dir": models_dir, "endpoint": olah.endpoint}, **args), check=check)
    return res, res.task()


def test_info_on_a_mirror_resolves_names_like_an_install_and_marks_installed(olah, tmp_path):
    name = "venom-test/facts-available"
    repo = olah.create_repo(name, tiny_gemma_files())
    models_dir = str(tmp_path / "models")
    for check in (True, False):
        res, av = _available(olah, models_dir, check=check, names=[name, "venom-test/no-such-model"], token=SECRET)
        assert res.rc == 0 and av["changed"] is False, res.stdout + res.stderr
        assert SECRET not in res.stdout + res.stderr
        assert av["provider"] == "huggingface" and av["endpoint"] == olah.endpoint and av["count"] == 2
        found, missing = av["models"]
        assert found["available"] is True and found["revision"] == repo.head and found["requested_revision"] == "main"
        assert found["size_bytes"] == sum(f["size"] for f in repo.expected().values())
        assert found["files_count"] == len(repo.files)
        assert found["installed"] is False and found["update_available"] is False
        caps = found["capabilities"]  # predicted from the small files the mirror serves
        assert found["capabilities_error"] is None and caps["max_context_length"] == 8192, found
        assert caps["supports_system_role"] is False and caps["prompt_template"], caps
        assert missing["available"] is False and missing["capabilities"] is None and "not found" in missing["reason"] and missing["revision"] is None
    assert not os.path.exists(models_dir), "the info module never creates anything"

    inst = run_task("venom.models.venom_model",
                    {"name": name, "endpoint": olah.endpoint, "models_dir": models_dir}).task()
    assert inst["changed"] is True, inst
    listed = _available(olah, models_dir, names=[name])[1]["models"][0]["capabilities"]
    keys = ("max_context_length", "supports_system_role", "supports_function_calling", "allowed_roles",
            "prompt_template", "quantization")
    assert {k: listed[k] for k in keys} == {k: inst["capabilities"][k] for k in keys}, "the listing predicts the install"
    found = _available(olah, models_dir, names=[name])[1]["models"][0]
    assert found["installed"] is True and found["installed_revision"] == repo.head
    assert found["update_available"] is False

    old_head = repo.head
    new_head = olah.advance(name, dict(tiny_gemma_files(), **{"extra.txt": b"a new file\n"}))
    found = _available(olah, models_dir, names=[name])[1]["models"][0]
    assert found["revision"] == new_head != old_head and found["installed_revision"] == old_head
    assert found["update_available"] is True
    pinned = _available(olah, models_dir, names=[name], revision=old_head)[1]
    assert pinned["models"][0]["revision"] == old_head


def test_info_search_on_a_mirror_without_a_listing_says_to_give_names(olah, tmp_path):
    res, out = _available(olah, str(tmp_path / "m"), search="MiniLM", token=SECRET)
    assert out["failed"] is True
    assert "does not list models" in out["msg"] and "names" in out["msg"], out["msg"]
    assert SECRET not in res.stdout + res.stderr


def test_info_from_an_unreachable_endpoint_fails_clearly(tmp_path):
    out = run_task(INFO, {"models_dir": str(tmp_path / "m"), "endpoint": "http://127.0.0.1:9",
                          "names": ["org/model"]}).task()
    assert out["failed"] is True and "cannot reach http://127.0.0.1:9" in out["msg"], out["msg"]
    out = run_task(INFO, {"models_dir": str(tmp_path / "m"), "limit": 0}).task()
    assert out["failed"] is True and "limit must be between 1 and 1000" in out["msg"]


def test_the_available_subset_is_deprecated_and_never_fails_the_facts(olah, tmp_path):
    models_dir = tmp_path / "m"
    models_dir.mkdir()
    res = run_task(FACTS, {"models_dir": str(models_dir), "gather_subset": ["models", "available"],
                           "endpoint": "http://127.0.0.1:9", "names": ["org/model"]})
    out = res.task()
    assert res.rc == 0 and not out.get("failed"), out
    av = out["ansible_facts"]["venom_available"]
    assert av["models"] == [] and "cannot reach http://127.0.0.1:9" in av["error"] and av["fix"], av
    assert out["ansible_facts"]["venom_models"] == [], "the other subsets are there"
    assert any("available subset could not be gathered" in w for w in out["warnings"]), out.get("warnings")
    assert any("venom_model_info" in d["msg"] for d in out["deprecations"]), out.get("deprecations")
    # it still works for one release: the same list as venom_model_info
    name = "venom-test/facts-deprecated"
    olah.create_repo(name, tiny_gemma_files())
    out = run_task(FACTS, {"models_dir": str(models_dir), "gather_subset": ["available"],
                           "endpoint": olah.endpoint, "names": [name]}).task()
    assert out["ansible_facts"]["venom_available"]["models"][0]["available"] is True
    # 'all' is this host only: no remote lookup, no deprecation
    out = run_task(FACTS, {"models_dir": str(models_dir), "gather_subset": ["all"]}).task()
    assert "venom_available" not in out["ansible_facts"] and not out.get("deprecations"), out


def test_facts_for_a_models_dir_that_does_not_exist_warn(tmp_path):
    out = run_task(FACTS, {"models_dir": str(tmp_path / "typo"), "gather_subset": ["models"]}).task()
    assert out["ansible_facts"]["venom_models"] == []
    assert any(f"models_dir {tmp_path / 'typo'} does not exist" in w for w in out["warnings"]), out.get("warnings")
    present = tmp_path / "present"
    present.mkdir()
    out = run_task(FACTS, {"models_dir": str(present), "gather_subset": ["models"]}).task()
    assert not out.get("warnings"), out["warnings"]


def test_one_operation_by_id(tmp_path):
    journal = Journal(str(tmp_path))
    first = journal.start("install", "org/a")
    first.complete("installed")
    for i in range(3):
        journal.start("verify", f"org/b{i}").complete("verified")
    out = run_task(FACTS, {"models_dir": str(tmp_path), "gather_subset": ["operations"],
                           "operations_limit": 1, "operation_id": first.id}).task()
    ops = out["ansible_facts"]["venom_operations"]
    assert [o["id"] for o in ops] == [first.id] and ops[0]["model"] == "org/a" and ops[0]["status"] == "completed"
    out = run_task(FACTS, {"models_dir": str(tmp_path), "gather_subset": ["operations"], "operation_id": "nope"}).task()
    assert out["failed"] is True and "'nope' is not an operation id" in out["msg"] and out["fix"], out
    unknown = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    out = run_task(FACTS, {"models_dir": str(tmp_path), "gather_subset": ["operations"], "operation_id": unknown}).task()
    assert out["failed"] is True and f"no operation {unknown}" in out["msg"], out


def test_runtimes_not_configured_are_reported_without_a_request(tmp_path):
    out = run_task(FACTS, {"models_dir": str(tmp_path / "m"), "gather_subset": ["runtimes"]}).task()
    rts = out["ansible_facts"]["venom_runtimes"]
    assert sorted(rts) == ["ollama", "vllm"]
    for name, port in (("vllm", 8000), ("ollama", 11434)):
        assert rts[name]["port"] == port and rts[name]["running"] is False and rts[name]["healthy"] is False
    if not os.path.isdir("/run/systemd/system"):  # systemd is not PID 1 here: no unit can configure them
        for name in ("vllm", "ollama"):
            assert rts[name]["configured"] is False and rts[name]["mode"] == "process"
            assert rts[name]["health"] == "not configured on this host"
