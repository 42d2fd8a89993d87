# SPDX-License-Identifier: GPL-3.0-or-later
"""The environment-file format round trip across its two writers: a file written by the roles'
template (roles/common, the vllm role's activation) is read back unchanged by venom_runtime."""
from __future__ import annotations

import os
import stat

from ansible_collections.venom.models.plugins.module_utils.runtimes.controller import RuntimeController, RuntimeSpec
from tests.lib.ansible_run import run_playbook

VALUES = {"VLLM_MODEL": '/srv/models/we"ird \\path $HOME `x`', "VLLM_SERVED_MODEL_NAME": "it's",
          "VLLM_EXTRA_ARGS": "--a=$b --c=\\d", "VLLM_API_KEY": 'k$y"`\\'}


def test_the_role_template_is_read_back_by_venom_runtime(tmp_path):
    path = str(tmp_path / "etc" / "vllm.env")
    os.makedirs(os.path.dirname(path))
    play = {"name": "env file", "hosts": "localhost", "gather_facts": False,
            "handlers": [{"name": "env written", "ansible.builtin.debug": {"msg": "written"}}],
            "tasks": [{"name": "task",
                       "ansible.builtin.include_role": {"name": "venom.models.common", "tasks_from": "env_file.yml"},
                       "vars": {"_common_env_path": path, "_common_env": VALUES, "_common_notify": "env written",
                                "_common_env_header": ["the activation"]}}]}
    res = run_playbook([play])
    assert res.rc == 0, res.text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "k$y" not in res.stdout + res.stderr, "the values never reach the output (no_log)"
    ctl = RuntimeController(RuntimeSpec(name="vllm", env_file=path))
    assert ctl.engine.read_env_file() == VALUES
    act = ctl.engine.env_file_activation()
    assert act.model_path == VALUES["VLLM_MODEL"] and act.flags == ["--a=$b", "--c=\\d"]
