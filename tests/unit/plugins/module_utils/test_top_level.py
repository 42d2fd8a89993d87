# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The top-level helpers of module_utils: errors, timestamps, the module glue and the HTTP layer
(pinned for the mutation run of the ``top`` subsystem, issue 20). The HTTP tests use a real
server on 127.0.0.1."""
from __future__ import annotations

import datetime
import http.server
import json
import socket
import ssl
import threading
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils import httpclient
from ansible_collections.venom.models.plugins.module_utils import module_support as ms
from ansible_collections.venom.models.plugins.module_utils.errors import MissingDependencyError, ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso, parse_iso, utcnow

from tests.lib.private_ca import make_private_ca
from tests.lib.servers import LocalHTTPServer

UTC = datetime.timezone.utc


def test_an_error_reads_as_its_message_and_its_fix():
    err = ValidationError("Bad name.", fix="Use another.", option="name")
    assert str(err) == "Bad name. Fix: Use another." and err.args == ("Bad name. Fix: Use another.",)
    assert err.to_dict() == {"error": "ValidationError", "msg": "Bad name.", "fix": "Use another.",
                             "details": {"option": "name"}}
    plain = VenomError("Nothing to fix.")
    assert str(plain) == "Nothing to fix." and plain.fix is None and plain.details == {}
    assert plain.to_dict() == {"error": "VenomError", "msg": "Nothing to fix."}


def test_a_missing_package_names_itself_the_purpose_and_the_install_command():
    err = MissingDependencyError("psutil", "to measure memory", ImportError("No module named 'psutil'"))
    assert isinstance(err, VenomError) and err.package == "psutil"
    assert err.msg == ("The Python package 'psutil' is required to measure memory but cannot be imported "
                       "(No module named 'psutil').")
    assert err.fix == "Install it for the Python that runs the module, e.g. 'python3 -m pip install psutil'."
    assert MissingDependencyError("x", "here").msg == "The Python package 'x' is required here but cannot be imported."


def test_timestamps_are_utc_milliseconds_with_z():
    ts = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert iso(ts) == "2026-01-02T01:04:05.678Z"
    now = iso()
    assert now.endswith("Z") and abs((parse_iso(now) - utcnow()).total_seconds()) < 5
    assert utcnow().tzinfo is not None and utcnow().utcoffset() == datetime.timedelta(0)


def test_timestamps_are_utc_whatever_the_local_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert iso(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_parsing_timestamps_with_z_an_offset_or_none():
    assert parse_iso("2026-01-02T01:04:05.678Z") == datetime.datetime(2026, 1, 2, 1, 4, 5, 678000, tzinfo=UTC)
    naive = parse_iso("2026-01-02T01:04:05")
    assert naive.tzinfo is UTC and naive == datetime.datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    offset = parse_iso("2026-01-02T03:04:05+02:00")
    assert offset.utcoffset() == datetime.timedelta(hours=2) and offset == naive


class FakeModule:
    def __init__(self, **params):
        self.params = params
        self.no_log_values = set()
        self.failed = None
        self.warnings = []

    def fail_json(self, **kwargs):
        self.failed = kwargs

    def warn(self, text):
        self.warnings.append(text)


def test_a_failed_task_carries_the_error_fix_details_and_extras():
    module = FakeModule()
    ms.fail_from(module, ValidationError("Bad.", fix="Fix it.", option="x"), changed=False)
    assert module.failed == {"msg": "Bad. Fix: Fix it.", "error": "ValidationError", "fix": "Fix it.",
                             "details": {"option": "x"}, "changed": False}
    ms.fail_from(module, VenomError("Plain."))
    assert module.failed == {"msg": "Plain.", "error": "VenomError"}


def test_the_common_options_and_their_defaults():
    assert ms.common_argument_spec()["quota_gb"] == {"type": "float"}
    spec = ms.common_argument_spec(extra={"type": "str"}, quota_gb={"type": "int"})
    assert spec == {
        "models_dir": {"type": "path", "default": ms.DEFAULT_MODELS_DIR},
        "lock_timeout": {"type": "float", "default": ms.DEFAULT_LOCK_TIMEOUT},
        "quota_gb": {"type": "int"},
        "reserve_gb": {"type": "float"},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "extra": {"type": "str"},
    }, "a module's own option of the same name wins"


def test_the_lookup_options():
    assert ms.lookup_argument_spec() == {
        "provider": {"type": "str", "choices": list(ms.LISTABLE_PROVIDERS), "default": "huggingface"},
        "endpoint": {"type": "str"},
        "search": {"type": "str"},
        "names": {"type": "list", "elements": "str", "default": []},
        "revision": {"type": "str"},
        "limit": {"type": "int", "default": ms.DEFAULT_LIMIT},
        "token": {"type": "str", "no_log": True},
    }


def lookup_params(**over):
    params = {"provider": "huggingface", "endpoint": "http://127.0.0.1:1", "search": "s", "names": ["a"],
              "revision": "main", "limit": 3, "token": None, "validate_certs": True, "ca_path": None}
    params.update(over)
    return params


def test_a_lookup_token_comes_from_the_option_or_hf_token_and_is_never_shown(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    module = FakeModule(**lookup_params())
    query = ms.lookup_query(module)
    assert query["token"] == "hf_env" and module.no_log_values == {"hf_env"}
    assert {k: query[k] for k in ("provider", "endpoint", "search", "names", "revision", "limit")} == {
        "provider": "huggingface", "endpoint": "http://127.0.0.1:1", "search": "s", "names": ["a"],
        "revision": "main", "limit": 3}
    assert set(query) == {"provider", "endpoint", "search", "names", "revision", "limit", "token", "tls"}
    module = FakeModule(**lookup_params(token="hf_opt"))
    assert ms.lookup_query(module)["token"] == "hf_opt" and module.no_log_values == {"hf_opt"}
    module = FakeModule(**lookup_params(provider="ollama", token="hf_opt"))
    assert ms.lookup_query(module)["token"] is None, "the token goes to Hugging Face only"
    assert module.no_log_values == {"hf_opt"}, "and is still never shown"
    monkeypatch.setenv("HF_TOKEN", "")
    module = FakeModule(**lookup_params())
    assert ms.lookup_query(module)["token"] is None and module.no_log_values == set()


def test_the_tls_settings_and_their_warnings():
    module = FakeModule(validate_certs=False, ca_path="/etc/ca.pem")
    tls = ms.module_tls(module)
    assert isinstance(tls, Tls) and tls.validate_certs is False and tls.ca_path == "/etc/ca.pem"
    tls.warnings = lambda: ["one", "two"]
    ms.tls_warnings(module, tls)
    assert module.warnings == ["one", "two"]


def test_json_bodies_and_error_texts():
    assert httpclient.json_body(b'{"a": 1}') == {"a": 1} and httpclient.json_body('[1]') == [1]
    assert httpclient.json_body(b"") is None and httpclient.json_body(None) is None
    assert httpclient.json_body(b"not json") is None
    assert httpclient.error_text(b'{"error": {"type": "x"}}') == "{'type': 'x'}"
    assert httpclient.error_text(b'{"error": ""}', 500) == '{"error": ""}'
    assert httpclient.error_text(b'["a"]', 500) == '["a"]'
    assert httpclient.error_text("  text body  ") == "text body"
    assert httpclient.error_text(None, 404) == "HTTP 404"
    assert httpclient.error_text(b"\xff", 500) == "\ufffd"
    assert httpclient.error_text(b"x" * 301, 500) == "x" * 300


def test_the_connect_timeout_is_never_longer_than_the_read_timeout():
    assert httpclient.timeouts(5.0) == (5.0, 5.0)
    assert httpclient.timeouts(5.5) == (5.0, 5.5) and httpclient.timeouts(4.5) == (4.5, 4.5)
    assert httpclient.timeouts(10.0, connect=2.0) == (2.0, 10.0)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):   # pylint: disable=arguments-differ
        pass

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):   # pylint: disable=invalid-name
        if self.path == "/missing":
            self._answer(404, b'{"error": "not here"}')
        elif self.path == "/empty-error":
            self._answer(500, b"")
        else:
            self._answer(200, json.dumps({"path": self.path, "x": self.headers.get("X-Test")}).encode())

    def do_POST(self):   # pylint: disable=invalid-name
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, json.dumps({"got": json.loads(data), "type": self.headers.get("Content-Type"),
                                      "method": self.command}).encode())

    do_PUT = do_POST


@pytest.fixture(name="server")
def fixture_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_one_request_returns_the_status_and_body_also_of_an_error(server):
    status, body = httpclient.http("GET", server + "/ok", headers={"X-Test": "1"}, timeout=5)
    assert status == 200 and json.loads(body) == {"path": "/ok", "x": "1"}
    assert httpclient.http("GET", server + "/missing") == (404, b'{"error": "not here"}')
    assert httpclient.http("GET", server + "/empty-error") == (500, b"")
    status, body = httpclient.http("POST", server + "/p", body={"k": [1]})
    assert status == 201 and json.loads(body) == {"got": {"k": [1]}, "type": "application/json", "method": "POST"}
    status, body = httpclient.http("POST", server + "/p", body=0, headers={"Content-Type": "text/x-json"})
    assert json.loads(body) == {"got": 0, "type": "text/x-json", "method": "POST"}, \
        "a falsy body is still sent; a given type kept"
    assert json.loads(httpclient.http("PUT", server + "/p", body=[])[1])["method"] == "PUT"
    with pytest.raises(OSError):
        httpclient.http("GET", "http://127.0.0.1:1/", timeout=2)


def test_a_retrying_session_retries_only_idempotent_requests():
    session = httpclient.retrying_session()
    assert session.trust_env is False
    for prefix in ("http://", "https://"):
        retry = session.get_adapter(prefix + "x").max_retries
        assert (retry.total, retry.connect, retry.read, retry.status, retry.other) == (2, 2, 2, 2, 0)
        assert retry.backoff_factor == 0.2 and tuple(retry.status_forcelist) == (502, 503, 504)
        assert set(retry.allowed_methods) == {"GET", "HEAD"} and retry.raise_on_status is False
        assert retry.respect_retry_after_header is False
    other = httpclient.retrying_session(trust_env=True, retries=0, backoff=1.5)
    retry = other.get_adapter("http://x").max_retries
    assert other.trust_env is True and retry.total == 0 and retry.backoff_factor == 1.5


def test_a_retrying_session_without_requests_says_so(monkeypatch):
    monkeypatch.setattr(httpclient, "requests", None)
    with pytest.raises(ImportError, match="requests is not installed"):
        httpclient.retrying_session()


def test_a_server_that_never_answers_is_given_up_after_the_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)   # connections queue, nothing is ever read or answered
        start = time.monotonic()
        with pytest.raises(OSError):
            httpclient.http("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.5)
        assert time.monotonic() - start < 5


def test_https_with_a_private_ca_uses_the_context_given_and_never_a_proxy(tmp_path, monkeypatch):
    pki = make_private_ca(str(tmp_path / "pki"))
    with LocalHTTPServer(Handler, tls=(pki["cert"], pki["key"])) as srv:
        url = f"{srv.url}/tls"
        for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(var, "http://127.0.0.1:1")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        status, body = httpclient.http("GET", url, context=ssl.create_default_context(cafile=pki["ca"]), timeout=5)
        assert status == 200 and json.loads(body)["path"] == "/tls"
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            httpclient.http("GET", url, timeout=5)   # no context: the host's trust store, which lacks the CA
