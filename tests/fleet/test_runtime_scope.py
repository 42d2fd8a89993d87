# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 13, finding 10, on a real systemd host: a stop of a process-mode runtime is total.

venom_runtime starts Ollama (the test double) in process mode on a fleet host, through a wrapper
whose child escapes everything a process tree can be found by: it double-forks (re-parented away
from the runtime), calls ``setsid`` (leaves the session) and clears its environment (drops the
marker variable). systemd is PID 1 there, so the runtime runs in a transient scope
(``systemd-run --scope``): the escaped child is still in the scope's control group, and
``state: stopped`` stops it too; the scope is gone afterwards.
"""
from __future__ import annotations

import json
import os
import time

from tests.lib.ansible_run import run_playbook
from tests.lib.fleet_env import start_fleet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOUBLE = os.environ.get("VENOM_OLLAMA_DOUBLE") or os.path.join(REPO, "tests", "doubles", "ollama", "ollama_test_double.py")
MODELS_DIR = "/var/lib/venom/models"
PID_FILE = f"{MODELS_DIR}/.venom/runtimes/ollama.pid"
TAG = "venom-escaper-tag"

# The runtime's command: fork the escaper, then become the Ollama double.
WRAPPER = f"""#!/usr/bin/python3
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve("/usr/bin/python3", ["/usr/bin/python3", "-c", "import time\\nwhile True: time.sleep(1)", "{TAG}"], {{}})
    os._exit(0)
os.wait()
os.execv("/usr/bin/python3", ["/usr/bin/python3", "/opt/scope-test/ollama_double.py", *sys.argv[1:]])
"""


def _runtime_task(state: str) -> dict:
    return {"name": f"ollama {state}", "venom.models.venom_runtime": {
        "name": "ollama", "mode": "process", "models_dir": MODELS_DIR, "port": "{{ ollama_port }}",
        "command": ["/opt/scope-test/ollama", "serve"], "env": {"OLLAMA_MODELS": "/var/lib/scope-test-store"},
        "health_timeout": 60, "stop_timeout": 10, "state": state}}


def _play(*tasks) -> list:
    return [{"name": "process-mode runtime in a scope", "hosts": "fleet", "gather_facts": False, "tasks": list(tasks)}]


def _escaped(env) -> list:
    out = env.ssh(1, "pgrep", "-f", TAG, check=False).stdout.split()
    return [int(p) for p in out]


def test_a_stop_leaves_nothing_of_a_scoped_runtime_behind():
    with start_fleet(count=1, name="venom-scope", ssh_port=2277, ollama_port=11577, vllm_port=8177) as env:
        setup = [
            {"name": "directories", "ansible.builtin.file": {"path": "{{ item }}", "state": "directory", "mode": "0755"},
             "loop": ["/opt/scope-test", "/var/lib/scope-test-store"]},
            {"name": "the Ollama double",
             "ansible.builtin.copy": {"src": DOUBLE, "dest": "/opt/scope-test/ollama_double.py", "mode": "0755"}},
            {"name": "the escaping wrapper",
             "ansible.builtin.copy": {"content": WRAPPER, "dest": "/opt/scope-test/ollama", "mode": "0755"}},
        ]
        res = run_playbook(_play(*setup, _runtime_task("started")), inventory=env.inventory)
        started = res.task("ollama started")
        assert res.rc == 0 and not started.get("failed"), res.text[-4000:]

        rec = json.loads(env.ssh(1, "cat", PID_FILE).stdout)
        scope = rec["scope"]
        assert scope and scope.startswith("venom-runtime-ollama-") and rec["cgroup"].endswith("/" + scope), rec
        assert env.ssh(1, "systemctl", "is-active", scope, check=False).stdout.strip() == "active"
        deadline = time.monotonic() + 20
        while not _escaped(env) and time.monotonic() < deadline:
            time.sleep(0.2)
        escaped = _escaped(env)
        assert len(escaped) == 1, f"the escaping child never ran: {escaped}"
        pid = escaped[0]
        # it really escaped: another session, no environment (no marker), not below the runtime
        sid = env.ssh(1, "ps", "-o", "sid=", "-p", str(pid)).stdout.strip()
        assert int(sid) != rec["sid"]
        assert env.ssh(1, "wc", "-c", f"/proc/{pid}/environ").stdout.split()[0] == "0"
        assert scope in env.ssh(1, "cat", f"/proc/{pid}/cgroup").stdout, "the kernel keeps it in the scope"

        res = run_playbook(_play(_runtime_task("stopped")), inventory=env.inventory)
        stopped = res.task("ollama stopped")
        assert res.rc == 0 and stopped.get("changed") and not stopped.get("failed"), res.text[-4000:]
        assert pid in stopped["stop"]["found"], stopped["stop"]
        assert _escaped(env) == [], "a child of the runtime survived state: stopped"
        assert env.ssh(1, "test", "-e", PID_FILE, check=False).returncode == 1
        deadline = time.monotonic() + 10
        units = "?"
        while units and time.monotonic() < deadline:  # --collect: the empty scope is unloaded
            units = env.ssh(1, "systemctl", "list-units", "--all", "--plain", "--no-legend", "venom-runtime-*").stdout.strip()
            time.sleep(0.2)
        assert units == "", units
