# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capability detection as the providers call it (a thin adapter over ``_capabilities``).

``_capabilities`` (detection from config.json, chat templates, GGUF metadata) is developed on its
own branch; until it is part of the collection, detection reports every capability as unknown
with a note saying why. Remove this adapter once ``_capabilities`` has landed.
"""
from __future__ import annotations

import copy

_LOADED: dict = {}


def _capabilities():
    """The _capabilities module, imported on first use (it imports jinja2); None if unavailable."""
    if "module" not in _LOADED:
        try:
            from ansible_collections.venom.models.plugins.module_utils import _capabilities as module  # pylint: disable=import-outside-toplevel
            _LOADED.update(module=module, error=None)
        except ImportError as exc:
            _LOADED.update(module=None, error=exc)
    return _LOADED["module"]


KEYS = ("supports_system_role", "supports_function_calling", "allowed_roles", "prompt_template",
        "max_context_length", "quantization")


def _unknown(why: str) -> dict:
    out = {k: None for k in KEYS}
    out["detected_from"] = {k: None for k in KEYS}
    out["notes"] = [why]
    return out


def detect_hf_capabilities(model_dir: str) -> dict:
    module = _capabilities()
    if module is None:
        return _unknown(f"capability detection unavailable: {_LOADED['error']}")
    return module.detect_hf_capabilities(model_dir)


def detect_gguf_capabilities(path: str) -> dict:
    module = _capabilities()
    if module is None:
        return _unknown(f"capability detection unavailable: {_LOADED['error']}")
    return module.detect_gguf_capabilities(path)


def merge_overrides(detected: dict, overrides: dict | None) -> dict:
    module = _capabilities()
    if module is not None:
        return module.merge_overrides(detected, overrides)
    out = copy.deepcopy(detected) if detected else _unknown("no detection")
    for key, value in (overrides or {}).items():
        out[key] = value
        out.setdefault("detected_from", {})[key] = "override"
    return out
