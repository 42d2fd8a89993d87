# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A rate-limiting HTTP reverse proxy on loopback, in front of a real server (olah in the tests).

``ThrottleProxy(upstream, rate)`` forwards every request to ``upstream`` (method, path, headers,
body) and sends the answer back at no more than ``rate`` bytes per second (per response), so a
small model downloads for as long as a test needs to watch it. With ``tls`` (the certificate and key
of tests/lib/private_ca.py) it serves HTTPS as ``https://localhost:PORT``: a TLS-terminating
reverse proxy signed by a private CA (``rate=None``: no limit). Redirects that name the upstream
are rewritten to the proxy, so nothing bypasses the throttle. Responses are HTTP/1.0 (the
connection closes after each), the simplest framing for bodies of unknown length.
"""
from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.parse

from tests.lib.servers import LocalHTTPServer, QuietHandler

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class ThrottleProxy(LocalHTTPServer):
    """Start with ``start()`` (or as a context manager); ``endpoint`` is its base URL."""

    def __init__(self, upstream: str, rate: int | None, chunk: int = 16 * 1024, tls: dict | None = None):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.rate = rate  # None: no limit
        self.chunk = chunk
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self.tls = tls
        super().__init__(self._handler())
        if tls:  # tests/lib/private_ca.py's paths: serve HTTPS (the handshake runs in the handler's thread)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["cert"], tls["key"])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
            self.server.handle_error = lambda *args: None  # a client that refuses the certificate: not our error

    @property
    def endpoint(self) -> str:
        if self.tls:
            return f"https://localhost:{self.port}"
        return self.url

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def _handler(self):
        proxy = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    self.send_response(resp.status, resp.reason)
                    for key, value in resp.getheaders():
                        if key.lower() in _HOP:
                            continue
                        if key.lower() == "location":
                            value = value.replace(f"{proxy.upstream.scheme}://{proxy.upstream.netloc}", proxy.endpoint)
                        self.send_header(key, value)
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    t0, sent = time.monotonic(), 0
                    while True:
                        data = resp.read(proxy.chunk)
                        if not data:
                            break
                        self.wfile.write(data)
                        sent += len(data)
                        proxy._count(len(data))
                        ahead = sent / proxy.rate - (time.monotonic() - t0) if proxy.rate else 0
                        if ahead > 0:
                            time.sleep(ahead)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass
                finally:
                    conn.close()

            do_GET = do_HEAD = do_POST = _forward

        return Handler
