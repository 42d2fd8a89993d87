# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""From venom_runtime's options to a RuntimeSpec, and the check-mode pre-flight, without Ansible."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.runtimes.preflight import check_mode_preflight
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import RuntimeSpec

OPTIONS = {  # what AnsibleModule hands venom_runtime: every option, most unset
    "name": "chat", "runtime": "vllm", "state": "started", "model": "m", "mode": "process", "unit": None,
    "command": "/opt/vllm/bin/python -m vllm.entrypoints.openai.api_server", "args": ["--enforce-eager"],
    "env": {"A": 1}, "secret_env": {"TOKEN": "s3cret"}, "host": "127.0.0.1", "port": 8001,
    "served_model_name": None, "max_model_len": 256, "gpu_memory_utilization": None, "tensor_parallel_size": None,
    "gpus": None, "gpu_share": False, "api_key": None, "keep_alive": -1, "health_timeout": 5.0, "stop_timeout": 3.0,
    "rollback": False, "env_file": None, "log_file": None, "models_dir": "/tmp/venom-models", "lock_timeout": 7.0,
    "quota_gb": None, "reserve_gb": None,
}


def test_every_option_of_a_field_reaches_the_spec():
    spec = RuntimeSpec.from_options(OPTIONS)
    assert spec.name == "chat" and spec.runtime == "vllm" and spec.mode == "process" and spec.port == 8001
    assert spec.command == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert spec.env == {"A": "1", "TOKEN": "s3cret"}, "env and secret_env are merged"
    assert (spec.max_model_len, spec.health_timeout, spec.stop_timeout, spec.rollback, spec.lock_timeout) == (256, 5.0, 3.0, False, 7.0)
    assert spec.models_dir == "/tmp/venom-models" and spec.unit == "vllm@chat.service"
    assert RuntimeSpec.from_options(dict(OPTIONS, env=None, secret_env=None)).env is None


@pytest.mark.parametrize("change,fragment", [
    ({"env": {"TOKEN": "a"}}, "TOKEN are given in both env and secret_env"),
    ({"command": 42}, "'command' must be a list or a string"),
])
def test_bad_options_name_the_problem_and_the_fix(change, fragment):
    with pytest.raises(ValidationError, match=fragment) as err:
        RuntimeSpec.from_options(dict(OPTIONS, **change))
    assert err.value.fix


def _run(args, env):
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_check_mode_fails_a_start_that_cannot_happen_and_leaves_health_open():
    spec = RuntimeSpec(name="vllm", mode="process", command=[sys.executable, "-m", "venom_no_such_pkg.api"])
    with pytest.raises(RuntimeControlError, match="No module named 'venom_no_such_pkg'. The real run would fail"):
        check_mode_preflight(spec, {"actions": ["start"], "mode": "process"}, _run)
    ok = RuntimeSpec(name="vllm", mode="process", command=[sys.executable, "-m", "json.tool"])
    result = {"actions": ["start"], "mode": "process", "diff": {"after": {"healthy": True}}}
    check_mode_preflight(ok, result, _run)
    assert result["diff"]["after"]["healthy"] is None, "health after a start cannot be predicted"
    check_mode_preflight(spec, {"actions": ["none"], "mode": "process"}, _run)  # no start: nothing to check


def test_check_mode_looks_for_the_default_command_on_the_path_the_runtime_would_get(tmp_path):
    calls = []

    def run(args, env):
        calls.append((list(args), env))
        return 3, "", ""
    spec = RuntimeSpec(name="vllm", mode="process")   # no command: vLLM's default, python3 -m vllm...
    with pytest.raises(RuntimeControlError, match="No module named 'vllm'") as err:
        check_mode_preflight(spec, {"actions": ["start"], "mode": "process"}, run)
    assert "Install vllm (the venom.models.vllm role)" in err.value.fix
    assert calls[0][0][1:] == ["-c", calls[0][0][2], "vllm"] and calls[0][0][0].endswith("python3")
    server = tmp_path / "bin" / "myserver"
    server.parent.mkdir()
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    calls.clear()
    own_path = RuntimeSpec(name="vllm", mode="process", command=["myserver", "-m", "srv.main"],
                           env={"PATH": str(server.parent)})
    with pytest.raises(RuntimeControlError, match="No module named 'srv'"):
        check_mode_preflight(own_path, {"actions": ["restart"], "mode": "process"}, run)
    args, env = calls[0]
    assert args[0] == str(server), "found on the PATH of the instance's env"
    assert env["PATH"] == str(server.parent) and env.get("HOME") == os.environ.get("HOME"), "the host's env plus env"
