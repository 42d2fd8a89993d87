# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet harness: hosts boot systemd, are reached by Ansible over SSH, and always go away."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.store.procinfo import proc_start_ticks
from tests.fleet import harness
from tests.lib.ansible_run import run_playbook, run_task
from tests.lib.fleet_env import start_fleet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLEET_SH = os.path.join(REPO, "scripts", "fleet.sh")
# ports of the harness's own start/stop tests (the session fleet uses 2201.., molecule 2231..)
CRASH_SSH_PORT, CRASH_OLLAMA_PORT, CRASH_VLLM_PORT = 2211, 11511, 8111


def test_fleet_boots_within_a_minute(fleet):
    assert len(fleet.hosts) == harness.DEFAULT_HOSTS
    assert fleet.startup_seconds < 60, f"startup took {fleet.startup_seconds}s"
    machine_ids, host_keys = set(), set()
    for host in fleet.hosts:
        out = fleet.ssh(host, "systemctl is-system-running; cat /proc/1/comm; hostname; cat /etc/machine-id; "
                        "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split("\n")
        assert out[0] == "running", out
        assert out[1] == "systemd"
        assert out[2] == host.name
        machine_ids.add(out[3])
        host_keys.add(out[4].split()[1])
    assert len(machine_ids) == len(host_keys) == len(fleet.hosts), "hosts share a machine id or a host key"


def test_inventory_reaches_every_host_with_its_ports(fleet):
    res = run_task("ansible.builtin.setup", {"gather_subset": ["!all", "!min", "service_mgr", "python"]},
                   hosts="fleet", inventory=fleet.inventory)
    assert res.rc == 0, res.stdout[-3000:]
    for host in fleet.hosts:
        facts = res.task(host=host.name)["ansible_facts"]
        assert facts["ansible_service_mgr"] == "systemd"
        assert facts["ansible_python"]["version"]["major"] == 3
    listing = json.loads(subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"),
                                         "-i", fleet.inventory, "--list"], check=True, capture_output=True,
                                        text=True).stdout)
    hostvars = listing["_meta"]["hostvars"]
    for host in fleet.hosts:
        hv = hostvars[host.name]
        assert (hv["ansible_port"], hv["ollama_port"], hv["vllm_port"]) == (host.ssh_port, host.ollama_port, host.vllm_port)
        assert hv["ansible_host"] == "127.0.0.1"
    assert len({h.ollama_port for h in fleet.hosts} | {h.vllm_port for h in fleet.hosts}) == 2 * len(fleet.hosts)


def test_sshd_listens_on_loopback_only_and_pins_host_keys(fleet):
    host = fleet.host(1)
    sockets = fleet.ssh(host, f"ss -Htln 'sport = :{host.ssh_port}'").stdout.split()
    assert sockets[3] == f"127.0.0.1:{host.ssh_port}", sockets
    # a host presenting another key is refused (the inventory's known_hosts pins each host's key)
    other = fleet.host(2)
    proc = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={fleet.state_dir}/known_hosts",
                           "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias=[127.0.0.1]:{other.ssh_port}",
                           "-i", f"{fleet.state_dir}/id_ed25519", "-p", str(host.ssh_port), "root@127.0.0.1", "true"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr, proc.stderr


def test_hosts_get_the_pip_cache_the_wheels_and_the_machines_trust(fleet):
    out = fleet.ssh(1, "findmnt -n -o OPTIONS /srv/venom-wheels; findmnt -n -o TARGET /root/.cache/pip; "
                    "cat /etc/pip.conf; touch /srv/venom-wheels/x 2>&1 || true").stdout
    assert "ro" in out.split("\n")[0].split(",")
    assert "/root/.cache/pip" in out
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in out
    assert "Read-only file system" in out
    # HTTPS from a host trusts what the machine trusts (a local CA of a mirror or proxy included)
    proc = fleet.ssh(1, "python3", "-c", "import ssl; print(len(ssl.create_default_context().get_ca_certs()) > 0)")
    assert proc.stdout.strip() == "True"


def test_hosts_run_the_modules_the_roles_use(fleet):
    """What Ansible's modules need from the hosts' Python: the base has python3, python3-apt and
    python3-venv; ansible.builtin.pip needs python3-packaging, which the vllm role installs."""
    plays = [{"name": "modules", "hosts": "fleet", "gather_facts": False, "tasks": [
        {"name": "apt", "ansible.builtin.apt": {"name": "python3-apt", "state": "present"}},
        {"name": "package_facts", "ansible.builtin.package_facts": {"manager": "auto"}},
        {"name": "systemd", "ansible.builtin.systemd_service": {"name": "ssh.service", "state": "started"}},
        {"name": "user", "ansible.builtin.user": {"name": "probe", "system": True}, "check_mode": True},
        {"name": "venv", "ansible.builtin.command": {"argv": ["python3", "-m", "venv", "/tmp/probe-venv"],
                                                     "creates": "/tmp/probe-venv/bin/python"}},
    ]}]
    res = run_playbook(plays, inventory=fleet.inventory)
    assert res.rc == 0, res.stdout[-4000:]
    assert "python3-venv" in res.task("package_facts", host=fleet.host(1).name)["ansible_facts"]["packages"]
    assert res.task("systemd", host=fleet.host(1).name)["changed"] is False


def _processes_under(path: str) -> list:
    return harness._processes_rooted_in(path)  # pylint: disable=protected-access


def test_down_cleans_up_after_a_run_that_died():
    """A harness run that died leaves hosts running and a state file: 'down' removes them all
    (processes, mounts, directories) and is idempotent; 'up' in the same place cleans up first."""
    with start_fleet(count=2, name="venom-crash", ssh_port=CRASH_SSH_PORT, ollama_port=CRASH_OLLAMA_PORT,
                     vllm_port=CRASH_VLLM_PORT) as env:
        state_dir = env.state_dir
        roots = [os.path.join(state_dir, "hosts", h.name, "root") for h in env.hosts]
        with open(os.path.join(state_dir, "state.json"), encoding="utf-8") as fh:
            state = json.load(fh)
        # the controller side of the run dies hard: nspawn of host 1 killed, host 2 left running
        os.kill(state["hosts"][0]["pid"], signal.SIGKILL)
        # a second harness process (a new test session) finds the state and removes everything
        proc = subprocess.run([FLEET_SH, "down", f"--state-dir={state_dir}", "--name=venom-crash"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        for root in roots:
            assert not os.path.exists(os.path.dirname(root)), f"{root} left behind"
            assert not _processes_under(root)
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            assert state_dir not in fh.read()
        assert not os.path.exists(os.path.join(state_dir, "state.json"))
        for port in (CRASH_SSH_PORT, CRASH_SSH_PORT + 1):
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
        again = subprocess.run([FLEET_SH, "down", f"--state-dir={state_dir}"], capture_output=True, text=True,
                               timeout=60, check=False)
        assert again.returncode == 0 and "removed" not in again.stderr
    # start_fleet's own teardown ran on an already removed fleet: still clean
    assert not os.path.exists(os.path.join(state_dir, "hosts", "venom-crash-1"))


def test_up_replaces_what_a_dead_run_left_in_its_state_dir():
    state_dir = harness.default_state_dir("venom-crash-replace")
    fleet_a = harness.Fleet(state_dir, "venom-crash")
    try:
        first = fleet_a.up(1, CRASH_SSH_PORT, CRASH_OLLAMA_PORT, CRASH_VLLM_PORT)
        old_pid = first["hosts"][0]["pid"]
        # a new run in the same place, without a 'down' in between
        fleet_b = harness.Fleet(state_dir, "venom-crash")
        second = fleet_b.up(1, CRASH_SSH_PORT, CRASH_OLLAMA_PORT, CRASH_VLLM_PORT)
        assert second["hosts"][0]["pid"] != old_pid
        assert not os.path.exists(f"/proc/{old_pid}") or proc_start_ticks(old_pid) != first["hosts"][0]["pid_start"]
        assert fleet_b.ssh(fleet_b.hosts[0], "systemctl", "is-system-running").stdout.strip() == "running"
    finally:
        harness.Fleet(state_dir, "venom-crash").down(quiet=True)
    assert not os.path.exists(os.path.join(state_dir, "hosts", "venom-crash-1"))


def test_up_refuses_busy_ports_and_leaves_nothing():
    state_dir = harness.default_state_dir("venom-crash-busy")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", CRASH_OLLAMA_PORT + 1))
        sock.listen()
        proc = subprocess.run([FLEET_SH, "up", "-n", "2", f"--state-dir={state_dir}", "--name=venom-crash",
                               f"--ssh-port={CRASH_SSH_PORT}", f"--ollama-port={CRASH_OLLAMA_PORT}",
                               f"--vllm-port={CRASH_VLLM_PORT}"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert f"ports [{CRASH_OLLAMA_PORT + 1}]" in proc.stderr and "in use" in proc.stderr, proc.stderr
    assert not os.path.exists(os.path.join(state_dir, "state.json"))


def test_a_boot_that_fails_tears_everything_down():
    state_dir = harness.default_state_dir("venom-crash-timeout")
    fleet_c = harness.Fleet(state_dir, "venom-crash")
    start = time.monotonic()
    with pytest.raises(harness.FleetError, match="not booted after"):
        fleet_c.up(2, CRASH_SSH_PORT, CRASH_OLLAMA_PORT, CRASH_VLLM_PORT, timeout=0.01)
    assert time.monotonic() - start < 90
    assert not os.path.exists(os.path.join(state_dir, "state.json"))
    for name in ("venom-crash-1", "venom-crash-2"):
        assert not os.path.exists(os.path.join(state_dir, "hosts", name))
