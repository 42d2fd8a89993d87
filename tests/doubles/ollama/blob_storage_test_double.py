# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Blob storage TEST DOUBLE with fault injection, for tests only (Python standard library only).

Ollama's registry answers a blob GET with ``307 Temporary Redirect`` to object storage on another
host, and Ollama downloads the blob from there in ranged parts. The tests run the real OCI
registry (Debian's ``docker-registry``, the distribution registry) with its ``redirect`` storage
middleware, and this server plays the object storage: it serves the registry's own storage
directory (``/docker/registry/v2/blobs/sha256/<xx>/<hex>/data``) with ``HEAD``, ``GET`` and single
``Range`` requests, so the bytes are exactly the registry's.

Test-only control endpoints (JSON):

* ``GET /_test/faults`` shows, ``POST /_test/faults`` merges, ``POST /_test/reset`` clears faults
  and the request log. Faults: ``throttle_bps`` (bytes per second for every blob response, 0 =
  unthrottled); ``drop_after_bytes`` with ``drop_count`` (the next ``drop_count`` blob GETs send
  their headers with the full ``Content-Length`` and then close the connection after that many
  body bytes, as a dropped connection does); ``fail_status`` with ``fail_count`` (the next
  ``fail_count`` blob requests get that HTTP status).
* ``GET /_test/requests``: every blob request so far: method, path, Range header, status, bytes
  sent, whether it was dropped.

Usage: ``python blob_storage_test_double.py --root DIR --host 127.0.0.2 --port N``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Storage(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, root: str):
        self.root = os.path.realpath(root)
        self.lock = threading.Lock()
        self.faults: dict = {}
        self.requests: list = []
        super().__init__(addr, Handler)

    def take_fault(self, method: str) -> dict:
        """The faults that apply to this request, consuming counted ones."""
        with self.lock:
            f = self.faults
            out = {"throttle_bps": int(f.get("throttle_bps") or 0)}
            if f.get("fail_status") and int(f.get("fail_count", 1)) > 0:
                out["fail_status"] = int(f["fail_status"])
                f["fail_count"] = int(f.get("fail_count", 1)) - 1
            elif method == "GET" and f.get("drop_after_bytes") is not None and int(f.get("drop_count", 1)) > 0:
                out["drop_after_bytes"] = int(f["drop_after_bytes"])
                f["drop_count"] = int(f.get("drop_count", 1)) - 1
            return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "blob-storage-test-double"
    sys_version = ""
    server: Storage

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        sys.stderr.write("blob-storage-test-double: " + (format % args) + "\n")

    def _json(self, status: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self, **entry) -> None:
        with self.server.lock:
            self.server.requests.append(dict(entry, method=self.command, path=self.path, range=self.headers.get("Range")))

    def _control(self, path: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        srv = self.server
        if path == "/_test/faults" and self.command == "POST":
            with srv.lock:
                srv.faults.update(body)
        elif path == "/_test/reset" and self.command == "POST":
            with srv.lock:
                srv.faults.clear()
                srv.requests.clear()
        elif path == "/_test/requests" and self.command == "GET":
            with srv.lock:
                self._json(200, {"requests": list(srv.requests)})
            return
        elif not (path == "/_test/faults" and self.command == "GET"):
            self._json(404, {"error": "unknown control endpoint"})
            return
        with srv.lock:
            self._json(200, {"faults": dict(srv.faults)})

    def _route(self) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path.startswith("/_test/"):
            self._control(path)
            return
        if self.command not in ("GET", "HEAD"):
            self._json(405, {"error": "method not allowed"})
            return
        full = os.path.realpath(os.path.join(self.server.root, path.lstrip("/")))
        if not full.startswith(self.server.root + os.sep) or not os.path.isfile(full):
            self._record(status=404, sent=0, dropped=False)
            self._json(404, {"error": "no such blob"})
            return
        fault = self.server.take_fault(self.command)
        if "fail_status" in fault:
            self._record(status=fault["fail_status"], sent=0, dropped=False)
            self._json(fault["fail_status"], {"error": "injected failure (test only)"})
            return
        size = os.path.getsize(full)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = _RANGE_RE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._record(status=416, sent=0, dropped=False)
                self._json(416, {"error": "bad range"})
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._record(status=416, sent=0, dropped=False)
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            self._record(status=status, sent=0, dropped=False)
            return
        self._send_body(full, start, length, fault, status)

    def _send_body(self, full: str, start: int, length: int, fault: dict, status: int) -> None:
        bps = fault["throttle_bps"]
        limit = fault.get("drop_after_bytes")
        sent, dropped = 0, False
        began = time.monotonic()
        try:
            with open(full, "rb") as f:
                f.seek(start)
                while sent < length:
                    n = min(65536, length - sent)
                    if bps:
                        n = min(n, max(1024, bps // 20))
                    if limit is not None:
                        n = min(n, limit - sent)
                        if n <= 0:
                            dropped = True
                            break
                    buf = f.read(n)
                    if not buf:
                        break
                    self.wfile.write(buf)
                    sent += len(buf)
                    if bps:
                        ahead = sent / bps - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)
            self.wfile.flush()
        except OSError:
            dropped = True
        self._record(status=status, sent=sent, dropped=dropped)
        if dropped:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _route


def main(argv: list) -> int:
    ap = argparse.ArgumentParser(description="blob storage test double (tests only)")
    ap.add_argument("--root", required=True, help="the registry's storage root directory")
    ap.add_argument("--host", default="127.0.0.2")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    srv = Storage((args.host, args.port), args.root)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown, daemon=True).start())
    sys.stderr.write(f"blob-storage-test-double: serving {args.root} on {args.host}:{args.port}\n")
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
