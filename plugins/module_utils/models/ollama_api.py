# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one client of the Ollama HTTP API, for the Ollama provider and the Ollama runtime alike.

One place for the server's URLs, JSON decoding, (connect, read) timeouts and error texts
(``httpclient.error_text``). With ``requests`` installed, GET and HEAD go through a session that
retries them (urllib3 ``Retry``: connection errors, 502/503/504); the streaming ``POST /api/pull``
is never retried (run again, Ollama resumes it). Without ``requests`` (a runtime host whose Python
has only the standard library) every call but ``pull`` works over ``urllib``, without retries:
the health checks are polled anyway.

Errors are raised as ``error`` (the caller's VenomError class: ProviderError for ``venom_model``,
RuntimeControlError for ``venom_runtime``); a model the server does not have is a NotFoundError.
"""
from __future__ import annotations

import json
import re

from ansible_collections.venom.models.plugins.module_utils import httpclient
from ansible_collections.venom.models.plugins.module_utils.errors import (
    IntegrityError, MissingDependencyError, NotFoundError, ProviderError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.store.validation import model_key

requests = httpclient.requests

DEFAULT_ENDPOINT = "http://127.0.0.1:11434"
DEFAULT_TIMEOUT = 30.0  # seconds to read an answer of the API
DEFAULT_PULL_READ_TIMEOUT = 900.0  # seconds without a line from the server (verifying a huge blob is silent)
SERVER_LOG = "See the Ollama server log (journalctl -u ollama)."
SERVER_FIX = ("Start the Ollama server (the venom.models.ollama role, or venom.models.venom_runtime name=ollama) "
              "or set 'endpoint' to the address it listens on.")


def require_requests(purpose: str = "to talk to the Ollama server") -> None:
    if requests is None:
        raise MissingDependencyError("requests", purpose, httpclient.REQUESTS_IMPORT_ERROR)


def pull_error(name: str, error: str, registry_host: str) -> Exception:
    """The VenomError for an ``{"error": ...}`` line of a pull, with the way out."""
    text = f"Ollama could not pull {name}: {error}."
    if "file does not exist" in error:
        return NotFoundError(f"Ollama found no model {name} in the registry {registry_host} ({error}). Nothing was installed.",
                             fix="Check the model name and tag (for the default registry, on ollama.com/library).")
    if "insecure protocol" in error or "HTTP response to HTTPS client" in error:
        return ProviderError(text, fix="The registry speaks plain HTTP: set 'insecure: true' (only for a registry you trust).")
    if "digest mismatch" in error:
        return IntegrityError(text, fix="Ollama removed the damaged layer; run the task again to download it again.")
    if "no space left" in error.lower():
        return ProviderError(text, fix="Free space in the Ollama store (models_path) or remove models with state=absent.")
    if "max retries exceeded" in error or "connection refused" in error or "no such host" in error or "timeout" in error:
        return ProviderError(text, fix="Check that the Ollama host reaches the registry (network, proxy, DNS); run the "
                                       "task again to resume: Ollama keeps what it downloaded.")
    return ProviderError(text, fix="See the Ollama server log (journalctl -u ollama) for the cause.")


class OllamaClient:
    """A client of one Ollama server's HTTP API (``endpoint``: ``http(s)://HOST:PORT``)."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = DEFAULT_TIMEOUT,
                 pull_read_timeout: float = DEFAULT_PULL_READ_TIMEOUT, tls: Tls | None = None,
                 error: type = ProviderError, retries: int = httpclient.GET_RETRIES):
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        if not re.match(r"^https?://", self.endpoint):
            raise ValidationError(f"The Ollama endpoint {endpoint!r} is not an http(s) URL.",
                                  fix="Give it as http://HOST:PORT, e.g. http://127.0.0.1:11434.")
        self.timeout = timeout
        self.pull_read_timeout = pull_read_timeout
        self.error = error
        self.tls = tls or Tls()
        # the server is local or on the fleet's network: never through a proxy from the environment
        self.session = httpclient.retrying_session(retries=retries) if requests is not None else None
        if self.session is not None:
            self.tls.quiet_requests()
        self.tls.contacting(self.endpoint)

    # -- the transport ----------------------------------------------------------------------------
    def _unreachable(self, exc: BaseException, method: str, path: str) -> Exception:
        cert = self.tls.certificate_error(exc, self.endpoint, f"The Ollama server at {self.endpoint}")
        if cert is not None:
            return cert
        reason = getattr(exc, "reason", None) or exc
        return self.error(f"The Ollama server at {self.endpoint} cannot be reached ({method} {self.endpoint}{path}: "
                          f"{type(exc).__name__}: {reason}).", fix=SERVER_FIX)

    def _send(self, method: str, path: str, body=None, timeout: float | None = None) -> tuple[int, bytes]:
        """One request; (status, body). A connection failure raises ``self.error`` naming the URL."""
        read = self.timeout if timeout is None else timeout
        url = self.endpoint + path
        try:
            if self.session is not None:
                resp = self.session.request(method, url, json=body, timeout=httpclient.timeouts(read),
                                            verify=self.tls.requests_verify())
                return resp.status_code, resp.content
            context = self.tls.ssl_context() if url.startswith("https:") else None
            return httpclient.http(method, url, body, timeout=read, context=context)
        except OSError as exc:  # requests.RequestException is an OSError, as urllib's URLError
            raise self._unreachable(exc, method, path) from None

    def _decode(self, path: str, body: bytes):
        doc = httpclient.json_body(body)
        if not isinstance(doc, dict):
            raise self.error(f"The server at {self.endpoint} did not answer {path} with a JSON object; is it an Ollama "
                             "server?", fix=SERVER_FIX)
        return doc

    def _failed(self, what: str, status: int, body: bytes) -> Exception:
        return self.error(f"{what}: HTTP {status}: {httpclient.error_text(body, status)}.", fix=SERVER_LOG)

    def _json(self, method: str, path: str, body=None, timeout: float | None = None) -> dict:
        status, data = self._send(method, path, body, timeout)
        if status != 200:
            raise self._failed(f"The Ollama server at {self.endpoint} answered {method} {path}", status, data)
        return self._decode(path, data)

    # -- the API ----------------------------------------------------------------------------------
    def version(self) -> str:
        return str(self._json("GET", "/api/version").get("version", ""))

    def tags(self) -> list:
        models = self._json("GET", "/api/tags").get("models")
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    def find(self, name: str) -> dict | None:
        """The /api/tags entry of ``name`` (the same model under Ollama's naming rule, ``model_key``)."""
        want = model_key(name, "ollama")
        for m in self.tags():
            if any(model_key(str(m.get(key) or ""), "ollama") == want for key in ("model", "name")):
                return m
        return None

    def ps(self) -> list:
        models = self._json("GET", "/api/ps").get("models")
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    def loaded(self) -> list:
        """Names of the models the server has in memory now (``/api/ps``)."""
        return [m.get("name") or m.get("model") for m in self.ps()]

    def show(self, name: str) -> dict:
        status, data = self._send("POST", "/api/show", {"model": name})
        if status == 404:
            raise NotFoundError(f"The Ollama server has no model {name}: {httpclient.error_text(data, status)}.",
                                fix="Install it with venom_model state=present provider=ollama.")
        if status != 200:
            raise self._failed(f"Ollama could not show {name}", status, data)
        return self._decode("/api/show", data)

    def blob_exists(self, digest: str) -> bool:
        status, _data = self._send("HEAD", f"/api/blobs/{digest}")
        if status in (200, 404):
            return status == 200
        raise self.error(f"The Ollama server answered HEAD /api/blobs/{digest} with HTTP {status}.", fix=SERVER_LOG)

    def delete(self, name: str) -> bool:
        """Delete ``name``; False when the server does not have it (404)."""
        status, data = self._send("DELETE", "/api/delete", {"model": name})
        if status == 404:
            return False
        if status != 200:
            raise self._failed(f"Ollama could not delete {name}", status, data)
        return True

    def keep_alive(self, model: str, keep_alive, timeout: float | None = None) -> None:
        """Load (``keep_alive`` not 0) or unload (0) ``model`` without a prompt (``POST /api/generate``)."""
        action = "unload" if keep_alive in (0, "0", "0s") else "load"
        status, data = self._send("POST", "/api/generate", {"model": model, "keep_alive": keep_alive, "stream": False},
                                  timeout)
        if status == 404:
            raise NotFoundError(f"Ollama could not {action} '{model}' (HTTP 404): {httpclient.error_text(data, status)}",
                                fix="Install the model first with venom.models.venom_model (provider ollama).")
        if status != 200:
            raise self._failed(f"Ollama could not {action} '{model}'", status, data)
        doc = httpclient.json_body(data)
        if isinstance(doc, dict) and doc.get("error"):
            raise self.error(f"Ollama could not {action} '{model}': {doc['error']}", fix=SERVER_LOG)

    def pull(self, name: str, insecure: bool = False, on_line=None, registry_host: str = "") -> dict:
        """``POST /api/pull`` streaming; ``on_line(dict)`` for every progress line; the last line.

        An ``{"error": ...}`` line, an HTTP error, or a stream that ends without ``success``
        (the connection dropped, the server stopped) raises a VenomError. Never retried here.
        """
        require_requests("to pull a model through the Ollama server")
        body = {"model": name, "insecure": bool(insecure), "stream": True}
        try:
            with httpclient.retrying_session(retries=0) as once:
                resp = once.post(self.endpoint + "/api/pull", json=body, stream=True,
                                 timeout=httpclient.timeouts(self.pull_read_timeout, self.timeout),
                                 verify=self.tls.requests_verify())
                return self._pull_lines(name, resp, on_line, registry_host)
        except requests.RequestException as exc:
            raise self._unreachable(exc, "POST", "/api/pull") from None

    def _pull_lines(self, name: str, resp, on_line, registry_host: str) -> dict:
        last: dict = {}
        with resp:
            if resp.status_code != 200:
                raise pull_error(name, httpclient.error_text(resp.content, resp.status_code), registry_host)
            try:
                for raw in resp.iter_lines():
                    if not raw:
                        continue
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        raise ProviderError(f"Ollama sent a line that is not JSON while pulling {name}: {raw[:200]!r}.",
                                            fix="Check that the endpoint is an Ollama server.") from None
                    if not isinstance(line, dict):
                        continue
                    if line.get("error"):
                        raise pull_error(name, str(line["error"]), registry_host)
                    last = line
                    if on_line is not None:
                        on_line(line)
            except requests.RequestException as exc:
                raise ProviderError(
                    f"The connection to the Ollama server dropped while pulling {name} "
                    f"(last status: {last.get('status', 'none')!r}; {type(exc).__name__}).",
                    fix="Run the task again: Ollama keeps the partial download and resumes it.") from None
        if last.get("status") != "success":
            raise ProviderError(
                f"The Ollama server ended the pull of {name} before it finished (last status: {last.get('status', 'none')!r}).",
                fix="Run the task again: Ollama keeps the partial download and resumes it. If it keeps happening, "
                    "see the Ollama server log (journalctl -u ollama).")
        return last
