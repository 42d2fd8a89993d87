# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import copy
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.venom.models.plugins.module_utils.capabilities import sandbox as _chat_template
from ansible_collections.venom.models.plugins.module_utils.capabilities.chat import (
    DEFAULT_FOLD_TEMPLATE, adapt_messages, render_chat)
from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import (
    ChatTemplateError, content_format, render_template)
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError, VenomError
from tests.unit.plugins.module_utils.chat_data import (
    HF_TEMPLATES, OLLAMA_TEMPLATES, capabilities_for, fresh_template_state)


@pytest.fixture(autouse=True)
def fresh_templates():
    """Each test analyses and compiles its templates itself (no answer cached by an earlier test)."""
    fresh_template_state()


CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant. Answer in French."},
    {"role": "user", "content": "What is the capital of Italy?"},
    {"role": "assistant", "content": "Rome."},
    {"role": "user", "content": "And of Spain?"},
    {"role": "user", "content": "Also give the population."},
]
TOOL_CONVERSATION = [
    {"role": "system", "content": "Use tools when needed."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call12345", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "22 C and sunny"},
    {"role": "assistant", "content": "It is 22 C and sunny in Paris."},
    {"role": "user", "content": "Thanks, and tomorrow?"},
]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _all_text_kept(original, rendered):
    for msg in original:
        content = msg.get("content")
        if isinstance(content, str) and content.strip():
            assert content.strip() in rendered, (msg, rendered)


@pytest.mark.parametrize("name", sorted(HF_TEMPLATES))
def test_each_family_renders_the_adapted_conversation_keeping_all_text(name):
    caps = capabilities_for(name)
    adapted = adapt_messages(CONVERSATION, caps)
    rendered = render_chat(adapted, caps)
    _all_text_kept(CONVERSATION, rendered)


def test_gemma_gets_the_source_fold_and_merged_turns():
    adapted = adapt_messages(CONVERSATION, capabilities_for("gemma-2"))
    assert adapted == [
        {"role": "user", "content": "Instructions: You are a terse assistant. Answer in French.\n\n"
                                    "User: What is the capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "And of Spain?\n\nAlso give the population."},
    ]
    assert render_chat(adapted, capabilities_for("gemma-2")).startswith(
        "<bos><start_of_turn>user\nInstructions: You are a terse assistant.")


def test_models_with_a_system_role_keep_it_and_no_merge_without_alternation():
    adapted = adapt_messages(CONVERSATION, capabilities_for("qwen2.5"))
    assert adapted == CONVERSATION
    adapted = adapt_messages(CONVERSATION, capabilities_for("llama-3"))
    assert [m["role"] for m in adapted] == ["system", "user", "assistant", "user", "user"]


def test_phi3_mini_drops_system_silently_so_it_is_folded():
    adapted = adapt_messages(CONVERSATION, capabilities_for("phi-3-mini"))
    assert adapted[0]["role"] == "user" and adapted[0]["content"].startswith("Instructions: You are a terse")
    assert not any(m["role"] == "system" for m in adapted)


def test_mistral_nemo_system_lost_when_not_ending_on_user_is_folded_instead():
    conv = CONVERSATION[:3]  # system, user, assistant: Nemo puts the system text in the last user turn only
    caps = capabilities_for("mistral-nemo")
    adapted = adapt_messages(conv, caps)
    assert adapted[0]["role"] == "user" and "Instructions: You are a terse" in adapted[0]["content"]
    _all_text_kept(conv, render_chat(adapted, caps))
    # ending on a user turn, the template's own placement is kept
    assert adapt_messages(CONVERSATION, caps)[0]["role"] == "system"


def test_capabilities_from_detection_without_template_still_fold():
    caps = {"supports_system_role": False, "allowed_roles": ["user", "assistant"], "prompt_template": None}
    adapted = adapt_messages(CONVERSATION, caps)
    assert adapted[0]["content"].startswith("Instructions:")
    assert len(adapted) == 4  # no template: alternation unknown, nothing merged


def test_unknown_capabilities_change_nothing():
    assert adapt_messages(CONVERSATION, {}) == CONVERSATION
    assert adapt_messages(CONVERSATION, None) == CONVERSATION


def test_custom_fold_template_and_modes():
    caps = capabilities_for("gemma-2")
    adapted = adapt_messages(CONVERSATION, caps, fold_template="<<{system}>> {user}")
    assert adapted[0]["content"] == "<<You are a terse assistant. Answer in French.>> What is the capital of Italy?"
    with pytest.raises(ValidationError, match="system_mode is 'error'"):
        adapt_messages(CONVERSATION, caps, system_mode="error")
    with pytest.raises(ChatTemplateError, match="System role not supported") as err:
        adapt_messages(CONVERSATION, caps, system_mode="keep")
    assert err.value.kind == "rejected" and err.value.fix
    with pytest.raises(ValidationError, match="fold_template"):
        adapt_messages(CONVERSATION, caps, fold_template="{system} only")
    with pytest.raises(ValidationError, match="system_mode"):
        adapt_messages(CONVERSATION, caps, system_mode="drop")


def test_fold_placeholders_in_text_are_not_expanded():
    conv = [{"role": "system", "content": "say {user}"}, {"role": "user", "content": "{system} literally"}]
    adapted = adapt_messages(conv, capabilities_for("gemma-2"))
    assert adapted[0]["content"] == "Instructions: say {user}\n\nUser: {system} literally"


def test_system_only_or_trailing_system_messages():
    caps = capabilities_for("gemma-2")
    assert adapt_messages([{"role": "system", "content": "S"}], caps) == [{"role": "user", "content": "S"}]
    conv = [{"role": "user", "content": "U"}, {"role": "system", "content": "late rule"}]
    assert adapt_messages(conv, caps) == [{"role": "user", "content": "Instructions: late rule\n\nUser: U"}]


def test_tool_role_refused_with_the_way_out_then_mapped():
    caps = capabilities_for("gemma-2")
    with pytest.raises(ValidationError) as err:
        adapt_messages(TOOL_CONVERSATION, caps)
    assert "Message 3 has the role 'tool'" in err.value.msg and "user, assistant" in err.value.msg
    assert "role_map" in err.value.fix
    adapted = adapt_messages(TOOL_CONVERSATION, caps, role_map={"tool": "user"})
    assert all(m["role"] in ("user", "assistant") for m in adapted)
    assert "tool_call_id" not in str(adapted)
    _all_text_kept(TOOL_CONVERSATION, render_chat(adapted, caps))


@pytest.mark.parametrize("name", ["llama-3.1", "qwen2.5", "mistral-nemo"])
def test_tool_conversations_render_with_tool_templates(name):
    caps = capabilities_for(name)
    adapted = adapt_messages(TOOL_CONVERSATION, caps)
    rendered = render_chat(adapted, caps, tools=[WEATHER_TOOL])
    _all_text_kept(TOOL_CONVERSATION, rendered)
    assert "get_weather" in rendered and '"city": "Paris"' in rendered  # JSON-string arguments became a mapping


def test_alternation_failure_that_cannot_be_fixed_is_explained():
    conv = [{"role": "assistant", "content": "I speak first"}, {"role": "user", "content": "hi"}]
    with pytest.raises(ChatTemplateError) as err:
        adapt_messages(conv, capabilities_for("mistral-7b-v0.1"))
    assert "alternate" in err.value.msg and "start with a user message" in err.value.fix


def test_developer_role_mapping_and_unknown_role():
    conv = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    adapted = adapt_messages(conv, capabilities_for("gemma-2"), role_map={"developer": "system"})
    assert adapted == [{"role": "user", "content": "Instructions: Be brief.\n\nUser: hi"}]
    with pytest.raises(ValidationError, match="'developer'"):
        adapt_messages(conv, capabilities_for("qwen2.5"))


def test_content_parts():
    conv = [{"role": "system", "content": [{"type": "text", "text": "Rule one."}]},
            {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                         {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    adapted = adapt_messages(conv, capabilities_for("gemma-2"), validate=False)
    assert adapted[0]["content"][0] == {"type": "text", "text": "Instructions: Rule one.\n\nUser: Look:"}
    assert adapted[0]["content"][1]["type"] == "image_url"
    with pytest.raises(ValidationError, match="image_url content"):
        render_chat(adapted, capabilities_for("gemma-2"))
    text_only = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert "a\nb" in render_chat(text_only, capabilities_for("qwen2.5"))


def test_openai_content_format_templates_get_parts():
    template = ("{% for m in messages %}{% for p in m['content'] %}[{{ p['type'] }}:{{ p['text'] }}]"
                "{% endfor %}{% endfor %}")
    assert content_format(template) == "openai"
    assert content_format(HF_TEMPLATES["qwen2.5"]["template"]) == "string"
    assert render_chat([{"role": "user", "content": "hi"}], template) == "[text:hi]"


def test_input_is_not_modified():
    conv = copy.deepcopy(TOOL_CONVERSATION)
    adapt_messages(conv, capabilities_for("gemma-2"), role_map={"tool": "user"})
    render_chat(conv, capabilities_for("qwen2.5"))
    assert conv == TOOL_CONVERSATION


@pytest.mark.parametrize("messages,words", [
    ([], "empty"),
    ("hello", "must be a list"),
    ([{"content": "no role"}], "no valid role"),
    ([{"role": "user", "content": 5}], "content must be a string"),
    ([{"role": "user", "content": [{"text": "no type"}]}], "not a mapping with a 'type'"),
    (["just text"], "not a mapping"),
])
def test_bad_messages(messages, words):
    with pytest.raises(ValidationError, match=words):
        adapt_messages(messages, capabilities_for("qwen2.5"))


def test_render_chat_needs_a_jinja_template():
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValidationError, match="no prompt_template"):
        render_chat(msgs, {"prompt_template": None})
    with pytest.raises(ChatTemplateError, match="Ollama") as err:
        render_chat(msgs, OLLAMA_TEMPLATES["llama3.2"]["template"])
    assert err.value.kind == "format"
    # adapt_messages accepts Ollama capabilities: nothing to render, detection results used as they are
    caps = {"supports_system_role": True, "allowed_roles": ["system", "user", "assistant"],
            "prompt_template": OLLAMA_TEMPLATES["gemma-instruct"]["template"]}
    assert adapt_messages(CONVERSATION, caps) == CONVERSATION


def test_render_chat_generation_prompt_and_extra_variables():
    caps = capabilities_for("llama-3.1")
    msgs = [{"role": "user", "content": "hi"}]
    with_prompt = render_chat(msgs, caps)
    without = render_chat(msgs, caps, add_generation_prompt=False)
    assert with_prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n") and not without.endswith("\n\n")
    assert "Today Date: 01 Jan 2030" in render_chat(msgs, caps, date_string="01 Jan 2030")


def test_tools_and_documents_are_passed_as_none_like_transformers():
    msgs = [{"role": "user", "content": "hi"}]
    assert render_chat(msgs, "{{ tools is defined }}|{{ tools is none }}|{{ documents is none }}") == "True|True|True"


# --- hostile templates -----------------------------------------------------------------------------

HOSTILE = {
    "dunder": "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ raise_exception.__globals__ }}",
    "mutate": "{% set x = messages %}{{ x.append(1) }}",
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "huge repeat": "{{ 'a' * 100000 * 100000 }}",
    "doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "doubling plus": "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "huge output": "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
    "padding": "{{ 'a'.ljust(10 ** 9) }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "center filter": "{{ 'a' | center(999999999) }}",
    "join bomb": "{{ range(100000) | join('x' * 100000) }}",
    "replace bomb": "{{ ('a' * 100000).replace('a', 'b' * 100000) }}",
    "power": "{{ 2 ** 10000000 }}",
    "big range": "{{ range(10 ** 9) | list }}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "tojson indent": "{{ messages | tojson(indent=999999999) }}",
    "lipsum": "{{ lipsum(10 ** 9) }}",
    "template size": "x" * (_chat_template.MAX_TEMPLATE_CHARS + 1),
}
# small structures that share their items stand for enormous texts: refused wherever they become text
_SHARED = ("{% set ns = namespace(z=['a' * 1000]) %}{% for i in range(60) %}{% set ns.z = [ns.z, ns.z] %}"
           "{% endfor %}")
for _sink in ("{{ ns.z }}", "{{ ns.z | tojson }}", "{{ ns.z ~ '' }}", "{{ ns.z | string }}", "{{ '%s' % (ns.z,) }}",
              "{{ '{}'.format(ns.z) }}", "{{ raise_exception(ns.z) }}", "{{ ns.z | join(',') }}", "{{ ns }}",
              "{{ ns.z | upper }}", "{{ ','.join(ns.z) }}", "{% set x = ns.z | list %}{{ x | pprint }}"):
    HOSTILE["shared structure " + _sink] = _SHARED + _sink


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_templates_are_refused_quickly(name, monkeypatch):
    monkeypatch.setattr(_chat_template, "DEFAULT_TIMEOUT", 1.0)
    start = time.monotonic()
    with pytest.raises(ChatTemplateError) as err:
        render_chat([{"role": "user", "content": "hi"}], HOSTILE[name])
    assert time.monotonic() - start < 5
    assert err.value.kind in ("unsafe", "limit", "error") and err.value.fix


def test_render_timeout_leaves_the_thread_usable(monkeypatch):
    monkeypatch.setattr(_chat_template, "DEFAULT_TIMEOUT", 0.3)
    with pytest.raises(ChatTemplateError, match="longer than 0.3 seconds"):
        render_template(HOSTILE["nested loops"], {"messages": []})
    time.sleep(0.5)  # no stray asynchronous exception arrives later
    assert render_template("{{ 1 + 1 }}", {}) == "2"


def test_environment_matches_transformers():
    out = render_template("{{ x | tojson }}|{{ y | tojson(indent=2) }}|{% for i in range(5) %}{% if i == 2 %}"
                          "{% break %}{% endif %}{{ i }}{% endfor %}|{% generation %}G{% endgeneration %}|"
                          "{{ strftime_now('%Y') | length }}\n  {% if true %}\n    T\n  {% endif %}",
                          {"x": {"k": "é<>&"}, "y": [1]})
    assert out == '{"k": "é<>&"}|[\n  1\n]|01|G|4\n    T\n'
    with pytest.raises(ChatTemplateError) as err:
        render_template("{{ raise_exception('custom refusal') }}", {})
    assert err.value.kind == "rejected" and err.value.template_message == "custom refusal"


# --- property tests ----------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40)
_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "developer"]),
                                  "content": _text})


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(_message, min_size=1, max_size=8), name=st.sampled_from(sorted(HF_TEMPLATES)),
       role_map=st.sampled_from([None, {"tool": "user", "developer": "system"}]))
def test_any_conversation_renders_with_all_text_or_fails_clearly(messages, name, role_map):
    caps = capabilities_for(name)
    for m in messages:
        if m["role"] == "tool":
            m["tool_call_id"] = "call12345"
    try:
        adapted = adapt_messages(messages, caps, role_map=role_map)
    except VenomError as exc:
        assert isinstance(exc, (ValidationError, ChatTemplateError)) and exc.msg and exc.fix
        return
    rendered = render_chat(adapted, caps)
    for m in messages:
        if m["role"] != "assistant" and m["content"].strip():
            assert m["content"].strip() in rendered
    if not role_map:
        assert all(m["role"] in ("system", "user", "assistant", "tool", "developer") for m in adapted)


@settings(max_examples=100, deadline=None)
@given(messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                                "content": _text}), min_size=1, max_size=8))
def test_gemma_accepts_every_conversation_that_does_not_start_with_the_assistant(messages):
    caps = capabilities_for("gemma-2")
    if any(m["role"] == "user" for m in messages):
        starts_with_assistant = next(m["role"] for m in messages if m["role"] != "system") == "assistant"
    else:  # the system text becomes the first user turn
        starts_with_assistant = messages[0]["role"] == "assistant"
    try:
        adapted = adapt_messages(messages, caps)
    except ChatTemplateError as exc:
        assert starts_with_assistant and exc.kind == "rejected"
        return
    assert not starts_with_assistant
    roles = [m["role"] for m in adapted]
    assert all(a != b for a, b in zip(roles, roles[1:]))
    assert "system" not in roles
    if messages[0]["role"] == "system" and any(m["role"] == "user" for m in messages):
        assert adapted[0]["content"].startswith(DEFAULT_FOLD_TEMPLATE.split("{", 1)[0])
