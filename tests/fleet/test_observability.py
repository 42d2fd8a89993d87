# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The metrics timer of the roles, served by a real prometheus-node-exporter on a fleet host.

One host runs Ollama (the test double) under the ollama role with ``ollama_metrics_enabled``, one
model adopted with venom_model (provider local) and a failed operation in its journal. The role
installs ``venom-models-metrics.timer``; node_exporter (the Debian package's binary, copied onto
the host) serves the textfile directory; this test scrapes it over HTTP and checks what the
host's state says (the model and its revision, the quota, the failed verify, Ollama up), then
stops Ollama and sees the runtime go down in the next scrape. A second
role run changes nothing.

The vllm role's scrape exporter (tasks_from scrape.yml, its hardened unit) is put in front of
node_exporter's /metrics (a real Prometheus endpoint standing in for vLLM's, which needs a vLLM
install): it serves /metrics and refuses every other path and method; emptied, it is removed.
"""
from __future__ import annotations

import os
import re
import time

import pytest
import requests

from tests.lib.ansible_run import run_playbook
from tests.lib.fleet_env import start_fleet
from tests.lib.servers import wait_http
from tests.lib.tools import require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOUBLE = os.environ.get("VENOM_OLLAMA_DOUBLE") or os.path.join(REPO, "tests", "doubles", "ollama", "ollama_test_double.py")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
EXPORTER_PORT = 9171
SCRAPE_PORT = 9172
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
MODELS_DIR = "/var/lib/venom/models"


def _changed(res) -> list:
    return [r["task"] for r in res.results if r["status"] == "ok" and r["result"].get("changed")]


def _scrape(want: str, timeout: float = 60) -> str:
    """node_exporter's /metrics once it holds a line matching ``want`` (a regex)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = requests.get(f"http://127.0.0.1:{EXPORTER_PORT}/metrics", timeout=5).text
        except requests.ConnectionError:
            text = ""
        if re.search(want, text, re.M):
            return text
        time.sleep(1)
    pytest.fail(f"node_exporter never served a line matching {want!r}; its venom lines:\n"
                + "\n".join(line for line in text.splitlines() if "venom" in line))
    return text


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    require("prometheus-node-exporter", "prometheus-node-exporter")
    work = tmp_path_factory.mktemp("obs")
    exe = work / "ollama"
    with open(DOUBLE, encoding="utf-8") as fh:
        exe.write_text("#!/usr/bin/env python3\n" + fh.read().split("\n", 1)[1])
    exe.chmod(0o755)
    with start_fleet(count=1, name="venom-obs", ssh_port=2271, ollama_port=11571, vllm_port=8171) as env:
        yield {"env": env, "exe": str(exe)}


def _role_play(site, **extra) -> list:
    return [{"name": "ollama with metrics", "hosts": "fleet", "gather_facts": False, "roles": [{
        "role": "venom.models.ollama",
        "vars": {"ollama_install_method": "controller", "ollama_src": site["exe"], "ollama_metrics_enabled": True,
                 "ollama_metrics_interval": "5s", "ollama_metrics_quota_gb": 0.001, **extra}}]}]


_EXPORTER_PLAY = [{
    "name": "node_exporter serving the textfile directory", "hosts": "fleet", "gather_facts": False, "tasks": [
        {"name": "Copy the Debian package's node_exporter", "ansible.builtin.copy": {
            "src": NODE_EXPORTER, "dest": "/usr/local/bin/prometheus-node-exporter", "mode": "0755"}},
        {"name": "Its unit", "ansible.builtin.copy": {
            "dest": "/etc/systemd/system/node-exporter.service", "mode": "0644",
            "content": "[Service]\nExecStart=/usr/local/bin/prometheus-node-exporter "
                       f"--web.listen-address=127.0.0.1:{EXPORTER_PORT} --collector.disable-defaults "
                       f"--collector.textfile --collector.textfile.directory={TEXTFILE_DIR}\n"}},
        {"name": "Start it", "ansible.builtin.systemd_service": {
            "name": "node-exporter.service", "state": "started", "daemon_reload": True}},
        {"name": "A model directory", "ansible.builtin.file": {"path": "/srv/tiny", "state": "directory", "mode": "0755"}},
        {"name": "A model file", "ansible.builtin.copy": {
            "dest": "/srv/tiny/config.json", "content": '{"model_type": "bert"}\n', "mode": "0644"}},
        {"name": "Adopt it", "venom.models.venom_model": {
            "name": "org/tiny", "provider": "local", "source": "/srv/tiny", "models_dir": MODELS_DIR}},
        {"name": "A failed verify (a file and its source removed behind venom's back)", "block": [
            {"name": "Break it", "ansible.builtin.shell": {
                "cmd": f"rm -r /srv/tiny && find {MODELS_DIR} -name config.json -path '*org*' -delete"},
             "changed_when": True},
            {"name": "Verify", "venom.models.venom_model": {
                "name": "org/tiny", "provider": "local", "state": "verified", "models_dir": MODELS_DIR}}],
         "rescue": [{"name": "Expected", "ansible.builtin.debug": {"msg": "verify failed as it should"}}]},
    ]}]


def test_node_exporter_serves_the_roles_metrics(host):  # pylint: disable=redefined-outer-name
    env = host["env"]
    h = env.host(1)
    res = run_playbook(_EXPORTER_PLAY, inventory=env.inventory)
    assert res.rc == 0, res.stdout[-4000:]
    res = run_playbook(_role_play(host), inventory=env.inventory)
    assert res.rc == 0, res.stdout[-4000:]

    # (healthy is asked at the port venom_runtime recorded; with only the role, Ollama's default
    # port, not this host's: so only its presence is checked here)
    text = _scrape(r'^venom_runtime_up\{runtime="ollama",runtime_instance="ollama"\} 1$')
    assert re.search(r'^venom_runtime_healthy\{runtime="ollama",runtime_instance="ollama"\} [01]$', text, re.M)
    assert re.search(r'^venom_runtime_configured\{runtime="ollama",runtime_instance="ollama"\} 1$', text, re.M)
    assert re.search(r'^venom_model_info\{model="org/tiny",provider="local",revision="[^"]+",status="\w+"\} 1$', text, re.M), text
    assert re.search(r"^venom_models_disk_quota_bytes (1e\+06|1000000)$", text, re.M), "quota_gb from the role"
    assert re.search(r'^venom_operation_last_status\{status="failed",type="verify"\} 1$', text, re.M), text
    assert re.search(r'^node_textfile_scrape_error 0$', text, re.M)
    assert "venom_runtime_gpu_memory_used_bytes" not in text, "no NVML on the host: no VRAM series, never a fake 0"
    st = env.ssh(h, "systemctl is-enabled venom-models-metrics.timer; stat -c %a " + f"{TEXTFILE_DIR}/venom_models.prom").stdout
    assert st.split() == ["enabled", "644"]

    res = run_playbook(_role_play(host), inventory=env.inventory)
    assert res.rc == 0 and _changed(res) == [], _changed(res)

    env.ssh(h, "systemctl stop ollama.service")
    _scrape(r'^venom_runtime_up\{runtime="ollama",runtime_instance="ollama"\} 0$', timeout=30)
    leftovers = env.ssh(h, f"ls -A {TEXTFILE_DIR}").stdout.split()
    assert leftovers == ["venom_models.prom"], f"no temp files left in the collector directory: {leftovers}"


def _scrape_play(address: str) -> list:
    return [{"name": "vllm scrape exporter", "hosts": "fleet", "gather_facts": False, "tasks": [
        {"name": "scrape", "ansible.builtin.include_role": {"name": "venom.models.vllm", "tasks_from": "scrape.yml"},
         "vars": {"vllm_scrape_address": address, "vllm_scrape_port": SCRAPE_PORT, "vllm_port": EXPORTER_PORT}}]}]


def test_vllm_scrape_exporter_serves_only_metrics(host):  # pylint: disable=redefined-outer-name
    env = host["env"]
    res = run_playbook(_scrape_play("127.0.0.1"), inventory=env.inventory)
    assert res.rc == 0, res.stdout[-4000:]
    url = f"http://127.0.0.1:{SCRAPE_PORT}"
    wait_http(f"{url}/metrics", 30, ready=lambda status: status == 200, interval=0.5)
    got = requests.get(f"{url}/metrics", timeout=5)
    assert got.status_code == 200 and "node_textfile_scrape_error" in got.text, got.text[:500]
    assert requests.get(f"{url}/api/version", timeout=5).status_code == 404
    assert requests.post(f"{url}/metrics", timeout=5).status_code == 405
    show = env.ssh(env.host(1), "systemctl show vllm-metrics.service -p DynamicUser -p ActiveState").stdout
    assert "DynamicUser=yes" in show and "ActiveState=active" in show
    res = run_playbook(_scrape_play("127.0.0.1"), inventory=env.inventory)
    assert res.rc == 0 and _changed(res) == [], _changed(res)
    res = run_playbook(_scrape_play(""), inventory=env.inventory)
    assert res.rc == 0, res.stdout[-4000:]
    assert env.ssh(env.host(1), "test -e /etc/systemd/system/vllm-metrics.service", check=False).returncode == 1
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/metrics", timeout=5)
