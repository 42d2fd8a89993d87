# SPDX-License-Identifier: GPL-3.0-or-later
"""The vllm role's template unit for instances (vllm@.service), rendered by the role's own
template and variables and checked by systemd-analyze verify; the instance lists it derives."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.lib.ansible_run import collections_root, run_playbook

INSTANCES = [{"name": "chat", "port": 8001, "gpus": [0, 1], "model": "/srv/chat"},
             {"name": "embed", "port": 8002, "state": "present"},
             {"name": "old", "state": "absent"}]


def test_the_instance_unit_renders_and_verifies(tmp_path):
    role = os.path.join(collections_root(), "ansible_collections", "venom", "models", "roles")
    unit = str(tmp_path / "vllm@.service")
    venv = os.path.dirname(os.path.dirname(sys.executable))  # a real python for ExecStart
    play = {"name": "unit", "hosts": "localhost", "gather_facts": False,
            "vars_files": [os.path.join(role, "vllm", "defaults", "main.yml"), os.path.join(role, "vllm", "vars", "main.yml")],
            "tasks": [{"name": "render", "ansible.builtin.template": {
                "src": os.path.join(role, "common", "templates", "runtime.service.j2"), "dest": unit},
                "vars": {"_common_unit": "{{ _vllm_instance_unit }}"}},
                {"name": "task", "ansible.builtin.debug": {"msg": {
                    "present": "{{ _vllm_instances_present | map(attribute='name') }}",
                    "absent": "{{ _vllm_instances_absent | map(attribute='name') }}"}}}]}
    overrides = {"vllm_instances": INSTANCES, "vllm_venv_dir": venv}  # (the defaults file is a vars_file here)
    res = run_playbook([play], extra_args=["-e", json.dumps(overrides)])
    assert res.rc == 0, res.text()
    assert res.task()["msg"] == {"present": ["chat", "embed"], "absent": ["old"]}
    with open(unit, encoding="utf-8") as fh:
        text = fh.read()
    assert "EnvironmentFile=/etc/venom-models/vllm-%i-settings.env" in text
    assert "EnvironmentFile=-/etc/venom-models/vllm-%i.env" in text
    assert "ConditionPathExists=/etc/venom-models/vllm-%i.env" in text
    assert "--port ${VLLM_PORT}" in text and "$VLLM_EXTRA_ARGS" in text
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
