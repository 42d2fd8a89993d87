# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""module_defaults for group/venom.models.all (meta/runtime.yml action_groups): the shared options
(models_dir, quota_gb, reserve_gb, lock_timeout) set once per play reach every module of the group."""
from __future__ import annotations

from tests.lib.ansible_run import run_playbook
from tests.lib.olah_env import tiny_gemma_files
from tests.lib.olah_mirror import write_files


def test_group_module_defaults_reach_every_module(tmp_path):
    src, models = tmp_path / "src", tmp_path / "models"
    write_files(str(src), tiny_gemma_files())
    play = {
        "name": "module_defaults for the whole collection", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/venom.models.all": {
            "models_dir": str(models), "quota_gb": 7, "reserve_gb": 0, "lock_timeout": 5}},
        "tasks": [
            {"name": "model", "venom.models.venom_model": {"name": "gemma-local", "provider": "local", "source": str(src)}},
            {"name": "facts", "venom.models.venom_model_facts": {"gather_subset": ["models", "usage"]}},
            {"name": "manifest", "venom.models.venom_manifest": {}},
            {"name": "runtime", "venom.models.venom_runtime": {"name": "vllm", "state": "stopped", "mode": "process",
                                                               "port": 18999}},
        ]}
    res = run_playbook([play])
    assert res.rc == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert res.task("model")["changed"] is True
    assert res.task("model")["plan"]["quota"]["quota_bytes"] == 7 * 10 ** 9
    assert (models / "manifest.json").is_file(), "models_dir came from module_defaults"
    facts = res.task("facts")["ansible_facts"]
    assert [m["name"] for m in facts["venom_models"]] == ["gemma-local"]
    assert facts["venom_usage"]["disk_limit_gb"] == 7
    assert res.task("manifest")["valid"] is True
    assert res.task("runtime")["changed"] is False
