# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pytest fixtures for a fleet of real systemd hosts (tests/fleet/harness.py).

A fleet test names the fixture ``fleet`` (shared through ``tests/fleet/conftest.py``) and runs
playbooks against ``fleet.inventory`` (``tests.lib.ansible_run.run_playbook(..., inventory=...)``).

* ``fleet``: a session-scoped fleet of ``VENOM_FLEET_HOSTS`` (default 3) Debian hosts booted with
  systemd-nspawn, each reached over SSH on 127.0.0.1. Host variables: ``ansible_port``,
  ``ollama_port``, ``vllm_port``, ``fleet_index``; group ``fleet`` holds them all. Torn down at
  the end of the session, also when tests fail; a session that died is cleaned up by the next
  one (the state directory is fixed per name and port).
* ``start_fleet(...)``: a context manager for a test's own fleet (other name and ports).

Ports: SSH ``VENOM_FLEET_SSH_PORT`` (default 2201) and up, Ollama ``VENOM_FLEET_OLLAMA_PORT``
(11501) and up, vLLM ``VENOM_FLEET_VLLM_PORT`` (8101) and up, one each per host. The harness
needs root; without root the fixture fails (a skip would hide a tier that did not run).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess

import pytest

from tests.fleet import harness

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.path.join(REPO, "tests", "fleet", "harness.py")


@dataclasses.dataclass
class FleetHost:
    name: str
    index: int
    ssh_port: int
    ollama_port: int
    vllm_port: int


@dataclasses.dataclass
class FleetEnv:
    """A running fleet: its inventory and hosts, and a way to run commands on them."""

    inventory: str
    state_dir: str
    hosts: list
    startup_seconds: float
    _fleet: harness.Fleet

    def host(self, index: int) -> FleetHost:
        """Host number ``index`` (from 1)."""
        return self.hosts[index - 1]

    def ssh(self, host: FleetHost | int, *command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``command`` as root on ``host`` over SSH (host keys pinned)."""
        h = self.host(host) if isinstance(host, int) else host
        target = next(x for x in self._fleet.hosts if x.name == h.name)
        return self._fleet.ssh(target, *command, timeout=timeout, check=check)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@contextlib.contextmanager
def start_fleet(count: int = 3, name: str = "venom-pytest", ssh_port: int = 2201, ollama_port: int = 11501,
                vllm_port: int = 8101, groups: dict | None = None):
    """Start ``count`` hosts, yield a FleetEnv, and always tear them down."""
    if os.geteuid() != 0:
        pytest.fail("the fleet tests need root (systemd-nspawn, mounts): run them as root, as CI does")
    state_dir = harness.default_state_dir(f"{name}-{ssh_port}")
    fleet = harness.Fleet(state_dir, name)
    try:
        try:
            out = fleet.up(count, ssh_port, ollama_port, vllm_port, groups=groups)
        except harness.FleetError as exc:
            pytest.fail(f"the fleet did not start: {exc}")
        hosts = [FleetHost(h["name"], h["index"], h["ssh_port"], h["ollama_port"], h["vllm_port"]) for h in out["hosts"]]
        yield FleetEnv(out["inventory"], out["state_dir"], hosts, out["seconds"], fleet)
    finally:
        fleet.down(quiet=True)


@pytest.fixture(scope="session")
def fleet():
    """The session's fleet (see the module docstring)."""
    with start_fleet(count=_env_int("VENOM_FLEET_HOSTS", harness.DEFAULT_HOSTS),
                     ssh_port=_env_int("VENOM_FLEET_SSH_PORT", harness.DEFAULT_SSH_PORT),
                     ollama_port=_env_int("VENOM_FLEET_OLLAMA_PORT", harness.DEFAULT_OLLAMA_PORT),
                     vllm_port=_env_int("VENOM_FLEET_VLLM_PORT", harness.DEFAULT_VLLM_PORT)) as env:
        yield env
