# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capability detection (``_capabilities``) imported on first use.

``_capabilities`` loads Jinja2 and the chat-template sandbox (about 0.1 s). ``venom_model`` on an
installed model never detects anything, so the providers call detection through these wrappers and
an idempotent run does not pay for the import.
"""
from __future__ import annotations


def _capabilities():
    from ansible_collections.venom.models.plugins.module_utils.capabilities import detect as module  # pylint: disable=import-outside-toplevel
    return module


def detect_hf_capabilities(model_dir: str) -> dict:
    return _capabilities().detect_hf_capabilities(model_dir)


def detect_gguf_capabilities(path: str) -> dict:
    return _capabilities().detect_gguf_capabilities(path)


def merge_overrides(detected: dict, overrides: dict | None) -> dict:
    return _capabilities().merge_overrides(detected, overrides)
