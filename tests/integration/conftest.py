# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fixtures of the integration tier: a test names them as arguments, nothing to import.

* ``olah`` (session): a real Hugging Face mirror with the test repositories (tests/lib/olah_env.py).
* ``oci_registry``, ``ollama_models`` (session), ``ollama_double`` (per test): an OCI registry with
  the test models and the Ollama test double (tests/lib/ollama_env.py).
* ``vllm_venv``, ``minilm_model``, ``model_dirs`` (session): the vLLM venv and the test models it
  serves (tests/lib/vllm_env.py).

Defined here, each session fixture exists once in a session (imported into several test modules,
each module had its own: one olah server per module).
"""
from __future__ import annotations

from tests.lib.olah_env import olah
from tests.lib.ollama_env import oci_registry, ollama_double, ollama_models
from tests.lib.vllm_env import minilm_model, model_dirs, vllm_venv

__all__ = ["olah", "oci_registry", "ollama_double", "ollama_models", "vllm_venv", "minilm_model", "model_dirs"]
