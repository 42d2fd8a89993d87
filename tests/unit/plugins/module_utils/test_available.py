# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the available subset and of the runtimes facts (no server involved)."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.models import available as A
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.host.facts import DEFAULT_SUBSETS, SUBSETS, resolve_subsets
from ansible_collections.venom.models.plugins.module_utils.runtimes.controller import runtimes_status


def test_installed_marks_match_by_provider_and_case():
    models = [{"name": "Org/Model", "provider": "huggingface", "status": "installed", "revision": "a" * 40},
              {"name": "org/model", "provider": "local", "status": "installed", "revision": "b" * 40},
              {"name": "org/half", "provider": "huggingface", "status": "installing", "revision": None}]
    index = A._installed_index(models, "huggingface")
    assert A._mark({}, index, "org/model") == {"installed": True, "installed_revision": "a" * 40}
    assert A._mark({}, index, "org/half") == {"installed": False, "installed_revision": None}
    assert A._mark({}, index, "org/other") == {"installed": False, "installed_revision": None}


@pytest.mark.parametrize("provider,limit,text", [
    ("local", 5, "cannot list provider 'local'"),
    ("huggingface", 0, "limit must be between 1 and 1000"),
    ("ollama", 1001, "limit must be between 1 and 1000"),
])
def test_bad_queries_are_refused_before_any_request(tmp_path, provider, limit, text):
    with pytest.raises(ValidationError) as err:
        A.available(provider, str(tmp_path), endpoint="http://127.0.0.1:9", limit=limit)
    assert text in str(err.value) and err.value.fix


def test_available_is_not_gathered_by_default_but_runtimes_is():
    assert "available" in SUBSETS and "available" not in DEFAULT_SUBSETS and "runtimes" in DEFAULT_SUBSETS
    assert resolve_subsets([]) == list(DEFAULT_SUBSETS)
    assert resolve_subsets(["all", "!available"]) == list(DEFAULT_SUBSETS)
    assert "available" not in resolve_subsets(["all"]), "facts describe this host: no remote lookup in 'all'"
    assert "available" in resolve_subsets(["available"])


def test_runtimes_status_reads_the_state_venom_runtime_left(tmp_path):
    models_dir = str(tmp_path / "models")
    assert not os.path.exists(models_dir)
    st = runtimes_status(models_dir)
    assert st["vllm"]["configured"] is False and st["ollama"]["configured"] is False
    assert st["vllm"]["port"] == 8000 and st["ollama"]["port"] == 11434 and st["vllm"]["restarts"] is None
    assert not os.path.exists(models_dir), "reading the status creates nothing"

    state_dir = tmp_path / "models" / ".venom" / "runtimes"
    state_dir.mkdir(parents=True)
    (state_dir / "ollama.json").write_text(json.dumps({
        "kind": "venom.models/runtime", "name": "ollama", "mode": "process", "host": "127.0.0.1", "port": 9,
        "activation": {"model": "llama3:latest", "provider": "ollama"}, "restarts": 2}))
    st = runtimes_status(models_dir)["ollama"]
    assert st["configured"] is True and st["mode"] == "process" and st["port"] == 9
    assert st["running"] is False and st["crashed"] is False and st["healthy"] is False
    assert st["model"] == "llama3:latest" and st["restarts"] == 2 and st["url"] == "http://127.0.0.1:9"
