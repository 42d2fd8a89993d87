# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Prometheus metrics with the real Prometheus tools (Debian package prometheus: promtool).

venom_model_facts writes the textfile on this machine (a manifest with models, a journal with a
failed operation, the real runtimes subset); ``promtool check metrics`` lints it; the example alert
rules pass ``promtool check rules`` and their unit tests (``promtool test rules``); every query of
the Grafana dashboard parses as PromQL.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import yaml

from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from tests.lib.ansible_run import run_task
from tests.lib.tools import promtool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OBS = os.path.join(REPO, "extensions", "observability")
REV = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"


def _models_dir(tmp_path) -> str:
    d = str(tmp_path / "models")
    Manifest(d).upsert(new_entry("org/chat", "huggingface", size_bytes=90868376, revision=REV))
    Manifest(d).upsert(new_entry('odd"name\\x', "local", size_bytes=5, revision=None))
    Journal(d).start("install", "org/chat", provider="huggingface").complete("installed")
    Journal(d).start("verify", "org/chat").fail("digest mismatch in model.safetensors")
    return d


def test_module_writes_a_textfile_promtool_accepts(tmp_path):
    d = _models_dir(tmp_path)
    prom = tmp_path / "collector" / "venom_models.prom"
    prom.parent.mkdir()
    args = {"models_dir": d, "gather_subset": ["models"], "quota_gb": 1, "metrics_file": str(prom)}
    res = run_task("venom.models.venom_model_facts", args, check=True)
    out = res.task()
    assert res.rc == 0, res.stdout + res.stderr
    assert out["changed"] is True and out["metrics"]["changed"] is True and not prom.exists(), "check mode writes nothing"
    res = run_task("venom.models.venom_model_facts", args)
    out = res.task()
    assert out["changed"] is True and prom.exists() and out["metrics"]["series"] > 10
    assert list(out["ansible_facts"]) == ["venom_models", "venom_gathered_subsets"], "the facts stay the requested subsets"
    assert sorted(os.listdir(prom.parent)) == ["venom_models.prom"]
    text = prom.read_text()
    lint = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (lint.stdout, lint.stderr, text)
    assert f'venom_model_info{{model="org/chat",provider="huggingface",revision="{REV}",status="installed"}} 1' in text
    assert 'model="odd\\"name\\\\x"' in text
    assert "venom_models_disk_quota_bytes 1000000000" in text
    assert 'venom_operation_last_status{status="failed",type="verify"} 1' in text
    assert re.search(r'^venom_runtime_up\{runtime="vllm",runtime_instance="vllm"\} 0$', text, re.M)
    # a broken file would be rejected: the check can fail
    bad = subprocess.run([promtool(), "check", "metrics"], input=text.replace("_bytes ", "_bytes_count ", 1) +
                         "# TYPE venom_thing_total gauge\nvenom_thing_total 1\n", capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_missing_collector_dir_fails_clearly(tmp_path):
    res = run_task("venom.models.venom_model_facts", {"models_dir": str(tmp_path / "m"), "gather_subset": ["models"],
                                                      "metrics_file": str(tmp_path / "nope" / "x.prom")})
    out = res.task()
    assert out["failed"] and "Cannot write the metrics file" in out["msg"] and "textfile collector" in out["fix"]


def test_alert_rules_check_and_unit_tests():
    check = subprocess.run([promtool(), "check", "rules", "alerts.yml"], cwd=OBS, capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check.stdout + check.stderr
    test = subprocess.run([promtool(), "test", "rules", "alerts.test.yml"], cwd=OBS, capture_output=True, text=True,
                          check=False)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr
    names = {r["alert"] for g in yaml.safe_load(open(os.path.join(OBS, "alerts.yml"), encoding="utf-8"))["groups"]
             for r in g["rules"]}
    tested = {t["alertname"] for t in yaml.safe_load(open(os.path.join(OBS, "alerts.test.yml"), encoding="utf-8"))
              ["tests"][0]["alert_rule_test"]}
    assert names == tested, "every alert has a unit test"


def test_dashboard_queries_are_valid_promql(tmp_path):
    with open(os.path.join(OBS, "grafana-dashboard.json"), encoding="utf-8") as fh:
        dash = json.load(fh)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e.replace("$instance", ".*")} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    metrics = set(re.findall(r"venom_[a-z_]+", " ".join(exprs)))
    assert {"venom_models_disk_quota_bytes", "venom_runtime_healthy", "venom_runtime_gpu_memory_used_bytes",
            "venom_model_info", "venom_operation_last_status"} <= metrics
