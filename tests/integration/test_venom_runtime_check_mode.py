# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_runtime --check on a host without vLLM fails as the real run would, instead of predicting
``healthy: true``; with a command that exists it predicts the start and leaves health unknown.
No vLLM is started: the command is this test venv's Python, which has no vllm package."""
from __future__ import annotations

import os
import sys

from tests.lib.ansible_run import run_playbook
from tests.lib.olah_env import tiny_gemma_files
from tests.lib.olah_mirror import write_files

import pytest

RUNTIME = "venom.models.venom_runtime"
PORT = 8039  # never bound: nothing starts in check mode
NO_VLLM = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
EXISTS = [sys.executable, "-m", "json.tool"]


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """One play: install a local model, then four check-mode runs of venom_runtime."""
    tmp = tmp_path_factory.mktemp("runtime-check")
    src = tmp / "src"
    write_files(str(src), tiny_gemma_files())
    models = str(tmp / "models")
    cases = {"no_vllm": (NO_VLLM, "gemma-local"), "no_exe": ([str(tmp / "no-such-python"), *NO_VLLM[1:]], "gemma-local"),
             "no_model": (EXISTS, "not-installed-model"), "exists": (EXISTS, "gemma-local")}
    tasks = [{"name": "install", "venom.models.venom_model": {"name": "gemma-local", "provider": "local",
                                                              "source": str(src), "runtime": "vllm", "models_dir": models}}]
    for name, (command, model) in cases.items():
        tasks.append({"name": name, RUNTIME: {"name": "vllm", "mode": "process", "port": PORT, "models_dir": models,
                                              "command": command, "model": model},
                      "check_mode": True, "diff": True, "ignore_errors": True})
    res = run_playbook([{"name": "runtime check", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    assert not res.task("install")["failed"], res.stdout[-3000:]
    return tmp, res


def test_check_fails_when_the_python_has_no_vllm(checks):
    tmp, res = checks
    out = res.task("no_vllm")
    assert out["failed"] is True and out.get("changed") is not True, out
    assert "No module named 'vllm'" in out["msg"] and "The real run would fail" in out["msg"], out["msg"]
    assert "venom.models.vllm role" in str(out.get("fix") or out["msg"]), out
    assert not os.path.exists(tmp / "models" / ".venom" / "runtimes" / "vllm.pid")


def test_check_fails_when_the_executable_is_missing(checks):
    out = checks[1].task("no_exe")
    assert out["failed"] is True and "is not found or is not executable" in out["msg"], out


def test_check_fails_when_the_model_is_not_installed(checks):
    out = checks[1].task("no_model")
    assert out["failed"] is True and "not-installed-model" in out["msg"], out


def test_check_with_a_command_that_exists_predicts_the_start_not_the_health(checks):
    out = checks[1].task("exists")
    assert out["failed"] is False and out["changed"] is True and "start" in out["actions"], out
    assert out["diff"]["after"]["state"] == "started" and out["diff"]["after"]["healthy"] is None, out["diff"]
