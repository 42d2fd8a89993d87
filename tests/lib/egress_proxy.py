# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A TCP relay that counts the bytes an upstream sends: "what leaves the outside world".

The mirror tests and bench/bench_mirror.py put it between the fleet and the upstream (the olah
that plays the Hub): everything the fleet fetches from outside passes through it, headers
included, so ``received`` is the fleet's egress in bytes. ``stop()`` (or pausing with
``refuse=True``) makes the upstream unreachable without touching the server behind it.
"""
from __future__ import annotations

import socket
import threading


class EgressCounter:
    """Listen on 127.0.0.1:``port`` (0: any free port) and relay to ``target`` (host, port)."""

    def __init__(self, target: tuple, port: int = 0):
        self.target = target
        self._lock = threading.Lock()
        self.received = 0  # bytes from the upstream to its clients
        self.sent = 0  # bytes from the clients to the upstream
        self.connections = 0
        self.request_heads = []  # the first KiB each client sent (request line and headers)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self) -> int:
        """Zero the counters; the bytes received until now."""
        with self._lock:
            self.request_heads = []
            got, self.received, self.sent, self.connections = self.received, 0, 0, 0
        return got

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _addr = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, upstream, "sent"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, "received"), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counter: str) -> None:
        first = True
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
                    if first and counter == "sent":
                        self.request_heads.append(data[:1024])
                first = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
