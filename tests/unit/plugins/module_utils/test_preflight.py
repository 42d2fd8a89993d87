# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_runtime's check-mode preflight: can the runtime's command start on this host?"""
from __future__ import annotations

import os
import subprocess
import sys

from ansible_collections.venom.models.plugins.module_utils.runtimes.preflight import command_problem as _command_problem


def _run(args, env):
    """What AnsibleModule.run_command gives the module: (rc, stdout, stderr) of a command that ends."""
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def command_problem(argv, env=None):
    return _command_problem(argv, env, _run)


def test_missing_executable_on_the_path(tmp_path):
    problem = command_problem(["venom-no-such-runtime", "serve"], {"PATH": str(tmp_path)})
    assert problem == "venom-no-such-runtime is not found on the PATH or is not executable"


def test_missing_executable_path(tmp_path):
    assert "is not found or is not executable" in command_problem([str(tmp_path / "python9"), "-m", "vllm"])


def test_missing_python_module_is_named():
    problem = command_problem([sys.executable, "-m", "venom_no_such_pkg.entrypoints.api"], dict(os.environ))
    assert problem == f"{sys.executable}: No module named 'venom_no_such_pkg'"


def test_present_command_and_module():
    assert command_problem([sys.executable, "-m", "json.tool"], dict(os.environ)) is None
    assert command_problem(["sh", "-c", "true"], dict(os.environ)) is None


def test_without_an_env_the_command_is_looked_for_on_the_hosts_path(tmp_path, monkeypatch):
    server = tmp_path / "myserver"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _command_problem(["myserver", "serve"], None, _run) is None
    assert "not found on the PATH" in _command_problem(["myserver", "serve"], {"PATH": "/nonexistent"}, _run)


def test_a_failed_module_lookup_shows_the_end_of_what_python_said():
    def answer(rc, out, err):
        return lambda args, env: (rc, out, err)
    exe = sys.executable
    assert _command_problem([exe, "-m", "a.b"], None, answer(1, "  only stdout \n", "")) == \
        f"{exe} failed to look for the module a: only stdout"
    assert _command_problem([exe, "-m", "a.b"], None, answer(1, "out", "err")).endswith(": err")
    assert _command_problem([exe, "-m", "a.b"], None, answer(1, "", "")).endswith("module a: ")
    long_err = "x" * 100 + "e" * 500
    assert _command_problem([exe, "-m", "a.b"], None, answer(1, "", long_err)).endswith(": " + "e" * 500)
