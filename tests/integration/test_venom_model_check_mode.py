# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model --check --diff tells the truth: capabilities predicted from the small files (no
weights downloaded), a diff that is a summary (per-file digests only with -vvv)."""
from __future__ import annotations

import json

from tests.lib.ansible_run import run_playbook
from tests.lib.olah_env import tiny_gemma_files
from tests.lib.olah_mirror import write_files

MODULE = "venom.models.venom_model"
CAP_KEYS = ("supports_system_role", "supports_function_calling", "allowed_roles", "prompt_template",
            "max_context_length", "quantization")


def _check_then_real(args: dict, verbosity: list | None = None):
    tasks = [{"name": "check", MODULE: args, "check_mode": True, "diff": True},
             {"name": "real", MODULE: args, "diff": True}]
    res = run_playbook([{"name": "check then real", "hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                       extra_args=verbosity)
    assert res.rc == 0, res.stdout[-4000:]
    return res, res.task("check"), res.task("real")


def test_check_mode_predicts_the_capabilities_the_install_detects(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-gemma"]
    since = len(olah.log_tail(10 ** 8))
    args = {"name": repo.name, "endpoint": olah.endpoint, "models_dir": str(tmp_path / "models")}
    tasks = [{"name": "check", MODULE: args, "check_mode": True, "diff": True}]
    res = run_playbook([{"name": "check", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    check = res.task("check")
    assert check["action"] == "install" and check["plan"]["capabilities_predicted"] is True
    caps = check["capabilities"]
    assert caps["supports_system_role"] is False and caps["max_context_length"] == 8192, caps
    assert caps["allowed_roles"] and "assistant" in caps["allowed_roles"], caps
    assert caps["prompt_template"] == json.loads(repo.files["tokenizer_config.json"])["chat_template"]
    log = olah.log_tail(10 ** 8)[since:]
    assert "tokenizer_config.json" in log and "model.safetensors" not in log, "the weights are not fetched"
    assert not (tmp_path / "models").exists(), "check mode creates nothing"
    _res, check, real = _check_then_real(args)
    assert {k: check["capabilities"][k] for k in CAP_KEYS} == {k: real["capabilities"][k] for k in CAP_KEYS}


def test_diff_is_a_summary_and_per_file_detail_needs_vvv(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-gemma"]
    args = {"name": repo.name, "endpoint": olah.endpoint, "models_dir": str(tmp_path / "models")}
    res, check, real = _check_then_real(args)
    for out in (check, real):
        after = out["diff"]["after"]
        assert after["files"] == len(repo.files) and after["revision"] == repo.head, after
        assert after["size_bytes"] == sum(len(d) for d in repo.files.values())
        assert after["capabilities"]["max_context_length"] == 8192
        assert after["capabilities"]["prompt_template"].endswith("characters)")
        assert "sha256" not in json.dumps(out["diff"])
    printed = res.stdout[res.stdout.index("TASK [check]"):res.stdout.index("TASK [real]")]
    assert "sha256" not in printed and len(printed.splitlines()) < 40, printed

    models = tmp_path / "again"
    args = dict(args, models_dir=str(models))
    _res, check, _real = _check_then_real(args, verbosity=["-vvv"])
    files = check["diff"]["after"]["files"]
    assert isinstance(files, list) and {f["path"] for f in files} == set(repo.files)
    assert all("sha256" in f for f in files)


def test_local_check_mode_predicts_from_the_source(tmp_path):
    src = tmp_path / "incoming" / "gemma"
    write_files(str(src), tiny_gemma_files())
    args = {"name": "gemma-local", "provider": "local", "source": str(src), "models_dir": str(tmp_path / "models")}
    _res, check, real = _check_then_real(args)
    assert check["plan"]["capabilities_predicted"] is True
    assert check["capabilities"]["supports_system_role"] is False and check["capabilities"]["max_context_length"] == 8192
    assert {k: check["capabilities"][k] for k in CAP_KEYS} == {k: real["capabilities"][k] for k in CAP_KEYS}
