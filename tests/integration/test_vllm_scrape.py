# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vllm role's metrics exporter (roles/vllm/files/vllm_metrics_exporter.py) as a real process.

An upstream on loopback plays vLLM's API port (``/metrics`` and the API); the exporter must pass
``/metrics`` through (promtool accepts what it serves) and nothing else.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from tests.lib.ports import free_port
from tests.lib.servers import LocalHTTPServer, QuietHandler, stop_process
from tests.lib.tools import promtool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPORTER = os.path.join(REPO, "roles", "vllm", "files", "vllm_metrics_exporter.py")
VLLM_METRICS = (b"# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                b"# TYPE vllm:num_requests_running gauge\n"
                b'vllm:num_requests_running{engine="0",model_name="minilm"} 0.0\n')


class _FakeVllm(QuietHandler):
    def do_GET(self):  # noqa: N802
        body, ctype = ((VLLM_METRICS, "text/plain; version=0.0.4; charset=utf-8") if self.path == "/metrics"
                       else (b'{"data": [{"id": "minilm"}]}', "application/json"))
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def exporter():
    upstream = LocalHTTPServer(_FakeVllm).start()
    port = free_port()
    proc = subprocess.Popen([sys.executable, EXPORTER, "--listen-address", "127.0.0.1", "--listen-port", str(port),  # pylint: disable=consider-using-with
                             "--upstream", f"{upstream.url}/metrics", "--timeout", "2"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "serving" in proc.stdout.readline()
        yield {"url": f"http://127.0.0.1:{port}", "upstream": upstream}
    finally:
        stop_process(proc)
        upstream.stop()


def test_only_metrics_is_served(exporter):  # pylint: disable=redefined-outer-name
    url = exporter["url"]
    res = requests.get(f"{url}/metrics", timeout=5)
    assert res.status_code == 200 and res.content == VLLM_METRICS
    assert res.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lint = subprocess.run([promtool(), "check", "metrics"], input=res.text, capture_output=True, text=True, check=False)
    assert "error" not in (lint.stdout + lint.stderr).lower(), lint.stdout + lint.stderr
    assert requests.head(f"{url}/metrics", timeout=5).status_code == 200
    for path in ("/v1/models", "/v1/embeddings", "/health", "/metrics/../v1/models", "/"):
        assert requests.get(url + path, timeout=5).status_code == 404, path
    assert requests.post(f"{url}/v1/embeddings", json={"input": "x"}, timeout=5).status_code == 405
    assert requests.post(f"{url}/metrics", timeout=5).status_code == 405


def test_vllm_down_is_503(exporter):  # pylint: disable=redefined-outer-name
    exporter["upstream"].stop()
    time.sleep(0.2)
    res = requests.get(f"{exporter['url']}/metrics", timeout=10)
    assert res.status_code == 503 and "did not answer" in res.text
