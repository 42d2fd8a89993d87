# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 15, section 2, over SSH: venom_model's progress lines on a real fleet host.

tests/integration/test_venom_model_progress.py shows the action plugin's progress with the local
connection. Here the install runs on an nspawn host over SSH, so the plugin runs the module through
Ansible's async wrapper on the host and reads the host's journal through the connection. A real
olah mirror behind the rate-limiting proxy (on the controller's loopback, which the fleet hosts
share) makes the 6 MB download last about 12 s. The play must print progress lines for that host
while it runs (percent, bytes done / total, rate, ETA), with no async/poll in the task, and the
task's result is the ordinary one.
"""
from __future__ import annotations

import os
import re
import time

import pytest

from tests.lib.ansible_run import run_playbook
from tests.lib.fleet_env import start_fleet
from tests.lib.olah_env import running_mirror, slow_model_files
from tests.lib.throttle_proxy import ThrottleProxy

SLOW = "venom-test/slow-progress-ssh"
SLOW_BYTES = 6 * 1024 * 1024
RATE = 512 * 1024  # bytes per second through the proxy
VENV = "/opt/venom-progress-py"  # the modules' Python on the host (requirements-target.txt)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINE = re.compile(r"^venom_model \[([^\]]+)\] venom-test/slow-progress-ssh: install (\d+\.\d)% "
                  r"([\d.]+ [kMG]?B) / ([\d.]+ [kMG]?B), (rate measuring|[\d.]+ [kMG]?B/s)(, ETA \w+)?$", re.M)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    with running_mirror(str(tmp_path_factory.mktemp("olah")), {SLOW: slow_model_files(SLOW_BYTES, seed=11)}) as m:
        yield m


def test_progress_lines_over_ssh_while_a_throttled_download_runs(mirror):  # pylint: disable=redefined-outer-name
    with start_fleet(count=1, name="venom-progress", ssh_port=2281, ollama_port=11581, vllm_port=8181) as env:
        with open(os.path.join(REPO, "requirements-target.txt"), encoding="utf-8") as fh:
            reqs = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
        env.ssh(1, "python3", "-m", "venv", "--system-site-packages", VENV, timeout=120)
        env.ssh(1, f"{VENV}/bin/pip", "install", "-q", *reqs, timeout=600)
        with ThrottleProxy(mirror.endpoint, RATE) as proxy:
            play = [{"name": "progress over SSH", "hosts": "fleet", "gather_facts": False,
                     "vars": {"venom_models_progress_interval": 1, "ansible_python_interpreter": f"{VENV}/bin/python"},
                     "tasks": [{"name": "install", "venom.models.venom_model": {
                         "name": SLOW, "endpoint": proxy.endpoint, "models_dir": "/var/lib/venom/models"}}]}]
            t0 = time.monotonic()
            res = run_playbook(play, inventory=env.inventory)
            seconds = time.monotonic() - t0
            sent = proxy.bytes_sent
        out = res.stdout
        assert res.rc == 0, out[-4000:] + res.stderr[-3000:]
        result = res.task("install")
        assert result["changed"] is True and result["action"] == "install", result
        assert sent >= SLOW_BYTES and seconds >= SLOW_BYTES / RATE
        lines = LINE.findall(out)
        assert len(lines) >= 3, f"{len(lines)} progress lines:\n{out[-4000:]}"
        hosts = {line[0] for line in lines}
        assert len(hosts) == 1 and hosts != {"localhost"}, hosts
        percents = [float(line[1]) for line in lines]
        assert percents == sorted(percents) and percents[0] < 100.0, percents
        assert any(line[4] != "rate measuring" for line in lines), lines
        # the files are on the fleet host, not on the controller
        size = env.ssh(1, "sh", "-c", f"cat {result['local_path']}/model.safetensors | wc -c").stdout.strip()
        assert int(size) == len(slow_model_files(SLOW_BYTES, seed=11)["model.safetensors"])
