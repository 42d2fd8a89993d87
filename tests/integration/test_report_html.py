# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The HTML fleet report in a real headless Chromium (Debian package chromium), offline.

The page is rendered from a fleet with drift, GPUs, runtimes in every state, a failed operation,
an unreachable host and host strings that try to inject HTML. Chromium loads it from a file with
the network switched off; its DOM must show the escaped strings as text (no element, no script
ran), and the screenshot is kept in tests/output/report-html/fleet-report.png.
"""
from __future__ import annotations

import os
import re
import subprocess

from ansible_collections.venom.models.plugins.plugin_utils.report import build_report, render_html
from tests.lib.report_data import EVIL, fleet_facts
from tests.lib.tools import require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "tests", "output", "report-html")


def _chromium() -> list:
    return [require("chromium", "chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--hide-scrollbars"]


def _run(argv, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp_path))
    return subprocess.run(argv + [f"--user-data-dir={tmp_path / 'profile'}"], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_the_page_renders_offline_with_every_host_string_escaped(tmp_path):
    os.makedirs(OUT, exist_ok=True)
    page = os.path.join(OUT, "fleet-report.html")
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(render_html(build_report(fleet_facts(), generated_at="2026-11-22T12:00:00.000Z")))
    dom = _run(_chromium() + ["--dump-dom", f"file://{page}"], tmp_path)
    assert dom.returncode == 0, dom.stderr[-3000:]
    html = dom.stdout
    assert "<title>venom.models fleet report</title>" in html
    assert html.count('<tr class="drift">') == 2
    assert len(re.findall(r"<svg ", html)) == 4, "the disk bars of two hosts, the VRAM bars of two GPUs"
    assert "<script" not in html and "<img" not in html, "a host string became an element"
    assert "&lt;script&gt;alert(\"x\")&lt;/script&gt;" in html, "the host string shows as text"

    shot = os.path.join(OUT, "fleet-report.png")
    if os.path.exists(shot):
        os.unlink(shot)
    res = _run(_chromium() + ["--window-size=1280,2200", f"--screenshot={shot}", f"file://{page}"], tmp_path)
    assert res.returncode == 0 and os.path.getsize(shot) > 20000, res.stderr[-3000:]
    with open(shot, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert EVIL not in open(page, encoding="utf-8").read()
