# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The HTTP layer the runtime and Ollama clients share: one error text, one timeout rule, retries.

* ``http``: one request with the standard library (``urllib``, never through a proxy). The health
  checks use it, so ``venom_runtime`` works on a host whose Python has no ``requests``.
* ``retrying_session``: a ``requests`` session whose idempotent requests (GET, HEAD) are retried
  by urllib3's own ``Retry`` (connection errors and 502/503/504, with backoff). POST, PUT and
  DELETE are never retried here: a streaming pull resumes by itself when run again.
* ``timeouts``: the (connect, read) pair ``requests`` takes.
* ``error_text``: what an HTTP error answer says: the ``error`` of a JSON body (a string, as
  Ollama sends, or ``{"message": ...}``, as vLLM's OpenAI API sends), else the start of the body,
  else ``HTTP <status>``.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry
    REQUESTS_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    requests = HTTPAdapter = Retry = None
    REQUESTS_IMPORT_ERROR = _exc

CONNECT_TIMEOUT = 5.0  # seconds to open a connection; the read timeout is the caller's
GET_RETRIES = 2  # retries of an idempotent request after the first try
RETRY_BACKOFF = 0.2  # seconds; doubled per retry (urllib3's backoff_factor)
RETRY_STATUS = (502, 503, 504)  # answers of a proxy or a server not ready yet: worth one more try
IDEMPOTENT = frozenset({"GET", "HEAD"})
ERROR_TEXT_LIMIT = 300

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def json_body(body):
    """The JSON document of ``body`` (bytes or text), or None if it is not JSON."""
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


def error_text(body, status: int | None = None) -> str:
    """What an error answer says (see the module's docstring); never empty."""
    doc = json_body(body)
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err:
            return str(err)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return text.strip()[:ERROR_TEXT_LIMIT] or f"HTTP {status}"


def timeouts(read: float, connect: float = CONNECT_TIMEOUT) -> tuple:
    """(connect, read) for ``requests``; the connect timeout is never longer than the read one."""
    return (min(connect, read), read)


def http(method: str, url: str, body=None, headers: dict | None = None, timeout: float = 5.0,
         context=None) -> tuple[int, bytes]:
    """One request (standard library); returns (status, body). Connection errors raise OSError (URLError).

    ``body`` is sent as JSON; ``context`` is the SSLContext of an https URL.
    """
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    opener = _OPENER if context is None else urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() or b""


def retrying_session(trust_env: bool = False, retries: int = GET_RETRIES, backoff: float = RETRY_BACKOFF):
    """A ``requests.Session`` that retries idempotent requests (``IDEMPOTENT``) with urllib3's ``Retry``.

    ``trust_env`` false: no proxy or netrc from the environment (a server on this host or the
    fleet's own network). An answer that is still an error after the retries is returned, not raised.
    """
    if requests is None:
        raise ImportError("requests is not installed") from REQUESTS_IMPORT_ERROR
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0, backoff_factor=backoff,
                  status_forcelist=RETRY_STATUS, allowed_methods=IDEMPOTENT, raise_on_status=False,
                  respect_retry_after_header=False)
    session = requests.Session()
    session.trust_env = trust_env
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
