# SPDX-License-Identifier: GPL-3.0-or-later
"""The health wait's logic (timeouts, early exit of a dead runtime, log tail in the error) and
the URL rules. The HTTP checks themselves run against a real vLLM in the integration tier and
against the Ollama test double in the Ollama tests."""
from __future__ import annotations

import json
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import health as H
from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from ansible_collections.venom.models.plugins.module_utils.models.ollama_api import OllamaClient
from ansible_collections.venom.models.plugins.module_utils.runtimes.controller import RuntimeController
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import Activation, RuntimeSpec
from tests.lib.ports import free_port
from tests.lib.servers import LocalHTTPServer, QuietHandler
from tests.unit.plugins.module_utils.fake_clock import FakeClock


@pytest.mark.parametrize("host,url", [
    ("127.0.0.1", "http://127.0.0.1:8000"),
    ("0.0.0.0", "http://127.0.0.1:8000"),
    (None, "http://127.0.0.1:8000"),
    ("::", "http://[::1]:8000"),
    ("::1", "http://[::1]:8000"),
    ("gpu1.example", "http://gpu1.example:8000"),
    ("[::]", "http://[::1]:8000"),
    ("[fe80::1]", "http://[fe80::1]:8000"),
    ("", "http://127.0.0.1:8000"),
])
def test_base_url(host, url):
    assert H.base_url(host, 8000) == url


def test_wait_ready_returns_once_the_check_passes():
    answers = iter([(False, "loading"), (False, "loading"), (True, "healthy")])
    res = H.wait_ready(lambda: next(answers), timeout=10, what="vLLM", interval=0.01)
    assert res["reason"] == "healthy" and res["seconds"] < 5


def test_wait_ready_times_out_with_the_last_reason_and_log_lines():
    t0 = time.monotonic()
    with pytest.raises(RuntimeControlError, match=r"did not become healthy within 0.3s \(last check: still loading\)") as err:
        H.wait_ready(lambda: (False, "still loading"), timeout=0.3, what="vLLM", interval=0.05,
                     log_tail=lambda: ["line 1", "ValueError: bad config"], log_where="/var/log/vllm.log")
    assert 0.3 <= time.monotonic() - t0 < 2
    assert "Last lines of /var/log/vllm.log:\nline 1\nValueError: bad config" in err.value.msg
    assert err.value.details["log_tail"] == ["line 1", "ValueError: bad config"]
    assert "health_timeout" in err.value.fix


def test_wait_ready_stops_early_when_the_runtime_died():
    t0 = time.monotonic()
    with pytest.raises(RuntimeControlError, match="exited before it became healthy"):
        H.wait_ready(lambda: (False, "connection refused"), timeout=60, what="vLLM", alive=lambda: False)
    assert time.monotonic() - t0 < 1


def test_checks_report_a_closed_port_as_not_ready():
    url = H.base_url("127.0.0.1", free_port())  # a port that nothing listens on
    ok, reason, models = H.vllm_check(url, "x", timeout=1)
    assert not ok and "/health" in reason and models == []
    client = OllamaClient(url, timeout=1, error=RuntimeControlError, retries=0)
    with pytest.raises(RuntimeControlError, match="cannot be reached"):
        client.version()
    assert H.ollama_check(client)[0] is False
    with pytest.raises(RuntimeControlError, match=r"cannot be reached \(POST http://127\.0\.0\.1:\d+/api/generate"):
        client.keep_alive("m:latest", -1, timeout=1)


class _FakeVllm(QuietHandler):
    """vLLM's /health and /v1/models as the tests set them: ``answers`` {path: (status, body, delay)};
    every request's method, path and Authorization header is recorded in ``seen``."""

    answers: dict = {}
    seen: list = []

    def do_GET(self):  # pylint: disable=invalid-name
        self.seen.append(("GET", self.path, self.headers.get("Authorization")))
        status, body, delay = self.answers.get(self.path, (404, b"", 0))
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


MODELS = json.dumps({"object": "list", "data": [{"id": "org/m", "root": "/models/m"}, "junk"]}).encode()


@pytest.fixture
def vllm_server():
    handler = type("Handler", (_FakeVllm,), {"answers": {"/health": (200, b"", 0), "/v1/models": (200, MODELS, 0)},
                                             "seen": []})
    with LocalHTTPServer(handler) as server:
        yield server, handler


def test_the_served_models_are_read_with_the_api_key_as_a_bearer_token(vllm_server):
    server, handler = vllm_server
    assert H.vllm_models(server.url, "s3cret") == [{"id": "org/m", "root": "/models/m"}]
    assert H.vllm_models(server.url) == [{"id": "org/m", "root": "/models/m"}]
    assert handler.seen == [("GET", "/v1/models", "Bearer s3cret"), ("GET", "/v1/models", None)]
    handler.answers["/v1/models"] = (200, b'[{"id": "org/m"}]', 0)
    assert H.vllm_models(server.url) == [], "an answer that is not an object lists nothing"
    handler.answers["/v1/models"] = (200, b'{"object": "list"}', 0)
    assert H.vllm_models(server.url) == []


def test_a_refused_api_key_is_named_and_other_errors_carry_the_servers_text(vllm_server):
    server, handler = vllm_server
    handler.answers["/v1/models"] = (401, b'{"error": "Unauthorized"}', 0)
    with pytest.raises(RuntimeControlError) as err:
        H.vllm_models(server.url, "wrong")
    assert err.value.msg == "vLLM /v1/models answered 401 (wrong or missing api_key): Unauthorized"
    handler.answers["/v1/models"] = (503, b"", 0)
    with pytest.raises(RuntimeControlError) as err:
        H.vllm_models(server.url)
    assert err.value.msg == "vLLM /v1/models answered 503: HTTP 503"


def test_the_models_request_gives_up_after_its_timeout(vllm_server):
    server, handler = vllm_server
    handler.answers["/v1/models"] = (200, MODELS, 0.4)
    with pytest.raises(OSError):
        H.vllm_models(server.url, timeout=0.1)


def test_vllm_is_ready_when_health_answers_and_the_served_name_is_listed(vllm_server):
    server, handler = vllm_server
    assert H.vllm_check(server.url, "org/m", "k") == (True, "healthy", [{"id": "org/m", "root": "/models/m"}])
    assert H.vllm_check(server.url) == (True, "healthy", [{"id": "org/m", "root": "/models/m"}])
    assert handler.seen[:2] == [("GET", "/health", None), ("GET", "/v1/models", "Bearer k")], "/health needs no key"
    ok, reason, models = H.vllm_check(server.url, "other")
    assert (ok, reason) == (False, "/v1/models lists ['org/m'], not 'other'") and models[0]["id"] == "org/m"
    handler.answers["/v1/models"] = (401, b'{"error": "Unauthorized"}', 0)
    assert H.vllm_check(server.url, "org/m") == (
        False, "vLLM /v1/models answered 401 (wrong or missing api_key): Unauthorized", [])
    handler.answers["/health"] = (503, b"", 0)
    assert H.vllm_check(server.url, "org/m") == (False, f"GET {server.url}/health answered 503", [])


def test_an_unanswered_health_check_gives_the_reason_and_gives_up_after_its_timeout(vllm_server):
    url = H.base_url("127.0.0.1", free_port())
    assert H.vllm_check(url, "x", timeout=1) == (False, f"GET {url}/health: [Errno 111] Connection refused", [])
    server, handler = vllm_server
    handler.answers["/health"] = (200, b"", 0.4)
    ok, reason, models = H.vllm_check(server.url, "org/m", timeout=0.1)
    assert (ok, models) == (False, []) and reason == f"GET {server.url}/health: timed out"
    handler.answers["/health"] = (200, b"", 0)
    handler.answers["/v1/models"] = (200, MODELS, 0.4)
    assert H.vllm_check(server.url, "org/m", timeout=0.1) == (False, f"GET {server.url}/v1/models: timed out", [])


class _Ollama:
    """An Ollama client that answers from a list of loaded models (``loaded=None``: /api/ps fails)."""

    def __init__(self, loaded):
        self.models = loaded

    def version(self):
        return "0.5.1"

    def loaded(self):
        if self.models is None:
            raise RuntimeControlError("/api/ps failed")
        return self.models


def test_ollama_is_up_when_it_answers_and_a_model_is_loaded_when_ps_lists_it():
    assert H.ollama_check(_Ollama(None)) == (True, "healthy (Ollama 0.5.1)"), "no model asked: /api/ps not needed"
    assert H.ollama_check(_Ollama(["a:latest"]), "a:latest") == (True, "healthy (Ollama 0.5.1)")
    assert H.ollama_check(_Ollama(["a:latest"]), "b:latest") == (False, "/api/ps lists ['a:latest'], not 'b:latest'")
    assert H.ollama_check(_Ollama(None), "a:latest") == (False, "/api/ps failed")


def test_vllm_is_healthy_only_serving_the_activations_model_from_its_path(models_dir, vllm_server):
    server, handler = vllm_server
    c = RuntimeController(RuntimeSpec(name="vllm", models_dir=models_dir, mode="process", port=server.port,
                                      api_key="k"))
    right = Activation(model="m", model_path="/models/m", served_model_name="org/m")
    assert c.engine.health(right) == (True, "healthy")
    assert handler.seen[-1] == ("GET", "/v1/models", "Bearer k")
    wrong = Activation(model="m", model_path="/models/other", served_model_name="org/m")
    assert c.engine.health(wrong) == (False, "'org/m' is served from /models/m, not /models/other")
    assert c.engine.health(Activation(model_path="/models/x", served_model_name="other"))[0] is False
    assert c.engine.health(None) == (True, "healthy"), "no activation: the server answers"
    handler.answers["/v1/models"] = (200, json.dumps({"data": [{"id": "org/m"}]}).encode(), 0)
    assert c.engine.health(wrong) == (True, "healthy"), "a server that does not say its root is believed"
    handler.answers["/v1/models"] = (200, MODELS, 0.4)
    assert c.engine.health(right, timeout=0.1)[0] is False


def test_the_wait_reports_its_seconds_to_the_millisecond_and_a_zero_timeout_checks_once(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(H, "time", clock)
    answers = iter([(False, "loading"), (True, "healthy")])
    res = H.wait_ready(lambda: next(answers), timeout=10, what="vLLM", interval=0.01)
    assert res["reason"] == "healthy" and isinstance(res["seconds"], float)
    assert res["seconds"] == round(res["seconds"], 3) and 0 < res["seconds"] < 1
    assert clock.sleeps == [0.01]
    checks = []
    with pytest.raises(RuntimeControlError) as err:
        H.wait_ready(lambda: checks.append(1) or (False, "no"), timeout=0, what="vLLM")
    assert checks == [1], "a zero timeout: one check, no wait"
    assert err.value.msg == "vLLM did not become healthy within 0s (last check: no)."
    assert err.value.details["seconds"] == round(2 * 0.12345, 3) and err.value.details["log_tail"] == []


@pytest.mark.parametrize("timeout,interval,first_sleep", [
    (10, 0.5, 0.5),                      # the interval
    (0.3, 0.5, 0.3 - 2 * 0.12345),       # no longer than the time left
    (0.2, 0.5, 0.01),                    # none left at the last look: a short pause before the last check
])
def test_the_wait_between_checks_is_the_interval_but_never_past_the_deadline(
        monkeypatch, timeout, interval, first_sleep):
    clock = FakeClock()
    monkeypatch.setattr(H, "time", clock)
    answers = iter([(False, "loading"), (True, "healthy")])
    H.wait_ready(lambda: next(answers), timeout=timeout, what="vLLM", interval=interval)
    assert clock.sleeps == [pytest.approx(first_sleep)]
