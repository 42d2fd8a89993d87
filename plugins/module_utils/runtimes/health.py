# SPDX-License-Identifier: GPL-3.0-or-later
"""Readiness of the runtimes, read from their own HTTP endpoints.

* vLLM is ready when ``GET /health`` answers 200 and ``GET /v1/models`` lists the served name
  (``/v1/*`` carries the API key when one is set); standard library only (``httpclient.http``).
* Ollama is up when ``GET /api/version`` answers; a model is loaded when ``GET /api/ps`` lists it.
  The calls go through the one Ollama client (``models/ollama_api.py``), which works without
  ``requests`` too.

``wait_ready`` polls a check until it passes, the runtime dies, or the timeout expires; the error
then carries the last lines of the runtime's log. Requests never go through a proxy: the runtime
is on this host.
"""
from __future__ import annotations

import time

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError, VenomError
from ansible_collections.venom.models.plugins.module_utils.httpclient import error_text, http, json_body


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


# ---------------------------------------------------------------------------------------------
# vLLM


def vllm_models(url: str, api_key: str | None = None, timeout: float = 5.0) -> list[dict]:
    """The ``data`` of ``/v1/models`` (raises RuntimeControlError on an error answer)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    status, body = http("GET", f"{url}/v1/models", headers=headers, timeout=timeout)
    if status != 200:
        hint = " (wrong or missing api_key)" if status == 401 else ""
        raise RuntimeControlError(f"vLLM /v1/models answered {status}{hint}: {error_text(body, status)}")
    doc = json_body(body)
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


def ollama_check(client, model: str | None = None) -> tuple[bool, str]:
    """(ready, reason): the server answers /api/version and, if given, lists ``model`` in /api/ps.

    ``client``: the runtime's ``OllamaClient`` (models/ollama_api.py), which knows URL and timeout.
    """
    try:
        version = client.version()
        loaded = client.loaded() if model else []
    except VenomError as exc:
        return False, exc.msg
    if model and model not in loaded:
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
