# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Free TCP ports for the test servers (one helper for every tier and every server).

Each server of the suite has its own port range (vLLM 8011-8039, olah 18091-18119, the Ollama
double 11430-11469, ...), so servers of different kinds never race for a port; a server that
needs no fixed range takes one the kernel picks (``free_port()``).
"""
from __future__ import annotations

import os
import random
import socket


class NoFreePort(RuntimeError):
    """Every port of a range is taken (leftover servers of an earlier run, as a rule)."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing is bound to ``host:port`` now (a socket in TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(ports=None, host: str = "127.0.0.1", exclude=(), shuffle: bool = False, fix: str = "") -> int:
    """A port of ``ports`` (an iterable; the first free one, or a random one with ``shuffle``) that
    nothing is bound to on ``host``; with ``ports`` None one the kernel picks.

    Raises ``NoFreePort`` naming the range and how to free it (plus ``fix``).
    """
    if ports is None:
        with socket.socket() as sock:
            sock.bind((host, 0))
            return sock.getsockname()[1]
    candidates = [p for p in ports if p not in exclude]
    if shuffle:
        random.shuffle(candidates)
    for port in candidates:
        if port_is_free(port, host):
            return port
    listed = sorted(candidates)
    span = f"{listed[0]}-{listed[-1]}" if listed else "(none left)"
    raise NoFreePort(f"No free port in {span} on {host}: stop the leftover servers (ss -ltnp){fix}.")


def port_range(var: str, default: str) -> range:
    """The ports ``lo-hi`` (or one port) that the environment variable ``var`` names, else ``default``."""
    lo, _sep, hi = os.environ.get(var, default).partition("-")
    return range(int(lo), int(hi or lo) + 1)
