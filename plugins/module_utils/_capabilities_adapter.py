# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capability detection as the providers call it (a thin adapter over ``_capabilities``).

``_capabilities`` (detection from config.json, chat templates, GGUF metadata) is developed on its
own branch; until it is part of the collection, detection reports every capability as unknown
with a note saying why. Remove this adapter once ``_capabilities`` has landed.
"""
from __future__ import annotations

import copy

try:
    from ansible_collections.venom.models.plugins.module_utils._capabilities import (
        detect_gguf_capabilities as _detect_gguf, detect_hf_capabilities as _detect_hf, merge_overrides as _merge)
    CAPABILITIES_IMPORT_ERROR = None
except ImportError as _exc:
    CAPABILITIES_IMPORT_ERROR = _exc

KEYS = ("supports_system_role", "supports_function_calling", "allowed_roles", "prompt_template",
        "max_context_length", "quantization")


def _unknown(why: str) -> dict:
    out = {k: None for k in KEYS}
    out["detected_from"] = {k: None for k in KEYS}
    out["notes"] = [why]
    return out


def detect_hf_capabilities(model_dir: str) -> dict:
    if CAPABILITIES_IMPORT_ERROR is not None:
        return _unknown(f"capability detection unavailable: {CAPABILITIES_IMPORT_ERROR}")
    return _detect_hf(model_dir)


def detect_gguf_capabilities(path: str) -> dict:
    if CAPABILITIES_IMPORT_ERROR is not None:
        return _unknown(f"capability detection unavailable: {CAPABILITIES_IMPORT_ERROR}")
    return _detect_gguf(path)


def merge_overrides(detected: dict, overrides: dict | None) -> dict:
    if CAPABILITIES_IMPORT_ERROR is None:
        return _merge(detected, overrides)
    out = copy.deepcopy(detected) if detected else _unknown("no detection")
    for key, value in (overrides or {}).items():
        out[key] = value
        out.setdefault("detected_from", {})[key] = "override"
    return out
