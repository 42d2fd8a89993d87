# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hugging Face provider's HTTP layer against a real server on loopback (real sockets, the real
huggingface_hub client): a transient failure is retried by huggingface_hub's backoff, a server that
never answers is given up after the read timeout, a failure that lasts keeps its message and fix."""
from __future__ import annotations

import json
import threading
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import ProviderError
from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from tests.lib.servers import LocalHTTPServer, QuietHandler

COMMIT = "0123456789abcdef0123456789abcdef01234567"
INFO = "/api/models/org/model/revision/main"
TREE = f"/api/models/org/model/tree/{COMMIT}"


class FlakyHub(QuietHandler):
    """A Hub API for ``org/model`` whose answers follow ``plan``: per path, a list of what the next
    requests get ("503", "drop": the connection closed without an answer, "hang": no answer for
    ``hang_seconds``); once the list is used up, the real answer."""

    plan: dict = {}
    seen: dict = {}
    hang_seconds = 0.0
    lock = threading.Lock()

    def do_GET(self):  # pylint: disable=invalid-name
        path = self.path.split("?", 1)[0]
        with self.lock:
            self.seen[path] = self.seen.get(path, 0) + 1
            todo = self.plan.get(path) or []
            what = todo.pop(0) if todo else "answer"
        if what == "drop":
            self.close_connection = True
            return
        if what == "hang":
            time.sleep(self.hang_seconds)
        if what == "503":
            return self._send(503, {"error": "upstream unavailable"})
        if path == INFO:
            return self._send(200, {"id": "org/model", "modelId": "org/model", "sha": COMMIT, "private": False})
        if path == TREE:
            return self._send(200, [{"type": "file", "path": "config.json", "size": 2, "oid": "a" * 40}])
        return self._send(404, {"error": "not found"})

    def _send(self, status: int, doc) -> None:
        body = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the read timeout test)


@pytest.fixture
def hub(monkeypatch):
    """A FlakyHub on loopback; afterwards huggingface_hub's shared client is rebuilt with the module's settings."""
    _hf.load_hub()
    from huggingface_hub.utils import _http as hub_http  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(FlakyHub, "plan", {})
    monkeypatch.setattr(FlakyHub, "seen", {})
    monkeypatch.setattr(FlakyHub, "hang_seconds", 0.0)
    monkeypatch.setattr(_hf, "_HUB_TLS", None)  # the factory is set again (reading the timeouts) on first use
    with LocalHTTPServer(FlakyHub) as server:
        yield server
    hub_http.close_session()  # the client of this test (perhaps with a shortened timeout) is not kept


def _provider(tmp_path, endpoint):
    request = ModelRequest(name="org/model", models_dir=str(tmp_path), endpoint=endpoint)
    return _hf.HuggingFaceProvider(request, StatePaths(str(tmp_path)))


def test_a_transient_5xx_and_a_dropped_connection_are_retried(tmp_path, hub):
    FlakyHub.plan = {INFO: ["503"], TREE: ["drop"]}
    target = _provider(tmp_path, hub.url).resolve(None)
    assert target.revision == COMMIT and [f.path for f in target.files] == ["config.json"]
    assert FlakyHub.seen == {INFO: 2, TREE: 2}, "each call failed once and was sent again"


def test_a_failure_that_lasts_is_given_up_with_the_endpoint_and_the_fix(tmp_path, hub):
    FlakyHub.plan = {INFO: ["503"] * 10}
    with pytest.raises(ProviderError) as err:
        _provider(tmp_path, hub.url).resolve(None)
    assert FlakyHub.seen[INFO] == 1 + _hf.HUB_RETRY["max_retries"]
    assert f"{hub.url} answered HTTP 503" in err.value.msg and "Resolving org/model@main" in err.value.msg
    assert "check the endpoint/mirror's health" in err.value.fix


def test_a_server_that_never_answers_is_given_up_after_the_read_timeout(tmp_path, hub, monkeypatch):
    monkeypatch.setattr(_hf, "HUB_READ_TIMEOUT", 0.3)
    FlakyHub.hang_seconds = 8.0
    FlakyHub.plan = {INFO: ["hang"] * 10}
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        _provider(tmp_path, hub.url).resolve(None)
    assert time.monotonic() - started < FlakyHub.hang_seconds, "the read timeout ended each wait"
    assert f"cannot reach {hub.url}" in err.value.msg and "Timeout" in err.value.msg
    assert FlakyHub.seen[INFO] == 1 + _hf.HUB_RETRY["max_retries"], "a timed-out request is retried too"
