# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Free TCP ports for the test servers (one helper for every tier, server, bench and the fleet).

Each server of the suite has its own port range (vLLM 8011-8039, olah 18091-18119,
the Ollama double 11430-11469, ...), so servers of different kinds never race for a port; a server
that needs no fixed range takes one the kernel picks (``free_port()``). A range named by ``env``
can be moved by the user (``VENOM_TEST_OLLAMA_PORTS=12000-12039``), so parallel runs pick their own.

Standard library only: ``tests/fleet/harness.py`` and ``python -m tests.lib.olah_mirror`` use it
outside the test venv.
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


def port_range(spec: str) -> range:
    """The ports of ``"lo-hi"`` (or ``"port"``)."""
    lo, _sep, hi = spec.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def free_port(ports=None, host: str = "127.0.0.1", exclude=(), start: int | None = None, shuffle: bool = False,
              env: str | None = None) -> int:
    """A port nothing is bound to on ``host``; with ``ports`` None (and no ``env``) one the kernel picks.

    * ``ports``: the candidates (an iterable of ints, or ``"lo-hi"``); the first free one is taken;
    * ``env``: an environment variable (``"lo-hi"``) that replaces ``ports`` when it is set;
    * ``exclude``: ports not to take (one just picked for a server that does not listen yet);
    * ``start``: skip the candidates below it (a test whose server starts while another's does);
    * ``shuffle``: a random free candidate instead of the first (parallel runs rarely meet).

    Raises ``NoFreePort`` naming the range, ``host`` and how to free it.
    """
    if env and os.environ.get(env):
        ports = os.environ[env]
    if ports is None:
        with socket.socket() as sock:
            sock.bind((host, 0))
            return sock.getsockname()[1]
    if isinstance(ports, str):
        ports = port_range(ports)
    candidates = [p for p in ports if p not in exclude and (start is None or p >= start)]
    if shuffle:
        random.shuffle(candidates)
    for port in candidates:
        if port_is_free(port, host):
            return port
    listed = sorted(candidates)
    span = f"{listed[0]}-{listed[-1]}" if listed else "(none left)"
    raise NoFreePort(f"No free port in {span} on {host}: stop the leftover servers (ss -ltnp)"
                     + (f", or set {env} to another range." if env else "."))
