# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The small files of a Hugging Face model that capability detection reads (``detect_hf_capabilities``).

Check mode fetches just these (kilobytes, never the weights) to predict the capabilities an
install will detect. Plain Python, no Jinja2 (``detect`` is loaded only when needed).
"""
from __future__ import annotations

HF_CAPABILITY_FILES = ("config.json", "tokenizer_config.json", "generation_config.json", "sentence_bert_config.json",
                       "chat_template.jinja", "chat_template.json")
ADDITIONAL_TEMPLATES_DIR = "additional_chat_templates"
MAX_CAPABILITY_FILE_BYTES = 64 * 1024 * 1024  # larger JSON is not read (detect.MAX_JSON_BYTES)


def is_capability_file(path: str) -> bool:
    """``path`` (relative to the model's directory) is one that capability detection reads."""
    if path in HF_CAPABILITY_FILES:
        return True
    head, _sep, name = path.partition("/")
    return head == ADDITIONAL_TEMPLATES_DIR and "/" not in name and name.endswith(".jinja")
