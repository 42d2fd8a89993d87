# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Starting and stopping the test servers (one way for all of them).

* ``LocalHTTPServer(handler)``: an HTTP server in this process, on a thread, on loopback (a fake
  upstream, a proxy, a file server); ``start``/``stop`` or a ``with`` block; ``url`` is its base URL.
* ``wait_http(url, timeout, exited=..., log=...)``: wait until a server started as a process
  answers, failing at once with its log when it exits first.
* ``stop_process(proc)``: SIGTERM, then SIGKILL after ``timeout`` seconds.
* ``wait_until(cond, timeout)``: poll a condition (a server's side effect, a process's state).

Standard library only: ``python -m tests.lib.olah_mirror`` (``make demo``) uses it outside the
test venv.
"""
from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request


class ServerNotReady(RuntimeError):
    """A server did not answer in time, or exited before it did."""


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that does not log every request to stderr."""

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass


class LocalHTTPServer:
    """``handler`` (a ``BaseHTTPRequestHandler`` class) served on ``host:port`` (0: a free port)."""

    def __init__(self, handler, host: str = "127.0.0.1", port: int = 0, tls: tuple | None = None):
        """``tls``: (certificate, key) files to serve HTTPS with (``url`` then starts with https)."""
        self.server = http.server.ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.server.server_address[0]}:{self.port}"

    def start(self) -> "LocalHTTPServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "LocalHTTPServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(cond, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``cond()`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def _log_tail(log: str | None, n: int = 3000) -> str:
    if not log or not os.path.exists(log):
        return ""
    with open(log, "rb") as fh:
        return fh.read()[-n:].decode("utf-8", "replace")


def wait_http(url: str, timeout: float, exited=None, log: str | None = None, ready=lambda status: status < 500,
              interval: float = 0.05, cafile: str | None = None) -> None:
    """Return once a GET of ``url`` answers with a status ``ready`` accepts (default: any below 500).

    ``exited()`` is the server's exit code, None while it runs (``Popen.poll``); ``log`` its log
    file, whose tail the error shows. ``cafile``: the CA an https server's certificate is verified
    with (a certificate that does not verify counts as not answering).
    """
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    deadline = time.monotonic() + timeout
    code = None
    while time.monotonic() < deadline:
        code = exited() if exited else None
        if code is not None:
            raise ServerNotReady(f"the server of {url} exited (code {code}) before it answered\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310 (loopback)
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            status = None
        if status is not None and ready(status):
            return
        time.sleep(interval)
    raise ServerNotReady(f"{url} did not answer within {timeout:g}s\n{_log_tail(log)}")


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """Stop a server started with ``subprocess.Popen``: SIGTERM, SIGKILL after ``timeout`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
