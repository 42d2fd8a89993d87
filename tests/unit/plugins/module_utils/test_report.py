# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report's pure logic: problems, drift, active models, Markdown escaping."""
from __future__ import annotations

import json

from ansible_collections.venom.models.plugins.plugin_utils.report import SCHEMA, build_report, render_markdown


def _facts(models=(), runtimes=None, ops=(), usage=None):
    return {"venom_models": list(models), "venom_runtimes": runtimes or {}, "venom_operations": list(ops),
            "venom_usage": usage}


def _model(name, rev, **kw):
    return dict({"name": name, "provider": "huggingface", "revision": rev, "size_bytes": 10, "status": "installed",
                 "active": False, "active_runtime": None}, **kw)


def test_an_unhealthy_runtime_a_full_disk_and_a_half_installed_model_are_problems():
    report = build_report({
        "h1": _facts([_model("o/m", "1" * 40, status="installing")],
                     runtimes={"vllm": {"configured": True, "running": False, "healthy": False,
                                        "health": "not running", "model": "o/m"},
                               "ollama": {"configured": False, "healthy": False}},
                     usage={"disk_usage_percent": 95.0, "disk_limit_gb": 50, "gpus": [{"index": 0}]}),
        "h2": _facts([_model("o/m", "1" * 40)],
                     ops=[{"status": "in_progress", "type": "install", "model": "o/x", "progress": 40.0}]),
    })
    h1, h2 = report["hosts"]
    assert h1["problems"] == ["vllm is not healthy: not running", "model disk at 95.0% of its 50 GB quota",
                              "model o/m is installing"]
    assert h1["active_models"] == {"vllm": "o/m"} and h1["gpus"] == [{"index": 0}]
    assert h2["problems"] == [] and h2["running_operations"][0]["progress"] == 40.0
    assert report["summary"]["drift"] == [] and report["summary"]["hosts_with_problems"] == ["h1"]
    assert report["schema"] == SCHEMA
    json.dumps(report)  # JSON-able


def test_markdown_cells_cannot_break_the_table():
    report = build_report({"h|1": _facts([_model("o/m", "2" * 40)],
                                         ops=[{"status": "failed", "type": "verify", "model": "o/m",
                                               "error": "bad | digest\nsecond line"}])})
    md = render_markdown(report, title="T")
    row = next(line for line in md.splitlines() if line.startswith("| h\\|1 | verify"))
    assert "bad \\| digest second line" in row and row.count(" | ") == 4
    assert md.startswith("# T\n")


def test_no_hosts_gives_an_empty_but_valid_report():
    report = build_report({}, generated_at="2026-01-01T00:00:00.000Z")
    assert report["summary"]["hosts"] == 0 and report["models"] == [] and report["hosts"] == []
    assert "Hosts: 0 of 0 reachable" in render_markdown(report)
