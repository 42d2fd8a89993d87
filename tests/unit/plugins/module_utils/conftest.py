# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the library's unit tests."""
from __future__ import annotations

import pytest

from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry


@pytest.fixture
def models_dir(tmp_path):
    """A models directory with the runtime tests' models: local a and b (vLLM), an Ollama model, a
    damaged and a vanished entry, a Hugging Face model meant for Ollama."""
    d = tmp_path / "models"
    for name in ("a", "b"):
        p = d / "local" / name
        p.mkdir(parents=True)
        (p / "config.json").write_text("{}")
        Manifest(str(d)).upsert(new_entry(name, "local", local_path=str(p), runtime="vllm"))
    Manifest(str(d)).upsert(new_entry("llama3.2:latest", "ollama", runtime="ollama"))
    # every model has its own directory inside models_dir/<provider>/ (the manifest refuses anything else)
    Manifest(str(d)).upsert(new_entry("damaged", "local", local_path=str(d / "local" / "damaged"), status="damaged"))
    Manifest(str(d)).upsert(new_entry("gone", "local", local_path=str(d / "local" / "nowhere")))
    hf = d / "huggingface" / "org" / "for-ollama" / ("0" * 40)
    hf.mkdir(parents=True)
    Manifest(str(d)).upsert(new_entry("for-ollama", "huggingface", local_path=str(hf), runtime="ollama"))
    return str(d)
