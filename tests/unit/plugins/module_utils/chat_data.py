# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real chat templates (tests/unit/data/*.json) for the capability and chat tests."""
from __future__ import annotations

import json
import os

_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data")


def _load(name):
    with open(os.path.join(_DATA, name), encoding="utf-8") as fh:
        return json.load(fh)["templates"]


HF_TEMPLATES = _load("chat_templates.json")
OLLAMA_TEMPLATES = _load("ollama_templates.json")


def fresh_template_state() -> None:
    """Forget every compiled template, template analysis and the sandbox environment itself.

    They are cached per process; a test that checks what detection or rendering concludes about a
    template must reach the code that concludes it, not an answer kept from an earlier test (or from
    the process a mutation run forks its workers from).
    """
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.capabilities import detect, sandbox
    with detect._ANALYSIS_LOCK:  # pylint: disable=protected-access
        detect._ANALYSIS_CACHE.clear()  # pylint: disable=protected-access
    with sandbox._ENV_LOCK:  # pylint: disable=protected-access
        sandbox._CACHE.clear()  # pylint: disable=protected-access
        sandbox._ENV = None  # pylint: disable=protected-access


def tokens(name: str) -> dict:
    t = HF_TEMPLATES[name]
    return {k: t[k] for k in ("bos_token", "eos_token") if t.get(k)}


def capabilities_for(name: str, **known) -> dict:
    """Capabilities as far as the template goes (the rest unknown), with the model's special tokens."""
    caps = {"prompt_template": HF_TEMPLATES[name]["template"], "special_tokens": tokens(name)}
    caps.update(known)
    return caps
