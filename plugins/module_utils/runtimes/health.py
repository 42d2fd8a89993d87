# SPDX-License-Identifier: GPL-3.0-or-later
"""Readiness of the runtimes, read from their own HTTP endpoints (standard library only).

* vLLM is ready when ``GET /health`` answers 200 and ``GET /v1/models`` lists the served name
  (``/v1/*`` carries the API key when one is set).
* Ollama is up when ``GET /api/version`` answers; a model is loaded when ``GET /api/ps`` lists it.
  ``POST /api/generate`` with no prompt loads a model (``keep_alive``), ``keep_alive: 0`` unloads it.

``wait_ready`` polls a check until it passes, the runtime dies, or the timeout expires; the error
then carries the last lines of the runtime's log. Requests never go through a proxy: the runtime
is on this host.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def base_url(host: str | None, port: int) -> str:
    """URL of a server bound to ``host:port`` as seen from this host."""
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{int(port)}"


def http(method: str, url: str, body=None, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request; returns (status, body). Connection errors raise OSError (URLError)."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() or b""


def _json(body: bytes):
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


def _error_text(body: bytes) -> str:
    doc = _json(body)
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err:
            return str(err)
    return body[:200].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# vLLM


def vllm_models(url: str, api_key: str | None = None, timeout: float = 5.0) -> list[dict]:
    """The ``data`` of ``/v1/models`` (raises RuntimeControlError on an error answer)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    status, body = http("GET", f"{url}/v1/models", headers=headers, timeout=timeout)
    if status != 200:
        hint = " (wrong or missing api_key)" if status == 401 else ""
        raise RuntimeControlError(f"vLLM /v1/models answered {status}{hint}: {_error_text(body)}")
    doc = _json(body)
    return [m for m in (doc or {}).get("data", []) if isinstance(m, dict)] if isinstance(doc, dict) else []


def vllm_check(url: str, served_name: str | None = None, api_key: str | None = None,
               timeout: float = 5.0) -> tuple[bool, str, list[dict]]:
    """(ready, reason, models): /health 200 and, if given, ``served_name`` in /v1/models."""
    try:
        status, _body = http("GET", f"{url}/health", timeout=timeout)
    except OSError as exc:
        return False, f"GET {url}/health: {getattr(exc, 'reason', exc)}", []
    if status != 200:
        return False, f"GET {url}/health answered {status}", []
    try:
        models = vllm_models(url, api_key, timeout)
    except OSError as exc:
        return False, f"GET {url}/v1/models: {getattr(exc, 'reason', exc)}", []
    except RuntimeControlError as exc:
        return False, exc.msg, []
    ids = [m.get("id") for m in models]
    if served_name and served_name not in ids:
        return False, f"/v1/models lists {ids}, not '{served_name}'", models
    return True, "healthy", models


# ---------------------------------------------------------------------------------------------
# Ollama


def ollama_version(url: str, timeout: float = 5.0) -> str | None:
    """The server's version, or None if it does not answer."""
    try:
        status, body = http("GET", f"{url}/api/version", timeout=timeout)
    except OSError:
        return None
    doc = _json(body)
    return doc.get("version") if status == 200 and isinstance(doc, dict) else None


def ollama_ps(url: str, timeout: float = 5.0) -> list[dict]:
    status, body = http("GET", f"{url}/api/ps", timeout=timeout)
    if status != 200:
        raise RuntimeControlError(f"Ollama /api/ps answered {status}: {_error_text(body)}")
    doc = _json(body)
    return [m for m in (doc or {}).get("models") or [] if isinstance(m, dict)] if isinstance(doc, dict) else []


def ollama_loaded(url: str, timeout: float = 5.0) -> list[str]:
    """Names of the models Ollama has in memory now."""
    return [m.get("name") or m.get("model") for m in ollama_ps(url, timeout)]


def ollama_generate_keep_alive(url: str, model: str, keep_alive, timeout: float) -> None:
    """Load (keep_alive != 0) or unload (keep_alive 0) ``model`` without a prompt."""
    try:
        status, body = http("POST", f"{url}/api/generate", {"model": model, "keep_alive": keep_alive, "stream": False},
                            timeout=timeout)
    except OSError as exc:
        raise RuntimeControlError(f"Ollama at {url} did not answer /api/generate for '{model}': "
                                  f"{getattr(exc, 'reason', exc)}.",
                                  fix="Check that the Ollama server runs (venom_runtime name=ollama state=started).") from None
    if status != 200:
        action = "unload" if keep_alive in (0, "0", "0s") else "load"
        fix = ("Install the model first with venom.models.venom_model (provider ollama)." if status == 404
               else "Read the Ollama server's log.")
        raise RuntimeControlError(f"Ollama could not {action} '{model}' (HTTP {status}): {_error_text(body)}", fix=fix)
    doc = _json(body)
    if isinstance(doc, dict) and doc.get("error"):
        raise RuntimeControlError(f"Ollama could not load '{model}': {doc['error']}", fix="Read the Ollama server's log.")


def ollama_check(url: str, model: str | None = None, timeout: float = 5.0) -> tuple[bool, str]:
    version = ollama_version(url, timeout)
    if version is None:
        return False, f"GET {url}/api/version did not answer"
    if model:
        try:
            loaded = ollama_loaded(url, timeout)
        except (OSError, RuntimeControlError) as exc:
            return False, str(exc)
        if model not in loaded:
            return False, f"/api/ps lists {loaded}, not '{model}'"
    return True, f"healthy (Ollama {version})"


# ---------------------------------------------------------------------------------------------
# waiting


def wait_ready(check, timeout: float, what: str, alive=None, log_tail=None, interval: float = 0.5,
               log_where: str = "the runtime's log") -> dict:
    """Call ``check() -> (ok, reason, ...)`` until ok; return {'seconds', 'reason'}.

    ``alive() -> bool`` (optional) stops the wait early when the runtime has exited;
    ``log_tail() -> list[str]`` supplies the log lines for the error.
    """
    t0 = time.monotonic()
    deadline = t0 + max(0.0, timeout)
    reason = "not checked yet"
    while True:
        result = check()
        ok, reason = result[0], result[1]
        if ok:
            return {"seconds": round(time.monotonic() - t0, 3), "reason": reason}
        if alive is not None and not alive():
            problem = f"{what} exited before it became healthy (last check: {reason})."
            break
        if time.monotonic() >= deadline:
            problem = f"{what} did not become healthy within {timeout:g}s (last check: {reason})."
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())) or 0.01)
    tail = list(log_tail() if log_tail else [])
    msg = problem + (f" Last lines of {log_where}:\n" + "\n".join(tail) if tail else "")
    raise RuntimeControlError(msg, fix="Read the log lines above; fix the model or the runtime's options, or raise "
                                       "health_timeout if the runtime is merely slow to load.",
                              log_tail=tail, seconds=round(time.monotonic() - t0, 3))
