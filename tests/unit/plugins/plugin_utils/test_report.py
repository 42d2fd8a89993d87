# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report's pure logic: problems, drift, active models, Markdown escaping."""
from __future__ import annotations

import copy
import json
import re

from ansible_collections.venom.models.plugins.plugin_utils.report import (
    SCHEMA, build_report, render_html, render_markdown, same_content)
from ansible_collections.venom.models.plugins.filter.fleet_report import fleet_report
from tests.lib.report_data import fleet_facts


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


def test_html_escapes_every_host_string_and_loads_nothing_from_elsewhere():
    report = build_report(fleet_facts(), generated_at="2026-11-22T12:00:00.000Z")
    page = render_html(report, title="T <b>")
    assert "<script" not in page and "<img" not in page, "no element from a host string"
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "no external resource"
    assert "T &lt;b&gt;" in page and page.startswith("<!DOCTYPE html>")


def test_html_bars_drift_runtimes_and_failures():
    page = render_html(build_report(fleet_facts(), generated_at="2026-11-22T12:00:00.000Z"))
    assert "model disk: 42 / 50 GB (84.0 %)" in page and "model disk: 47.5 / 50 GB (95.0 %)" in page
    assert 'fill="#c0392b"' in page and 'fill="#d68910"' in page, "95 % red, 84 % orange"
    assert "GPU 0 NVIDIA A100-SXM4-40GB VRAM: 36000 / 40960 MB (87.9 %)" in page
    drift_rows = re.findall(r'<tr class="drift">(.*?)</tr>', page)
    assert len(drift_rows) == 2 and all("org/chat" in r for r in drift_rows)
    assert '<span class="badge ok">healthy</span>' in page and '<span class="badge warn">unhealthy</span>' in page
    assert '<span class="badge down">down</span>' in page and "not configured" in page
    assert "org/broken" in page and "unreachable" in page
    assert "<td>0, 1</td><td>3072</td><td>48000</td>" in page, "the instance's GPUs, tree RSS and VRAM"


def test_same_content_ignores_time_and_momentary_figures_only():
    facts = fleet_facts()
    first = build_report(facts, generated_at="2026-11-22T12:00:00.000Z")
    later = copy.deepcopy(facts)
    later["gpu-a"]["venom_usage"].update(cpu_usage_percent=99.0, disk_free_gb=400.1)
    later["gpu-a"]["venom_usage"]["gpus"][0].update(vram_used_mb=1.0, utilization_percent=3.0)
    again = build_report(later, generated_at="2026-11-22T13:00:00.000Z", previous=first)
    assert again is first, "nothing new: the previous report, time included"
    later["gpu-a"]["venom_models"][1]["revision"] = "e" * 40
    changed = build_report(later, generated_at="2026-11-22T13:00:00.000Z", previous=first)
    assert changed is not first and changed["generated_at"] == "2026-11-22T13:00:00.000Z"
    assert not same_content(first, {"schema": "other"}) and not same_content(first, None)


def test_filter_takes_the_previous_report_as_json_text_and_ignores_a_damaged_one():
    facts = fleet_facts()
    first = fleet_report(facts)
    assert fleet_report(facts, previous=json.dumps(first))["generated_at"] == first["generated_at"]
    assert fleet_report(facts, previous="{damaged")["schema"] == SCHEMA
    assert fleet_report(facts, "html", previous=first) == render_html(first)
