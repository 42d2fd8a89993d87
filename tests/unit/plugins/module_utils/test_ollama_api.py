# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one Ollama API client and the HTTP layer under it, against a real loopback server:
error texts (an Ollama ``{"error": ...}`` body, a body that is not JSON, a server that is not
there), the retry of an idempotent GET and no retry of a POST, the standard-library transport."""
from __future__ import annotations

import json

import pytest

from ansible_collections.venom.models.plugins.module_utils import httpclient
from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ProviderError, RuntimeControlError
from ansible_collections.venom.models.plugins.module_utils.models.ollama_api import OllamaClient
from ansible_collections.venom.models.plugins.module_utils.runtimes import health as H
from tests.lib.ports import free_port
from tests.lib.servers import LocalHTTPServer, QuietHandler


def _server(script: dict):
    """A server answering ``script[(method, path)]``: a list of (status, body) used in turn, the
    last one repeated; ``None`` as a status drops the connection without an answer. Every request
    is counted in ``server.seen``."""
    seen = []

    class Handler(QuietHandler):
        def _answer(self):
            key = (self.command, self.path)
            seen.append(key)
            n = sum(1 for s in seen if s == key)
            answers = script.get(key) or [(404, b'{"error":"not found"}')]
            status, body = answers[min(n, len(answers)) - 1]
            if status is None:
                self.close_connection = True
                self.connection.shutdown(2)  # no status line: a connection the server dropped
                return
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_DELETE = do_HEAD = _answer

    srv = LocalHTTPServer(Handler)
    srv.seen = seen
    return srv


VERSION = (200, b'{"version":"0.33.0"}')


def test_error_text_reads_ollama_and_openai_bodies_and_falls_back_to_the_status():
    assert httpclient.error_text(b'{"error":"model \\"x\\" not found, try pulling it first"}', 404) == \
        'model "x" not found, try pulling it first'
    assert httpclient.error_text(b'{"error":{"message":"The model `y` does not exist.","type":"NotFound"}}', 404) == \
        "The model `y` does not exist."
    assert httpclient.error_text(b"  <html>502 Bad Gateway</html>\n", 502) == "<html>502 Bad Gateway</html>"
    assert httpclient.error_text(b"x" * 5000, 500) == "x" * httpclient.ERROR_TEXT_LIMIT
    assert httpclient.error_text(b"", 503) == "HTTP 503"
    assert httpclient.timeouts(900.0) == (httpclient.CONNECT_TIMEOUT, 900.0) and httpclient.timeouts(1.0) == (1.0, 1.0)


def test_an_ollama_error_body_is_the_error_text():
    with _server({("POST", "/api/show"): [(404, b'{"error":"model \'ghost:latest\' not found"}')],
                  ("GET", "/api/tags"): [(500, b'{"error":"mmap failed: no space left"}')]}) as srv:
        client = OllamaClient(srv.url)
        with pytest.raises(NotFoundError, match="has no model ghost:latest: model 'ghost:latest' not found"):
            client.show("ghost:latest")
        with pytest.raises(ProviderError) as err:
            client.tags()
    assert err.value.msg == (f"The Ollama server at {srv.url} answered GET /api/tags: HTTP 500: "
                             "mmap failed: no space left.")
    assert "journalctl -u ollama" in err.value.fix


def test_a_body_that_is_not_json_is_named_as_such():
    with _server({("GET", "/api/ps"): [(500, b"<html>upstream exploded</html>")],
                  ("GET", "/api/version"): [(200, b"<html>a web server</html>")]}) as srv:
        client = OllamaClient(srv.url, error=RuntimeControlError, retries=0)
        with pytest.raises(RuntimeControlError, match=r"answered GET /api/ps: HTTP 500: <html>upstream exploded</html>\."):
            client.ps()
        with pytest.raises(RuntimeControlError, match=r"did not answer /api/version with a JSON object; is it an Ollama server"):
            client.version()
        ok, reason = H.ollama_check(client)
    assert ok is False and "is it an Ollama server" in reason


def test_a_server_that_is_not_there_is_named_with_its_url():
    url = f"http://127.0.0.1:{free_port()}"
    client = OllamaClient(url, timeout=2, retries=0)
    with pytest.raises(ProviderError) as err:
        client.tags()
    assert err.value.msg.startswith(f"The Ollama server at {url} cannot be reached (GET {url}/api/tags: ConnectionError")
    assert "Start the Ollama server" in err.value.fix


@pytest.mark.parametrize("first", [(503, b'{"error":"starting"}'), (None, b"")], ids=["503", "dropped"])
def test_a_get_is_retried_once_it_failed(first):
    with _server({("GET", "/api/version"): [first, VERSION]}) as srv:
        assert OllamaClient(srv.url).version() == "0.33.0"
    assert srv.seen == [("GET", "/api/version")] * 2


def test_a_get_that_keeps_failing_gives_up_after_the_retries_with_the_last_answer():
    with _server({("GET", "/api/tags"): [(503, b'{"error":"still starting"}')]}) as srv:
        with pytest.raises(ProviderError, match="HTTP 503: still starting"):
            OllamaClient(srv.url).tags()
    assert len(srv.seen) == 1 + httpclient.GET_RETRIES


def test_a_post_is_not_retried():
    with _server({("POST", "/api/generate"): [(503, b'{"error":"busy"}'), (200, b'{"done":true}')]}) as srv:
        with pytest.raises(RuntimeControlError, match=r"Ollama could not load 'm:latest': HTTP 503: busy"):
            OllamaClient(srv.url, error=RuntimeControlError).keep_alive("m:latest", -1)
    assert srv.seen == [("POST", "/api/generate")]


def test_the_standard_library_transport_answers_alike():
    """A runtime host without requests: the same calls and error texts over urllib (no retries)."""
    tags = json.dumps({"models": [{"name": "llama3:latest", "digest": "d1"}]}).encode()
    with _server({("GET", "/api/version"): [VERSION], ("GET", "/api/tags"): [(200, tags)],
                  ("GET", "/api/ps"): [(200, b'{"models":[{"name":"llama3:latest"}]}')],
                  ("POST", "/api/generate"): [(404, b'{"error":"model \'x:latest\' not found"}')]}) as srv:
        client = OllamaClient(srv.url, error=RuntimeControlError)
        client.session = None  # what the constructor leaves when requests cannot be imported
        assert client.version() == "0.33.0"
        assert client.find("LIBRARY/llama3")["digest"] == "d1" and client.find("llama3:8b") is None
        assert H.ollama_check(client, "llama3:latest") == (True, "healthy (Ollama 0.33.0)")
        with pytest.raises(NotFoundError, match=r"could not load 'x:latest' \(HTTP 404\): model 'x:latest' not found"):
            client.keep_alive("x:latest", "5m")
    gone = OllamaClient(srv.url, error=RuntimeControlError)
    gone.session = None
    with pytest.raises(RuntimeControlError, match=rf"cannot be reached \(GET {srv.url}/api/version: URLError"):
        gone.version()
