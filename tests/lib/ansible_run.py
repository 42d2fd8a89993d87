# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run venom.models tasks through the real ansible-playbook and read their results.

Tests use ``run_task`` for one module call or ``run_playbook`` for a whole play. The collection
is taken from a tree built from the checkout (scripts/collection-tree.sh, once per session), so
what runs is exactly what a user installs. Results come back as dicts through a test-only
callback (tests/lib/callback_plugins/venom_results.py), together with the full stdout/stderr.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLLECTIONS_ROOT: list = []


def collections_root() -> str:
    """The directory holding ansible_collections/venom/models, built once per test session."""
    if not _COLLECTIONS_ROOT:
        env = dict(os.environ)
        env.setdefault("VENOM_COLLECTION_ROOT", os.path.join(tempfile.gettempdir(), f"venom-itest-{os.getpid()}"))
        out = subprocess.run([os.path.join(REPO, "scripts", "collection-tree.sh")], env=env, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        _COLLECTIONS_ROOT.append(out)
    return _COLLECTIONS_ROOT[0]


@dataclasses.dataclass
class PlayResult:
    """The outcome of one ansible-playbook run."""

    rc: int
    stdout: str
    stderr: str
    results: list

    def task(self, name: str | None = None, host: str | None = None) -> dict:
        """The result dict of the (last) task called ``name`` (default: the last task) on ``host``."""
        found = [r for r in self.results if (name is None or r["task"] == name) and (host is None or r["host"] == host)]
        if not found:
            raise AssertionError(f"no result for task {name!r} host {host!r}; rc={self.rc}\n{self.stdout[-4000:]}\n{self.stderr[-4000:]}")
        return found[-1]["result"]

    def statuses(self) -> list:
        return [r["status"] for r in self.results]

    @property
    def text(self) -> str:
        """Everything the run printed, for leak checks."""
        return self.stdout + self.stderr + json.dumps(self.results, default=str)


def ansible_env(extra_env: dict | None = None) -> dict:
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_root(),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(REPO, "tests", "lib", "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "venom_results",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PYTHON_INTERPRETER": os.environ.get("VENOM_TARGET_PYTHON", sys.executable),
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    })
    if extra_env:
        env.update(extra_env)
    return env


def run_playbook(plays: list, inventory: str | None = None, check: bool = False, diff: bool = False,
                 extra_args: list | None = None, extra_env: dict | None = None, timeout: float = 1800,
                 workdir: str | None = None) -> PlayResult:
    """Run ``plays`` (a list of play dicts) with ansible-playbook; never raises on task failure."""
    workdir = workdir or tempfile.mkdtemp(prefix="venom-play-")
    playbook = os.path.join(workdir, "playbook.yml")
    with open(playbook, "w", encoding="utf-8") as fh:
        yaml.safe_dump(plays, fh, sort_keys=False)
    results_file = os.path.join(workdir, "results.jsonl")
    if os.path.exists(results_file):
        os.unlink(results_file)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook]
    cmd += ["-i", inventory or "localhost,"]
    if inventory is None:
        cmd += ["-c", "local"]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += extra_args or []
    env = ansible_env(dict(extra_env or {}, VENOM_RESULTS_FILE=results_file))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=workdir, check=False)
    results = []
    if os.path.exists(results_file):
        with open(results_file, encoding="utf-8") as fh:
            results = [json.loads(line) for line in fh if line.strip()]
    return PlayResult(proc.returncode, proc.stdout, proc.stderr, results)


def run_task(module: str, args: dict, check: bool = False, diff: bool = False, hosts: str = "localhost",
             inventory: str | None = None, become: bool = False, environment: dict | None = None,
             extra_env: dict | None = None, timeout: float = 1800, task_extra: dict | None = None) -> PlayResult:
    """Run one module call as a one-task play; the task is named 'task'."""
    task = {"name": "task", module: args}
    if environment:
        task["environment"] = environment
    if task_extra:
        task.update(task_extra)
    play = {"name": "venom test", "hosts": hosts, "gather_facts": False, "become": become, "tasks": [task]}
    return run_playbook([play], inventory=inventory, check=check, diff=diff, extra_env=extra_env, timeout=timeout)
