# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The report playbook (venom.models.report) through ansible-playbook.

Two hosts run on this machine through the local connection, each with its own models_dir (so they
disagree about a model's revision: version drift), and a third host is unreachable. The report's
JSON and Markdown are checked for what the issue asks: models and versions, disk per host, active
models, failed operations, the unreachable host.
"""
from __future__ import annotations

import json
import os

from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from tests.lib.ansible_run import run_playbook

REV_A, REV_B = "a" * 40, "b" * 40


def _host_dir(tmp_path, name, revision, active=False, failed_op=False):
    models_dir = str(tmp_path / name)
    Manifest(models_dir).upsert(new_entry("sentence-transformers/all-MiniLM-L6-v2", "huggingface", size_bytes=90_868_376,
                                          revision=revision, status="installed", active=active,
                                          active_runtime="vllm" if active else None, runtime="vllm"))
    Manifest(models_dir).upsert(new_entry(f"org/{name}-only", "huggingface", size_bytes=1000, revision="c" * 40,
                                          status="installed"))
    if failed_op:
        op = Journal(models_dir).start("install", "org/broken", provider="huggingface")
        op.fail("The Hugging Face repository org/broken was not found at http://mirror:8090.")
    return models_dir


def test_report_lists_models_versions_disk_active_models_failures_and_unreachable_hosts(tmp_path):
    a = _host_dir(tmp_path, "gpu-a", REV_A, active=True)
    b = _host_dir(tmp_path, "gpu-b", REV_B, failed_op=True)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"gpu-a ansible_connection=local venom_models_dir={a}\n"
        f"gpu-b ansible_connection=local venom_models_dir={b}\n"
        "gpu-gone ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_ssh_timeout=3\n")
    out_dir = tmp_path / "reports"
    res = run_playbook([{"import_playbook": "venom.models.report"}], inventory=str(inventory),
                       extra_args=["-e", f"venom_report_dir={out_dir}", "-e", "venom_quota_gb=1"])
    assert res.rc != 0, "an unreachable host fails the run, as Ansible reports it"
    assert "UNREACHABLE" in res.stdout
    report = json.loads((out_dir / "fleet-report.json").read_text())
    md = (out_dir / "fleet-report.md").read_text()
    assert oct(os.stat(out_dir / "fleet-report.json").st_mode & 0o777) == "0o640"

    s = report["summary"]
    assert report["schema"] == "venom.models/fleet-report@1"
    assert s["hosts"] == 3 and s["reachable"] == 2 and s["unreachable"] == ["gpu-gone"]
    assert s["models_installed"] == 4 and s["distinct_models"] == 3
    assert s["bytes_installed"] == 2 * 90_868_376 + 2000
    assert s["drift"] == ["sentence-transformers/all-MiniLM-L6-v2"] and s["failed_operations"] == 1
    assert s["hosts_with_problems"] == ["gpu-b", "gpu-gone"]

    minilm = next(m for m in report["models"] if m["name"] == "sentence-transformers/all-MiniLM-L6-v2")
    assert minilm["revisions"] == {REV_A: ["gpu-a"], REV_B: ["gpu-b"]} and minilm["drift"] is True
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["gpu-a"]["active_models"] == {"vllm": "sentence-transformers/all-MiniLM-L6-v2"}
    assert hosts["gpu-b"]["active_models"] == {}
    assert hosts["gpu-a"]["usage"]["disk_limit_gb"] == 1 and hosts["gpu-a"]["usage"]["disk_usage_gb"] > 0
    assert hosts["gpu-a"]["usage"]["disk_free_gb"] > 0 and hosts["gpu-a"]["usage"]["models_count"] == 2
    assert hosts["gpu-a"]["usage"]["gpu_count"] in (0, None) or hosts["gpu-a"]["gpus"]
    assert sorted(hosts["gpu-a"]["runtimes"]) == ["ollama", "vllm"]
    failed = hosts["gpu-b"]["failed_operations"]
    assert len(failed) == 1 and failed[0]["model"] == "org/broken" and "not found" in failed[0]["error"]
    assert hosts["gpu-gone"]["reachable"] is False and hosts["gpu-gone"]["models"] == []

    assert md.startswith("# venom.models fleet report")
    assert "- Hosts: 2 of 3 reachable (unreachable: gpu-gone)" in md
    assert "- Version drift: sentence-transformers/all-MiniLM-L6-v2" in md
    assert f"| sentence-transformers/all-MiniLM-L6-v2 | huggingface | {REV_A[:12]} | gpu-a | yes |" in md
    assert "vllm: sentence-transformers/all-MiniLM-L6-v2" in md
    assert "| gpu-b | install | org/broken |" in md
    assert "**gpu-gone**: no facts" in md

    summary = res.task("Summary", host="gpu-a")["msg"]
    assert "hosts: 2 of 3 reachable" in summary and f"report: {out_dir}/fleet-report.html, fleet-report.md and fleet-report.json" in summary


def test_a_second_run_changes_nothing_and_a_real_change_rewrites_the_files(tmp_path):
    a = _host_dir(tmp_path, "gpu-a", REV_A, active=True)
    b = _host_dir(tmp_path, "gpu-b", REV_B, failed_op=True)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"gpu-a ansible_connection=local venom_models_dir={a}\n"
                         f"gpu-b ansible_connection=local venom_models_dir={b}\n")
    out_dir = tmp_path / "reports"
    files = ("fleet-report.json", "fleet-report.md", "fleet-report.html")
    writes = [f"Write {name}" for name in files]

    def run():
        res = run_playbook([{"import_playbook": "venom.models.report"}], inventory=str(inventory),
                           extra_args=["-e", f"venom_report_dir={out_dir}"])
        assert res.rc == 0, res.stdout[-4000:]
        return [t for t in writes if res.task(t).get("changed")]

    assert run() == writes
    first = {name: (out_dir / name).read_text() for name in files}
    assert "<svg " in first["fleet-report.html"] and 'class="drift"' in first["fleet-report.html"]
    assert run() == [], "nothing but the time and the momentary figures changed: no file is rewritten"
    assert {name: (out_dir / name).read_text() for name in files} == first
    Manifest(b).upsert(new_entry("org/new", "huggingface", size_bytes=5, revision="d" * 40, status="installed"))
    assert run() == writes, "a new model is news: every file is rewritten"
    assert "org/new" in (out_dir / "fleet-report.html").read_text()
