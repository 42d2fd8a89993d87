# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.venom.models.plugins.filter.render_chat import FilterModule, render_chat
from tests.unit.plugins.module_utils.chat_data import (
    HF_TEMPLATES, OLLAMA_TEMPLATES, capabilities_for, fresh_template_state)


@pytest.fixture(autouse=True)
def fresh_templates():
    """Each test analyses and compiles its templates itself (no answer cached by an earlier test)."""
    fresh_template_state()


USER = [{"role": "user", "content": "Weather in Paris?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def test_registered_under_its_name():
    assert FilterModule().filters() == {"render_chat": render_chat}


def test_renders_with_capabilities_or_template_text():
    assert render_chat(USER, capabilities_for("gemma-2")) == \
        "<bos><start_of_turn>user\nWeather in Paris?<end_of_turn>\n<start_of_turn>model\n"
    assert render_chat(USER, HF_TEMPLATES["gemma-2"]["template"], add_generation_prompt=False,
                       special_tokens={"bos_token": "<B>"}) == "<B><start_of_turn>user\nWeather in Paris?<end_of_turn>\n"


def test_tools_documents_and_template_vars():
    out = render_chat(USER, capabilities_for("qwen2.5"), tools=[TOOL])
    assert '"name": "get_weather"' in out and "<tools>" in out
    out = render_chat(USER, capabilities_for("llama-3.1"), template_vars={"date_string": "02 Feb 2031"})
    assert "Today Date: 02 Feb 2031" in out
    assert render_chat(USER, "{{ documents[0].title }}", documents=[{"title": "T", "text": "x"}]) == "T"


def test_errors_are_filter_errors():
    with pytest.raises(AnsibleFilterError, match="System role not supported"):
        render_chat([{"role": "system", "content": "s"}] + USER, capabilities_for("gemma-2"))
    with pytest.raises(AnsibleFilterError, match="Ollama"):
        render_chat(USER, OLLAMA_TEMPLATES["gemma-instruct"]["template"])
    with pytest.raises(AnsibleFilterError, match="template_vars may not set messages"):
        render_chat(USER, capabilities_for("gemma-2"), template_vars={"messages": []})
    with pytest.raises(AnsibleFilterError, match="sandbox forbids"):
        render_chat(USER, "{{ messages.__class__ }}")
