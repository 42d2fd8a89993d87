# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model_facts through the real ansible-playbook on this machine."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from ansible_collections.venom.models.plugins.module_utils._journal import Journal
from ansible_collections.venom.models.plugins.module_utils._manifest import Manifest, new_entry
from tests.lib.ansible_run import run_task

_SLOW_INSTALL = r"""
import sys, time
sys.path[:0] = sys.argv[2:]
from ansible_collections.venom.models.plugins.module_utils._journal import Journal
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
            res = run_task("venom.models.venom_model_facts", {"models_dir": d, "gather_subset": ["all", "!usage"]})
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
