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


# --- each bound of the sandbox on its own --------------------------------------------------------------
# MAX_VALUE_CHARS is 4 * 1024 * 1024 = 4194304; values of that size are built from small pieces
# ('a' * 1024) * 4096, since a single repeat count is bounded by MAX_WIDTH (100000).

BOUND = _chat_template.MAX_VALUE_CHARS
WIDTH = _chat_template.MAX_WIDTH


def _render(template, **variables):
    return render_template(template, dict(variables))


def _refusal(template, **variables) -> ChatTemplateError:
    with pytest.raises(ChatTemplateError) as err:
        render_template(template, dict(variables))
    return err.value


def test_the_bounds_are_those_documented():
    assert (BOUND, WIDTH, _chat_template.MAX_INT_BITS, _chat_template.MAX_RANGE) == (4194304, 100000, 4096, 100000)
    assert _chat_template.MAX_TEMPLATE_CHARS == 524288 and _chat_template.MAX_OUTPUT_CHARS == 4194304


@pytest.mark.parametrize("method", ["ljust", "rjust", "center", "zfill"])
def test_padding_methods_pad_up_to_the_width_bound_and_refuse_one_more(method):
    assert _render("{{ 'a'.%s(%d) | length }}" % (method, WIDTH)) == str(WIDTH)
    err = _refusal("{{ 'a'.%s(%d) }}" % (method, WIDTH + 1))
    assert err.kind == "limit" and f"str.{method} width {WIDTH + 1} is larger than {WIDTH}" in err.msg
    assert f"str.{method} width" in _refusal("{{ 'a'.%s(width=%d) }}" % (method, WIDTH + 1)).msg


def test_a_negative_padding_width_beyond_the_bound_is_refused_too():
    assert "str.ljust width -100001" in _refusal("{{ 'a'.ljust(-100001) }}").msg
    assert _render("{{ 'a'.ljust(-5) }}") == "a"


def test_expandtabs_tab_size_is_bounded():
    assert _render("{{ 'a\\tb'.expandtabs(%d) | length }}" % WIDTH) == str(WIDTH + 1)
    assert "str.expandtabs tab size 100001" in _refusal("{{ 'a\\tb'.expandtabs(100001) }}").msg
    assert "str.expandtabs tab size 100001" in _refusal("{{ 'a\\tb'.expandtabs(tabsize=100001) }}").msg
    assert _render("{{ 'a\\tb'.expandtabs() }}") == "a       b"


def test_expandtabs_refuses_before_building_a_text_beyond_the_bound():
    # 41 tabs of 100000 and 94263 other characters: 4194304 at most, counted before expanding
    fits = "{{ (('\\t' * 41) ~ ('a' * %d)).expandtabs(100000).count('a') }}"
    assert _render(fits % 94263) == "94263"
    assert "str.expandtabs would build" in _refusal(fits % 94264).msg


def test_expandtabs_with_the_default_tab_size_counts_eight_columns_a_tab():
    # 400000 tabs (8 columns each by default) and 594304 other characters: 9 * 400000 + 594304 = the bound
    fits = "{{ (('\\t' * 100000) * 4 ~ ('a' * 100000) * 5 ~ 'a' * %d).expandtabs().count('a') }}"
    assert _render(fits % 94304) == "594304"
    assert "str.expandtabs would build" in _refusal(fits % 94305).msg


def test_a_zero_tab_size_removes_the_tabs():
    assert _render("{{ (('\\t' * 100000) * 40 ~ 'a').expandtabs(0) }}") == "a"


def test_str_replace_builds_up_to_the_bound_and_refuses_beyond_before_building():
    assert _render("{{ ('a' * 1024).replace('a', 'b' * 4096).count('b') }}") == str(BOUND)
    err = _refusal("{{ ('a' * 1024).replace('a', 'b' * 4097) }}")
    assert err.kind == "limit" and "str.replace would build" in err.msg


def test_str_replace_of_the_empty_string_inserts_between_every_character():
    # 'abcd' gets 5 insertions: 4 + 5 * 838860 = the bound
    template = "{{ 'abcd'.replace('', ('b' * 100000) * 8 ~ 'b' * %d).count('a') }}"
    assert _render(template % 38860) == "1"
    assert "str.replace would build" in _refusal(template % 38861).msg


def test_str_replace_with_a_shorter_text_on_a_text_at_the_bound_is_fine():
    assert _render("{{ (('ab' * 1024) * 2048).replace('ab', 'b').count('b') }}") == str(BOUND // 2)


def test_str_join_accepts_any_iterable():
    assert _render("{{ ','.join(['a', 'b'] | map('upper')) }}") == "A,B"
    assert _render("{{ '-'.join('abc') }}") == "a-b-c"


def test_str_join_refuses_before_building_a_text_beyond_the_bound():
    # 4183 one-letter items with a 1000-character separator: counted as 2 + 3 * 4183 + 1000 * 4182
    assert _render("{{ ('x' * 1000).join(['a'] * 4182).count('a') }}") == "4182"
    assert "str.join would build" in _refusal("{{ ('x' * 1000).join(['a'] * 4183) }}").msg


def test_joining_nothing_with_a_separator_at_the_bound_builds_nothing():
    assert _render("{{ (('x' * 1024) * 4096).join([]) | length }}") == "0"


def test_str_translate_refuses_before_building_a_text_beyond_the_bound():
    assert _render("{{ (('a' * 1024) * 1024).translate({97: 'wxyz'}).count('w') }}") == str(BOUND // 4)
    assert "str.translate would build" in _refusal("{{ (('a' * 1024) * 1024).translate({97: 'vwxyz'}) }}").msg


def test_str_translate_without_replacement_texts_keeps_the_length():
    assert _render("{{ (('a' * 1024) * 2100).translate({98: none}).count('a') }}") == str(1024 * 2100)
    assert _render("{{ (('a' * 1024) * 2100).translate({97: ''}) | length }}") == "0"
    assert _render("{{ 'ab'.translate({97: 'xyz'}) }}") == "xyzb"


@pytest.mark.parametrize("expr", ["'a' | center(%d)", "'a' | indent(%d)", "'a' | indent(width=%d)",
                                  "'a' | wordwrap(%d)", "'a' | truncate(%d)", "[1] | batch(%d) | list",
                                  "[1] | slice(%d) | first"])
def test_filter_widths_are_bounded(expr):
    name = expr.split("|")[1].split("(")[0].strip()
    _render("{{ (%s) | length }}" % (expr % 1000))
    err = _refusal("{{ %s }}" % (expr % (WIDTH + 1)))
    assert err.kind == "limit" and f"an argument of the '{name}' filter {WIDTH + 1}" in err.msg


def test_the_center_filter_pads_up_to_the_width_bound():
    assert _render("{{ 'a' | center(%d) | length }}" % WIDTH) == str(WIDTH)


def test_filters_take_any_value_and_join_takes_any_iterable():
    assert _render("{{ range(3) | join(',') }}") == "0,1,2"
    assert _render("{{ ['a', 'b'] | map('upper') | join }}") == "AB"
    assert _render("{{ 5 | string }}|{{ 2.5 | round }}|{{ none | string }}") == "5|2.0|None"


def test_the_join_filter_refuses_before_building_a_text_beyond_the_bound():
    assert _render("{{ ((['a'] * 4182) | join('x' * 1000)).count('a') }}") == "4182"
    assert "the 'join' filter would build" in _refusal("{{ (['a'] * 4183) | join('x' * 1000) }}").msg
    assert "the 'join' filter would build" in _refusal("{{ (['a'] * 4183) | join(d='x' * 1000) }}").msg


def test_the_replace_filter_refuses_before_building_a_text_beyond_the_bound():
    assert _render("{{ (('a' * 1024) | replace('a', 'b' * 4096)).count('b') }}") == str(BOUND)
    assert "the 'replace' filter would build" in _refusal("{{ ('a' * 1024) | replace('a', 'b' * 4097) }}").msg
    template = "{{ ('abcd' | replace('', ('b' * 100000) * 8 ~ 'b' * %d)).count('a') }}"
    assert _render(template % 38860) == "1"
    assert "the 'replace' filter would build" in _refusal(template % 38861).msg
    assert _render("{{ ((('ab' * 1024) * 2000) | replace('ab', 'b')).count('b') }}") == str(1024 * 2000)


@pytest.mark.parametrize("fmt,args,words", [
    ("%100001d", "1", "a width in a %-format 100001"),
    ("%.100001f", "1", "a width in a %-format 100001"),
    ("%*d", "100001, 1", "a '*' width in a %-format 100001"),
    ("%.*f", "100001, 1", "a '*' width in a %-format 100001"),
    ("%(a)100001d", "{'a': 1}", "a width in a %-format 100001"),
])
def test_percent_format_widths_are_bounded(fmt, args, words):
    assert words in _refusal("{{ '%s' %% (%s) }}" % (fmt, args)).msg
    if not fmt.startswith("%("):
        assert words in _refusal("{{ '%s' | format(%s) }}" % (fmt, args)).msg


def test_percent_format_pads_up_to_the_width_bound():
    assert _render("{{ ('%%%dd' %% 1) | length }}" % WIDTH) == str(WIDTH)
    assert _render("{{ '%%%dd' | format(1) | length }}" % WIDTH) == str(WIDTH)
    assert _render("{{ ('%%*d' %% (%d, 1)) | length }}" % WIDTH) == str(WIDTH)
    assert _render("{{ '%s-%d' | format('a', 2) }}|{{ '%s' % 'b' }}") == "a-2|b"


@pytest.mark.parametrize("template,words", [
    ("{{ '{:>100001}'.format(1) }}", "a width in a format string 100001"),
    ("{{ '{0:.100001f}'.format(1) }}", "a width in a format string 100001"),
    ("{{ '{:>{}}'.format(1, 100001) }}", "a nested format width 100001"),
    ("{{ '{:>{w}}'.format(1, w=100001) }}", "a nested format width 100001"),
    ("{{ '{x:>{w}}'.format_map({'x': 1, 'w': 100001}) }}", "a nested format width 100001"),
])
def test_format_string_widths_are_bounded(template, words):
    err = _refusal(template)
    assert err.kind == "limit" and words in err.msg


def test_format_strings_pad_up_to_the_width_bound():
    assert _render("{{ '{:>100000}'.format(1) | length }}") == str(WIDTH)
    assert _render("{{ '{:>{}}'.format(1, 100000) | length }}") == str(WIDTH)
    assert _render("{{ '{x:>{w}}'.format_map({'x': 1, 'w': 100000}) | length }}") == str(WIDTH)
    assert _render("{{ '{}-{x}'.format(1, x=2) }}") == "1-2"


def test_tojson_indent_is_bounded():
    assert _render("{{ ([1] | tojson(indent=%d)).count(' ') }}" % WIDTH) == str(WIDTH)
    assert "the tojson indent 100001" in _refusal("{{ [1] | tojson(indent=100001) }}").msg


def test_strftime_now_takes_a_format_of_at_most_256_characters():
    assert _render("{{ strftime_now('%%Y' ~ ('x' * %d)) | length }}" % 254) == "258"
    assert "overlong format" in _refusal("{{ strftime_now('%%Y' ~ ('x' * %d)) }}" % 255).msg
    assert "overlong format" in _refusal("{{ strftime_now(5) }}").msg


def test_range_is_bounded_by_its_length():
    assert _render("{{ range(100000) | length }}|{{ range(0, 200000, 2) | length }}") == "100000|100000"
    assert "range() of 100001 items" in _refusal("{{ range(100001) }}").msg
    assert "range() of 100001 items" in _refusal("{{ range(0, 200002, 2) }}").msg


@pytest.mark.parametrize("half", ["('a' * 1024) * 2048", "[1] * 2048 * 1024"])
def test_plus_builds_up_to_the_bound_and_refuses_one_more(half):
    assert _render("{{ (%s + %s)[-1] }}" % (half, half)) in ("a", "1")
    err = _refusal("{{ %s + %s + %s }}" % (half, half, "'b'" if "'" in half else "[2]"))
    assert err.kind == "limit" and "'+' would build a value of 4194305" in err.msg


def test_repeat_builds_up_to_the_bound_and_refuses_beyond_in_both_orders():
    assert _render("{{ (('a' * 1024) * 4096)[-1] }}") == "a"
    assert "'*' would build a value of 4195328" in _refusal("{{ ('a' * 1024) * 4097 }}").msg
    assert "'*' would build a value of 4195328" in _refusal("{{ 4097 * ('a' * 1024) }}").msg


def test_repeat_counts_are_bounded_and_negative_counts_give_nothing():
    assert _render("{{ ('a' * 100000) | length }}|{{ 'a' * -5 }}|{{ [1] * 0 }}") == "100000||[]"
    assert "a repeat count 100001" in _refusal("{{ 'a' * 100001 }}").msg
    assert "a repeat count -100001" in _refusal("{{ 'a' * -100001 }}").msg
    assert "a repeat count 100001" in _refusal("{{ 100001 * [1] }}").msg


def test_integer_products_are_bounded_by_their_bits():
    assert _render("{{ (2 ** 2047 * 2 ** 2047) > 0 }}|{{ 6 * 7 }}") == "True|42"
    assert "'*' would compute a huge integer" in _refusal("{{ 2 ** 2048 * 2 ** 2047 }}").msg


def test_powers_are_bounded_by_their_bits():
    assert _render("{{ (2 ** 2048) > 0 }}|{{ (-1) ** 1000001 }}|{{ 1 ** 1000001 }}|{{ 2 ** -2 }}") == \
        "True|-1|1|0.25"
    assert "'**' would compute a huge integer" in _refusal("{{ 2 ** 2049 }}").msg
    assert "'**' would compute a huge integer" in _refusal("{{ (-2) ** 2049 }}").msg
    assert "'**' would compute a huge integer" in _refusal("{{ 3 ** 2049 }}").msg


def test_integers_beyond_the_bits_bound_are_refused_wherever_they_come_from():
    # '+' of integers is not checked beforehand: the bound applies to its result, as to a filter's
    half = "{% set b = 2 ** 2047 * 2 ** 2047 %}"   # 2 ** 4094
    assert _render(half + "{{ (b + b) > 0 }}|{{ ([b, b] | sum) > 0 }}") == "True|True"
    assert "an integer of 4097 bits (at most 4096)" in _refusal(half + "{{ b + b + b + b }}").msg
    assert "an integer of 4097 bits (at most 4096)" in _refusal(half + "{{ [b, b, b, b] | sum }}").msg


def test_a_call_that_returns_a_value_beyond_the_bound_is_refused():
    macro = "{% macro m(n) %}{% for i in range(n) %}{{ 'x' * 100000 }}{% endfor %}{% endmacro %}"
    assert _render(macro + "{{ m(41) | length }}") == "4100000"
    assert "it built a value of 4200000" in _refusal(macro + "{% set y = m(42) %}{{ y[0] }}").msg


def test_concatenation_with_tilde_is_bounded():
    assert _render("{{ (('a' * 1024) * 2000 ~ ('a' * 1024) * 2000)[-1] }}") == "a"
    assert "the '~' operator would build" in _refusal("{{ ('a' * 1024) * 2048 ~ ('a' * 1024) * 2048 ~ 'b' }}").msg


def test_data_nested_more_than_100_levels_is_refused_when_it_becomes_text():
    # a filter sees its arguments two levels deeper: 99 lists in each other pass, 100 do not
    build = "{% set ns = namespace(z='a') %}{% for i in range(N) %}{% set ns.z = [ns.z] %}{% endfor %}"
    assert _render(build.replace("N", "99") + "{{ ns.z | length }}") == "1"
    err = _refusal(build.replace("N", "100") + "{{ ns.z | length }}")
    assert "nested more than 100 levels deep" in err.msg


def test_printing_a_namespace_counts_what_it_holds():
    shared = ("{% set ns = namespace(z=['a' * 1000]) %}{% for i in range(13) %}{% set ns.z = [ns.z, ns.z] %}"
              "{% endfor %}")
    assert "printing a value would build a text" in _refusal(shared + "{{ ns }}").msg
    assert _render("{% set ns = namespace(a=1) %}{{ ns.a }}") == "1"


def test_shared_mappings_count_every_use():
    shared = ("{% set ns = namespace(z={'k': 'a' * 1000}) %}{% for i in range(13) %}"
              "{% set ns.z = {'l': ns.z, 'r': ns.z} %}{% endfor %}")
    assert "printing a value would build a text" in _refusal(shared + "{{ ns.z }}").msg
    assert "tojson would build a text" in _refusal(shared + "{{ ns.z | tojson }}").msg


def test_a_huge_message_for_raise_exception_is_refused_as_a_limit():
    shared = ("{% set ns = namespace(z=['a' * 1000]) %}{% for i in range(13) %}{% set ns.z = [ns.z, ns.z] %}"
              "{% endfor %}")
    err = _refusal(shared + "{{ raise_exception(ns.z) }}")
    assert err.kind == "limit" and "raise_exception would build" in err.msg


def test_the_output_bound_is_inclusive():
    assert render_template("{{ 'x' * 10 }}", {}, max_output=10) == "x" * 10
    assert "its output exceeded 9 characters" in pytest.raises(
        ChatTemplateError, render_template, "{{ 'x' * 10 }}", {}, max_output=9).value.msg


def test_values_may_grow_with_the_data_given_and_the_bound_comes_back_after():
    big = "a" * (3 * 1024 * 1024)
    assert _render("{{ (x ~ x) | length }}", x=big) == str(2 * len(big))
    assert "would build" in _refusal("{{ (('a' * 1024) * 3072 ~ ('a' * 1024) * 3072) | length }}").msg


def test_unsafe_attributes_are_refused_at_once():
    err = _refusal("{{ messages.__class__ is defined }}", messages=[])
    assert err.kind == "unsafe" and "__class__" in err.msg


def test_no_lipsum_and_no_html_escaping():
    assert _render("{{ lipsum is defined }}|{{ '<b>&' }}") == "False|<b>&"


@pytest.mark.parametrize("template,kind,words", [
    ("{{ 1 / 0 }}", "error", "ZeroDivisionError"),
    ("{{ x.y }}", "error", "'x' is undefined"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "limit", "recursed too deeply"),
    ("{{ raise_exception('no system') }}", "rejected", "rejected the conversation: no system"),
])
def test_render_failures_are_classified(template, kind, words):
    err = _refusal(template)
    assert err.kind == kind and words in err.msg and err.fix


@pytest.mark.parametrize("source,kind", [("", "input"), ("   ", "input"), (None, "input"), (5, "input"),
                                         ("{{ x ", "syntax"), ("{{ .Prompt }}", "format")])
def test_compile_refusals_are_classified(source, kind):
    with pytest.raises(ChatTemplateError) as err:
        _chat_template.compile_template(source)
    assert err.value.kind == kind and err.value.fix


def test_a_syntax_error_names_its_line():
    with pytest.raises(ChatTemplateError, match=r"\(line 2\)"):
        _chat_template.compile_template("ok\n{% if %}")


def test_the_template_size_bound_is_inclusive():
    size = _chat_template.MAX_TEMPLATE_CHARS
    assert _chat_template.compile_template("x" * size).render() == "x" * size
    with pytest.raises(ChatTemplateError, match=f"at most {size}") as err:
        _chat_template.compile_template("x" * (size + 1))
    assert err.value.kind == "limit"


def test_compiled_templates_are_kept_for_the_64_most_recently_used():
    first = _chat_template.compile_template("{{ 'first' }}")
    second = _chat_template.compile_template("{{ 'second' }}")
    for i in range(62):
        _chat_template.compile_template("{{ %d }}" % i)
    assert _chat_template.compile_template("{{ 'first' }}") is first   # used again: now the most recent
    _chat_template.compile_template("{{ 'one more' }}")
    assert _chat_template.compile_template("{{ 'first' }}") is first
    assert _chat_template.compile_template("{{ 'second' }}") is not second   # the least recently used went


@pytest.mark.parametrize("value,shown", [
    ((1, "a"), '[1, "a"]'), ({1: True}, '{"1": true}'), (None, "null"), (2.5, "2.5"), (False, "false"),
])
def test_plain_data_reaches_the_template_as_json_like_values(value, shown):
    assert _render("{{ x | tojson }}", x=value) == shown


def test_data_nested_more_than_64_levels_or_of_other_types_is_refused():
    deep = "a"
    for _level in range(63):
        deep = [deep]
    assert _render("{{ x | length }}", x=deep) == "1"
    with pytest.raises(ChatTemplateError, match="nested too deeply") as err:
        _render("{{ x }}", x=[deep])
    assert err.value.kind == "input"
    with pytest.raises(ChatTemplateError, match="holds a set") as err:
        _render("{{ x }}", x={1})
    assert err.value.kind == "input"


def test_template_references_lists_names_keys_and_short_constants():
    refs = _chat_template.template_references(
        "{{ messages[0]['role'] }}{{ m.content }}{{ '%s' }}{{ '%s' }}" % ("c" * 64, "d" * 65))
    assert refs["names"] == {"messages", "m"}
    assert refs["attrs"] == {"role", "content"}
    assert "c" * 64 in refs["consts"] and "d" * 65 not in refs["consts"]
    assert "role" in refs["consts"] and 0 not in refs["consts"]


@pytest.mark.parametrize("template,fmt", [
    ("{% for m in messages %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endfor %}", "openai"),
    ("{% for m in messages %}{% for p in m['content'] %}{{ p.text }}{% endfor %}{% endfor %}", "openai"),
    ("{% for m in messages %}{% for p in m['parts'] %}{{ p }}{% endfor %}{{ m.content }}{% endfor %}", "string"),
    ("{% for m in messages %}{% for p in m[0] %}{{ p }}{% endfor %}{% endfor %}", "string"),
])
def test_content_format_follows_loops_over_the_content(template, fmt):
    assert content_format(template) == fmt


# --- message checks, role mapping, folding and rendering details ---------------------------------------

ECHO = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
NO_SYSTEM = {"supports_system_role": False, "allowed_roles": ["user", "assistant"], "prompt_template": None}


def test_role_names_of_up_to_64_characters_are_accepted():
    for role in ("r" * 64, "_x", "tool_result-2", "A9"):
        assert adapt_messages([{"role": role, "content": "x"}], {}) == [{"role": role, "content": "x"}]
    for role in ("r" * 65, "1user", "-x", "a b", "", 5):
        with pytest.raises(ValidationError, match="no valid role"):
            adapt_messages([{"role": role, "content": "x"}], {})


def test_at_most_10000_messages_are_accepted():
    msgs = [{"role": "user", "content": "x"}] * 10000
    assert len(adapt_messages(msgs, {})) == 10000
    with pytest.raises(ValidationError, match="10001 messages is more than the 10000 accepted"):
        adapt_messages(msgs + [{"role": "user", "content": "x"}], {})


def test_the_text_of_all_messages_together_is_bounded():
    half = 16 * 1024 * 1024
    fits = [{"role": "user", "content": "a" * half},
            {"role": "user", "content": [{"type": "text", "text": "b" * half}]}]
    assert len(adapt_messages(fits, {})) == 2
    over = fits + [{"role": "user", "content": "c"}]
    with pytest.raises(ValidationError, match="more than 33554432 characters"):
        adapt_messages(over, {})


def test_messages_and_parts_may_be_tuples_and_content_may_be_null():
    msgs = ({"role": "user", "content": ({"type": "text", "text": "a"},)}, {"role": "assistant", "content": None})
    assert adapt_messages(msgs, {}) == [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                                        {"role": "assistant", "content": None}]


def test_a_text_part_needs_its_text():
    with pytest.raises(ValidationError, match="text content part 1 has no 'text' string"):
        adapt_messages([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}], {})
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    assert adapt_messages([{"role": "user", "content": [image]}], {})[0]["content"] == [image]


def test_capabilities_must_be_a_mapping_with_a_list_of_roles():
    with pytest.raises(ValidationError, match="capabilities must be a mapping"):
        adapt_messages([{"role": "user", "content": "x"}], ["user"])
    for allowed in ("user", [1], ("user", None)):
        with pytest.raises(ValidationError, match="allowed_roles must be a list"):
            adapt_messages([{"role": "user", "content": "x"}], {"allowed_roles": allowed})


def test_without_a_template_the_allowed_roles_decide_the_system_role():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert adapt_messages(msgs, {"allowed_roles": ["user", "assistant"]}) == [
        {"role": "user", "content": "Instructions: S\n\nUser: U"}]
    assert adapt_messages(msgs, {"allowed_roles": ("system", "user", "assistant")}) == msgs


def test_explicit_capabilities_win_over_the_template_analysis():
    caps = capabilities_for("gemma-2", supports_system_role=True, allowed_roles=["system", "user", "assistant"])
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert adapt_messages(msgs, caps, validate=False) == msgs


@pytest.mark.parametrize("role_map", [["tool"], {"tool": "bad role"}, {"tool": 5}, {5: "user"}])
def test_role_map_must_map_role_names_to_role_names(role_map):
    with pytest.raises(ValidationError, match="role_map must map role names"):
        adapt_messages([{"role": "user", "content": "x"}], {}, role_map=role_map)


def test_mapping_a_tool_result_to_another_role_drops_its_tool_fields():
    msgs = [{"role": "tool", "tool_call_id": "c1", "name": "f", "content": "22 C"}]
    assert adapt_messages(msgs, {}, role_map={"tool": "user"}) == [{"role": "user", "content": "22 C"}]


def test_mapping_to_the_tool_role_keeps_the_tool_fields():
    msgs = [{"role": "ipython", "tool_call_id": "c1", "name": "f", "content": "22 C"}]
    assert adapt_messages(msgs, {}, role_map={"ipython": "tool"}) == [dict(msgs[0], role="tool")]


def test_mapping_another_role_keeps_the_speaker_name():
    msgs = [{"role": "developer", "name": "ops", "tool_call_id": "x", "content": "be brief"}]
    assert adapt_messages(msgs, {}, role_map={"developer": "user"}) == [
        {"role": "user", "name": "ops", "content": "be brief"}]


def test_a_refused_role_names_the_role_it_was_mapped_from():
    with pytest.raises(ValidationError) as err:
        adapt_messages([{"role": "user", "content": "x"}, {"role": "developer", "content": "y"}], NO_SYSTEM,
                       role_map={"developer": "tool"})
    assert "Message 1 has the role 'tool' (mapped from 'developer')" in err.value.msg
    assert "it accepts: user, assistant" in err.value.msg and "{tool: user}" in err.value.fix
    with pytest.raises(ValidationError) as err:
        adapt_messages([{"role": "tool", "content": "y"}], NO_SYSTEM)
    assert "Message 0 has the role 'tool', which" in err.value.msg


def test_several_system_messages_fold_together_into_the_next_user_message():
    msgs = [{"role": "system", "content": "A"}, {"role": "system", "content": "B"}, {"role": "user", "content": "U"},
            {"role": "assistant", "content": "X"}, {"role": "system", "content": "C"}, {"role": "user", "content": "V"}]
    assert adapt_messages(msgs, NO_SYSTEM) == [
        {"role": "user", "content": "Instructions: A\n\nB\n\nUser: U"}, {"role": "assistant", "content": "X"},
        {"role": "user", "content": "Instructions: C\n\nUser: V"}]


def test_system_messages_with_no_user_message_become_one_where_the_first_was():
    msgs = [{"role": "assistant", "content": "X"}, {"role": "system", "content": "A"},
            {"role": "assistant", "content": "Y"}, {"role": "system", "content": "B"}]
    assert adapt_messages(msgs, NO_SYSTEM, merge_consecutive=False) == [
        {"role": "assistant", "content": "X"}, {"role": "user", "content": "A\n\nB"},
        {"role": "assistant", "content": "Y"}]


def test_trailing_system_messages_fold_into_the_last_user_message():
    msgs = [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "X"},
            {"role": "user", "content": [{"type": "text", "text": "U2"}]}, {"role": "assistant", "content": "Y"},
            {"role": "system", "content": [{"type": "text", "text": "S"}]}]
    assert adapt_messages(msgs, NO_SYSTEM) == [
        msgs[0], msgs[1], {"role": "user", "content": "Instructions: S\n\nUser: U2"}, msgs[3]]


def test_system_mode_keep_leaves_system_messages_to_the_template():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert adapt_messages(msgs, NO_SYSTEM, system_mode="keep") == msgs
    assert adapt_messages(msgs, {"supports_system_role": True}, system_mode="error") == msgs


def test_a_template_that_drops_user_text_is_reported_with_the_text_shortened():
    template = "{% for m in messages %}{% if m.role == 'assistant' %}{{ m.content }}{% endif %}{% endfor %}"
    long_text = "word " * 20
    caps = {"prompt_template": template, "supports_system_role": True, "allowed_roles": ["user", "assistant"]}
    with pytest.raises(ValidationError) as err:
        adapt_messages([{"role": "user", "content": long_text}], caps)
    assert "drops the text of message 0 (user)" in err.value.msg
    assert repr(long_text.strip()[:60] + "...") in err.value.msg
    with pytest.raises(ValidationError) as err:
        adapt_messages([{"role": "user", "content": "short"}], caps)
    assert "'short' does not appear" in err.value.msg
    assert adapt_messages([{"role": "user", "content": "x"}], caps, validate=False)


def test_assistant_text_may_be_rewritten_by_the_template():
    template = "{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}{% endif %}{% endfor %}"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>x</think>ok"}]
    caps = {"prompt_template": template, "supports_system_role": True, "allowed_roles": ["user", "assistant"]}
    assert adapt_messages(msgs, caps) == msgs


def test_a_system_text_the_template_drops_is_folded_instead():
    template = ("{% for m in messages %}{% if m.role == 'system' and loop.last %}{{ m.content }}{% endif %}"
                "{% if m.role != 'system' %}{{ m.content }}{% endif %}{% endfor %}")
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert adapt_messages(msgs, {"prompt_template": template, "supports_system_role": True,
                                 "allowed_roles": ["system", "user", "assistant"]}) == [
        {"role": "user", "content": "Instructions: S\n\nUser: U"}]


def test_template_errors_other_than_refusals_pass_through_adapt_messages():
    template = "{% if messages[0].content == 'boom' %}{{ 1 / 0 }}{% endif %}" + ECHO
    caps = {"prompt_template": template, "supports_system_role": True, "allowed_roles": ["user", "assistant"]}
    with pytest.raises(ChatTemplateError) as err:
        adapt_messages([{"role": "user", "content": "boom"}], caps)
    assert err.value.kind == "error" and "ZeroDivisionError" in err.value.msg


def test_a_template_refusal_after_adapting_is_explained():
    template = "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}" + ECHO
    with pytest.raises(ChatTemplateError) as err:
        adapt_messages([{"role": "assistant", "content": "x"}], {"prompt_template": template,
                                                                 "supports_system_role": True,
                                                                 "allowed_roles": ["user", "assistant"]})
    assert err.value.kind == "rejected" and "even after adapting it: user first" in err.value.msg
    assert err.value.template_message == "user first"


def test_json_string_arguments_of_tool_calls_become_mappings_for_the_template():
    template = ("{% for m in messages %}{% for c in m.tool_calls %}"
                "{{ c.function.arguments is mapping }},{% endfor %}{% endfor %}")
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
             {"id": "b", "type": "function", "function": {"name": "f", "arguments": "[1]"}},
             {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}},
             {"id": "d", "type": "function", "function": {"name": "f", "arguments": {"y": 2}}}]
    msgs = [{"role": "assistant", "content": "", "tool_calls": calls}]
    assert render_chat(msgs, template) == "True,False,False,True,"
    assert msgs[0]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'


def test_odd_tool_calls_reach_the_template_unchanged():
    template = "{% for m in messages %}{{ m.tool_calls }}{% endfor %}"
    assert render_chat([{"role": "assistant", "content": "", "tool_calls": ["x", {"function": "f"}]}],
                       template) == "['x', {'function': 'f'}]"
    assert render_chat([{"role": "assistant", "content": "", "tool_calls": "x"}], template) == "x"


def test_text_only_templates_name_every_kind_of_part_they_cannot_show():
    content = [{"type": "text", "text": "a"}, {"type": "input_audio"}, {"type": "image_url"}, {"type": "image_url"}]
    with pytest.raises(ValidationError, match="Message 1 has image_url, input_audio content"):
        render_chat([{"role": "user", "content": "x"}, {"role": "user", "content": content}], ECHO)


def test_special_tokens_come_from_the_capabilities_unless_given():
    template = "{{ bos_token }}|{{ eos_token is defined }}|{{ pad_token is defined }}"
    caps = {"prompt_template": template, "special_tokens": {"bos_token": "<s>", "pad_token": 0}}
    msgs = [{"role": "user", "content": "x"}]
    assert render_chat(msgs, caps) == "<s>|False|False"
    assert render_chat(msgs, caps, special_tokens={"bos_token": "[B]", "eos_token": "[E]"}) == "[B]|True|False"
    assert render_chat(msgs, template, special_tokens={"bos_token": "<b>"}) == "<b>|False|False"


def test_the_generation_prompt_flag_reaches_the_template_as_a_boolean():
    template = "{{ add_generation_prompt is sameas true }}"
    assert render_chat([{"role": "user", "content": "x"}], template, add_generation_prompt=1) == "True"
    assert render_chat([{"role": "user", "content": "x"}], template, add_generation_prompt=0) == "False"


def test_a_long_conversation_may_render_beyond_the_output_bound_up_to_twice_its_text():
    text = "a" * (3 * 1024 * 1024)
    template = "{% for m in messages %}{{ m.content }}{{ m.content }}{{ m.content }}{% endfor %}"
    assert len(render_chat([{"role": "user", "content": text}], template)) == 3 * len(text)


def test_render_chat_refuses_what_is_not_a_template():
    for value in ("", "   ", 5, None):
        with pytest.raises(ValidationError, match="render_chat needs a chat template"):
            render_chat([{"role": "user", "content": "x"}], value)
    with pytest.raises(ValidationError, match="no prompt_template"):
        render_chat([{"role": "user", "content": "x"}], {})


def test_a_single_star_width_given_alone_is_bounded():
    assert "a '*' width in a %-format 100001" in _refusal("{{ '%*d' % 100001 }}").msg


def test_joining_the_characters_of_a_long_text_counts_the_text_once():
    assert _render("{{ '-'.join(('a' * 1024) * 1500).count('-') }}") == str(1024 * 1500 - 1)


def test_guarded_str_methods_take_keyword_arguments():
    assert _render("{{ 'a\\tb'.expandtabs(tabsize=2) }}") == "a b"


def test_a_system_message_without_content_folds_no_invented_text():
    msgs = [{"role": "system", "content": None}, {"role": "user", "content": "U"}]
    folded = adapt_messages(msgs, NO_SYSTEM)[0]["content"]
    assert folded.replace("Instructions:", "").replace("User: U", "").strip() == ""


def test_a_system_message_of_several_text_parts_folds_them_line_by_line():
    msgs = [{"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
            {"role": "user", "content": "U"}]
    assert adapt_messages(msgs, NO_SYSTEM)[0]["content"] == "Instructions: A\nB\n\nUser: U"


def test_a_trailing_system_message_folded_into_a_user_message_keeps_its_image():
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    msgs = [{"role": "user", "content": [{"type": "text", "text": "U"}, image]}, {"role": "system", "content": "S"}]
    assert adapt_messages(msgs, NO_SYSTEM) == [
        {"role": "user", "content": [{"type": "text", "text": "Instructions: S\n\nUser: U"}, image]}]


def test_tuples_are_bounded_like_lists():
    assert _render("{{ (((1,) * 100000) * 41)[-1] }}") == "1"
    assert "'*' would build a value of 4200000" in _refusal("{{ ((1,) * 100000) * 42 }}").msg


def test_tilde_joins_texts_up_to_the_bound_counting_each_piece():
    # three pieces count their lengths plus 2 each, plus 2: 2097152 + 2096128 + 1016 + 8 = the bound
    pieces = "{% set a = ('a' * 1024) * 2048 %}{% set b = ('a' * 1024) * 2047 %}"
    assert _render(pieces + "{{ (a ~ b ~ 'x' * 1016)[-1] }}") == "x"
    assert "the '~' operator would build" in _refusal(pieces + "{{ a ~ b ~ 'x' * 1017 }}").msg


def test_percent_formatting_refuses_before_building_a_text_beyond_the_bound():
    left = "(('x' * 1024) * 2048 ~ '%s')"
    assert _render("{{ (%s %% (('y' * 1024) * 2047))[-1] }}" % left) == "y"
    err = _refusal("{{ %s %% (('y' * 1024) * 2048 ~ 'y') }}" % left)
    assert "'%' formatting would build a text of more than 4194304" in err.msg


def test_str_format_and_filters_refuse_arguments_whose_text_is_beyond_the_bound():
    shared = ("{% set ns = namespace(z=['a' * 1000]) %}{% for i in range(13) %}{% set ns.z = [ns.z, ns.z] %}"
              "{% endfor %}")
    assert "str.format would build a text" in _refusal(shared + "{{ '{}'.format(ns.z) }}").msg
    assert "the 'upper' filter would build a text" in _refusal(shared + "{{ ns.z | upper }}").msg


def test_the_replace_filter_takes_non_text_values_like_jinja():
    assert _render("{{ 12321 | replace(2, 'x') }}") == "1x3x1"


def test_tojson_keeps_the_key_order():
    assert _render("{{ {'b': 1, 'a': 2} | tojson }}") == '{"b": 1, "a": 2}'


def test_the_default_output_bound_is_inclusive():
    loop = "{% for i in range(4096) %}{{ 'x' * 1024 }}{% endfor %}"
    assert len(_render(loop)) == _chat_template.MAX_OUTPUT_CHARS
    assert "its output exceeded 4194304 characters" in _refusal(loop + "x").msg


def test_a_template_nested_too_deeply_to_compile_is_a_syntax_error():
    with pytest.raises(ChatTemplateError, match="does not compile: RecursionError") as err:
        _chat_template.compile_template("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")
    assert err.value.kind == "syntax"


def test_a_dropped_text_of_60_characters_is_shown_whole():
    template = "{% for m in messages %}{% if m.role == 'assistant' %}{{ m.content }}{% endif %}{% endfor %}"
    caps = {"prompt_template": template, "supports_system_role": True, "allowed_roles": ["user", "assistant"]}
    with pytest.raises(ValidationError) as err:
        adapt_messages([{"role": "user", "content": "x" * 60}], caps)
    assert repr("x" * 60) + " does not appear" in err.value.msg


def test_tojson_takes_the_separators_and_sort_keys_of_transformers():
    assert _render("{{ {'b': 1, 'a': 2} | tojson(separators=(',', ':'), sort_keys=true) }}") == '{"a":2,"b":1}'


def test_tojson_of_a_text_at_the_bound_is_refused_for_its_quotes():
    err = _refusal("{{ (('a' * 1024) * 4096) | tojson }}")
    assert err.kind == "limit" and "it built a value of 4194306" in err.msg


def test_refusals_of_capabilities_and_system_mode_say_what_to_do():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    with pytest.raises(ValidationError) as err:
        adapt_messages(msgs, "caps")
    assert "ansible_facts['venom_models'][0]['capabilities']" in err.value.fix
    with pytest.raises(ValidationError) as err:
        adapt_messages(msgs, {"allowed_roles": "user"})
    assert "[system, user, assistant]" in err.value.fix
    with pytest.raises(ValidationError) as err:
        adapt_messages(msgs, NO_SYSTEM, system_mode="error")
    assert "system_mode: fold" in err.value.fix


def test_a_model_said_to_have_no_system_role_gets_it_folded_whatever_roles_are_listed():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    folded = [{"role": "user", "content": "Instructions: S\n\nUser: U"}]
    assert adapt_messages(msgs, {"supports_system_role": False}) == folded
    assert adapt_messages(msgs, {"supports_system_role": False, "allowed_roles": ["system", "user"]}) == folded


def test_a_model_that_lists_no_system_role_gets_it_folded_even_if_said_to_support_it():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert adapt_messages(msgs, {"supports_system_role": True, "allowed_roles": ["user", "assistant"]}) == [
        {"role": "user", "content": "Instructions: S\n\nUser: U"}]


def test_the_template_decides_the_system_role_when_only_roles_are_given():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    caps = capabilities_for("gemma-2", allowed_roles=["system", "user", "assistant"])
    assert adapt_messages(msgs, caps, validate=False) == [{"role": "user", "content": "Instructions: S\n\nUser: U"}]


def test_user_text_dropped_after_an_assistant_turn_is_reported():
    template = "{% for m in messages %}{% if loop.index < 3 %}{{ m.content }}{% endif %}{% endfor %}"
    caps = {"prompt_template": template, "supports_system_role": True, "allowed_roles": ["user", "assistant"]}
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    with pytest.raises(ValidationError, match=r"message 2 \(user\): 'c'"):
        adapt_messages(msgs, caps)


def test_option_refusals_say_what_to_do():
    msgs = [{"role": "user", "content": "U"}]
    with pytest.raises(ValidationError) as err:
        adapt_messages(msgs, {}, system_mode="drop")
    assert "fold (default), keep or error" in err.value.fix
    with pytest.raises(ValidationError) as err:
        adapt_messages(msgs, {}, fold_template="{user} only")
    assert "Instructions: {system}" in err.value.fix
    with pytest.raises(ValidationError) as err:
        adapt_messages(msgs, {}, role_map={"tool": "a b"})
    assert "{tool: user, developer: system}" in err.value.fix


def test_a_lone_system_message_the_template_drops_is_folded_into_a_user_message():
    template = "{% for m in messages %}{% if m.role != 'system' %}{{ m.content }}{% endif %}{% endfor %}"
    caps = {"prompt_template": template, "supports_system_role": True, "allowed_roles": ["system", "user"]}
    assert adapt_messages([{"role": "system", "content": "S"}], caps) == [{"role": "user", "content": "S"}]


def test_text_still_dropped_after_folding_is_reported_with_the_way_out():
    template = "{% for m in messages %}{% if m.role == 'assistant' %}{{ m.content }}{% endif %}{% endfor %}"
    caps = {"prompt_template": template, "supports_system_role": True,
            "allowed_roles": ["system", "user", "assistant"]}
    with pytest.raises(ValidationError, match=r"message 0 \(system\): 'S'") as err:
        adapt_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], caps)
    assert "validate: false" in err.value.fix


def test_a_dropped_text_of_61_characters_is_shortened():
    template = "{% for m in messages %}{% if m.role == 'assistant' %}{{ m.content }}{% endif %}{% endfor %}"
    caps = {"prompt_template": template, "supports_system_role": True, "allowed_roles": ["user", "assistant"]}
    with pytest.raises(ValidationError) as err:
        adapt_messages([{"role": "user", "content": "y" * 61}], caps)
    assert repr("y" * 60 + "...") + " does not appear" in err.value.msg


def test_turns_folded_after_the_template_dropped_the_system_text_are_merged_again():
    caps = capabilities_for("mistral-nemo")
    msgs = [{"role": "system", "content": "Answer tersely."}, {"role": "user", "content": "alpha"},
            {"role": "user", "content": "beta"}, {"role": "assistant", "content": "gamma"}]
    assert adapt_messages(msgs, caps) == [
        {"role": "user", "content": "Instructions: Answer tersely.\n\nUser: alpha\n\nbeta"},
        {"role": "assistant", "content": "gamma"}]


def test_str_translate_with_a_list_table():
    assert _render("{{ 'ab'.translate(['x'] * 98) }}") == "xb"


def test_the_watchdog_interrupts_a_long_loop_and_says_it_fired():
    watchdog = _chat_template._Watchdog(0.05)  # pylint: disable=protected-access
    interrupted = False
    try:
        with watchdog:
            while True:
                pass
    except _chat_template._RenderTimeout:  # pylint: disable=protected-access
        interrupted = True
    assert interrupted and watchdog.fired
    with _chat_template._Watchdog(None) as idle:  # pylint: disable=protected-access
        pass
    assert not idle.fired


def test_str_join_with_two_arguments_fails_as_in_python():
    err = _refusal("{{ ','.join(['a'], 'b') }}")
    assert err.kind == "error" and "TypeError" in err.msg


def test_tojson_escapes_non_ascii_when_asked():
    assert _render("{{ 'é' | tojson(ensure_ascii=true) }}|{{ 'é' | tojson }}") == '"\\u00e9"|"é"'


@pytest.mark.parametrize("value,room", [("{'k': s}", 7), ("[s, 1]", 30), ("[s, none]", 30), ("[s, 1.5]", 30)])
def test_printing_a_structure_counts_its_text_up_to_the_bound(value, room):
    # a mapping entry counts its key, value and 4; a list item 2 more; a number or null 24
    text = "{%% set s = ('a' * 1024) * 4095 ~ 'a' * %d %%}{{ %s }}"
    fits = 1024 - room
    assert len(render_template(text % (fits, value), {}, max_output=5 * 1024 * 1024)) > BOUND - room
    with pytest.raises(ChatTemplateError, match="printing a value would build a text of more than 4194304"):
        render_template(text % (fits + 1, value), {}, max_output=5 * 1024 * 1024)


def test_printing_other_objects_counts_64_characters_each():
    text = "{%% set s = ('a' * 1024) * 4095 ~ 'a' * %d %%}{{ [s, range(2)] }}"
    assert len(render_template(text % 954, {}, max_output=5 * 1024 * 1024)) > BOUND - 70
    with pytest.raises(ChatTemplateError, match="printing a value would build"):
        render_template(text % 955, {}, max_output=5 * 1024 * 1024)


def test_the_value_bound_is_twice_the_data_given_plus_one_mib():
    # the data {'x': 3 MiB} counts 3 MiB + 7, so values may reach 2 * (3 MiB + 7) + 1 MiB = 7340046
    template = "{%% set pad = ('b' * 1024) * 1024 ~ 'b' * %d %%}{{ (x ~ x ~ pad)[-1] }}"
    text = "a" * (3 * 1024 * 1024)
    assert render_template(template % 6, {"x": text}) == "b"
    with pytest.raises(ChatTemplateError, match="more than 7340046 characters"):
        render_template(template % 7, {"x": text})


@pytest.mark.parametrize("template,exc", [
    ("{{ 10.0 ** 400 }}", "OverflowError"), ("{{ '{:d}'.format('a') }}", "ValueError"),
    ("{{ '{x}'.format() }}", "KeyError"), ("{{ '{1}'.format(0) }}", "IndexError"),
    ("{{ [1, 'a'] | sort }}", "TypeError"), ("{{ 1 // 0 }}", "ZeroDivisionError"),
])
def test_python_errors_in_a_template_are_template_failures(template, exc):
    err = _refusal(template)
    assert err.kind == "error" and f"The chat template failed: {exc}" in err.msg


def test_a_number_too_long_to_read_is_a_syntax_error():
    with pytest.raises(ChatTemplateError, match="does not compile: ValueError") as err:
        _chat_template.compile_template("{{ 1" + "0" * 5000 + " }}")
    assert err.value.kind == "syntax"


def test_render_chat_explains_that_only_ollama_renders_go_templates():
    with pytest.raises(ChatTemplateError) as err:
        render_chat([{"role": "user", "content": "x"}], OLLAMA_TEMPLATES["llama3.2"]["template"])
    assert "only Ollama renders" in err.value.msg and err.value.kind == "format"
    assert "render_chat renders Jinja chat templates" in err.value.fix


def test_the_output_of_a_conversation_is_bounded_by_twice_its_text_past_the_output_bound():
    text = "a" * (3 * 1024 * 1024)
    template = "{% for m in messages %}" + "{{ m.content }}" * 4 + "{% endfor %}"
    with pytest.raises(ChatTemplateError, match="its output exceeded"):
        render_chat([{"role": "user", "content": text}], template)


def test_render_chat_refusals_say_what_to_do():
    with pytest.raises(ValidationError) as err:
        render_chat([{"role": "user", "content": "x"}], "")
    assert "venom_model_facts" in err.value.fix
    with pytest.raises(ValidationError) as err:
        render_chat([{"role": "user", "content": [{"type": "image_url"}]}], ECHO)
    assert "Send only text parts" in err.value.fix


@pytest.mark.parametrize("messages,words,fix", [
    ("hello", "must be a list, not str", "Pass a list of {role, content} mappings"),
    ([], "message list is empty", "Give at least one message"),
    ([{"role": "user", "content": "x"}] * 10001, "10001 messages", "Shorten the conversation"),
    ([{"role": "user", "content": "x"}, "text"], "Message 1 is a str, not a mapping", "Give each message as"),
    ([{"content": "x"}], "Message 0 has no valid role", "a role such as system, user"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": 5}],
     "Message 1: content must be a string, a list of content parts or null, not int", "as a string"),
    ([{"role": "user", "content": [{"text": "x"}]}], "content part 0 is not a mapping", "OpenAI content parts"),
    ([{"role": "user", "content": [{"type": "text"}]}], "text content part 0 has no 'text'", "Give each text part"),
    ([{"role": "user", "content": "a" * (32 * 1024 * 1024 + 1)}], "more than 33554432", "Shorten the conversation"),
])
def test_refused_messages_name_the_problem_and_the_fix(messages, words, fix):
    with pytest.raises(ValidationError) as err:
        adapt_messages(messages, {})
    assert words in err.value.msg and fix in err.value.fix


def test_the_adapted_messages_share_nothing_with_the_input():
    msgs = [{"role": "assistant", "content": "", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]
    out = adapt_messages(msgs, {})
    out[0]["tool_calls"][0]["function"]["name"] = "g"
    out[0]["tool_calls"].append({})
    assert msgs == [{"role": "assistant", "content": "", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]


def test_a_chat_template_error_is_of_kind_error_unless_told():
    assert ChatTemplateError("x").kind == "error" and ChatTemplateError("x", kind="limit").kind == "limit"


def test_a_chat_template_error_reports_its_kind():
    assert ChatTemplateError("x", fix="y").to_dict() == {
        "error": "ChatTemplateError", "msg": "x", "fix": "y", "details": {"kind": "error"}}
    assert ChatTemplateError("x", kind="limit").to_dict()["details"] == {"kind": "limit"}


def test_a_compiled_template_rendered_directly_keeps_the_default_bounds():
    assert _chat_template.compile_template("{{ 'a' * 3 }}").render() == "aaa"
    with pytest.raises(ChatTemplateError, match="'\\*' would build a value of 4195328"):
        _chat_template.compile_template("{{ ('a' * 1024) * 4097 }}").render()


def test_data_the_template_cannot_take_is_refused_with_the_fix():
    with pytest.raises(ChatTemplateError) as err:
        _render("{{ x }}", x={1, 2})
    assert "Pass only strings, numbers, booleans, lists and mappings" in err.value.fix
    deep = "a"
    for _level in range(70):
        deep = [deep]
    with pytest.raises(ChatTemplateError) as err:
        _render("{{ x }}", x=deep)
    assert "Pass plain messages" in err.value.fix


def test_capabilities_without_a_template_name_where_to_set_one():
    with pytest.raises(ValidationError) as err:
        render_chat([{"role": "user", "content": "x"}], {"prompt_template": None})
    assert "capabilities.prompt_template" in err.value.fix
    with pytest.raises(ValidationError) as err:
        adapt_messages([{"role": "user", "content": "x"}], 5)
    assert err.value.fix.endswith("e.g. ansible_facts['venom_models'][0]['capabilities'].")


def test_without_jinja2_rendering_names_the_missing_package(monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.errors import MissingDependencyError
    monkeypatch.setattr(_chat_template, "jinja2", None)
    monkeypatch.setattr(_chat_template, "JINJA2_IMPORT_ERROR", ImportError("no jinja2 here"))
    with pytest.raises(MissingDependencyError) as err:
        _chat_template.require_jinja2()
    assert err.value.package == "jinja2"
    assert "required to render chat templates but cannot be imported (no jinja2 here)" in err.value.msg


@pytest.mark.parametrize("source,kind", [
    ("{{ messages }}", "jinja"), ("{{ .Prompt }}", "go"), ("{{- $x := 1 }}", "go"), ("{{ range .Messages }}", "go"),
    ("{{ end }}", "go"), ("{{ if .System }}", "go"), ("{{ if eq .Role \"user\" }}", "go"), ("", None), ("  ", None),
    (None, None), (5, None),
])
def test_template_kind_tells_jinja_from_go_templates(source, kind):
    assert _chat_template.template_kind(source) == kind


def test_an_explicit_render_timeout_is_used():
    with pytest.raises(ChatTemplateError, match="longer than 0.2 seconds"):
        render_template(HOSTILE["nested loops"], {"messages": []}, timeout=0.2)


def test_values_may_grow_with_data_made_of_many_small_pieces():
    pieces = ["a" * 1000] * 3000   # 3 MB over 3000 items
    assert render_template("{{ ((x | join) ~ (x | join)) | length }}", {"x": pieces}) == "6000000"


# a loop that ends by itself, after a second or so: a render stopped by its timeout is stopped by the timeout
_FINITE_LOOPS = "{% for i in range(4000) %}{% for j in range(4000) %}{% endfor %}{% endfor %}done"


def test_a_render_that_would_end_after_its_timeout_is_stopped_at_the_timeout():
    with pytest.raises(ChatTemplateError, match="rendering took longer than 0.001 seconds") as err:
        render_template(_FINITE_LOOPS, {}, timeout=0.001)
    assert err.value.kind == "limit"


def test_the_default_timeout_stops_a_render_that_would_end_later(monkeypatch):
    monkeypatch.setattr(_chat_template, "DEFAULT_TIMEOUT", 0.001)
    with pytest.raises(ChatTemplateError, match="rendering took longer than 0.001 seconds") as err:
        render_template(_FINITE_LOOPS, {})
    assert err.value.kind == "limit"


def test_a_failure_message_that_ends_in_a_full_stop_keeps_just_one():
    err = _refusal("{% block body %}{{ super() }}{% endblock %}")
    assert err.kind == "error"
    assert err.msg == "The chat template failed: there is no parent block called 'body'."


def test_running_out_of_memory_while_rendering_is_refused_as_a_limit(monkeypatch):
    class _NoMemoryClock:
        @staticmethod
        def now():
            raise MemoryError

    monkeypatch.setattr(_chat_template, "datetime", _NoMemoryClock)
    err = _refusal("{{ strftime_now('%Y') }}")
    assert err.kind == "limit" and "it ran out of memory" in err.msg


def test_a_compiled_template_rendered_directly_after_a_render_keeps_the_default_bounds():
    assert render_template("{{ 'a' * 3 }}", {}) == "aaa"
    with pytest.raises(ChatTemplateError, match="'\\*' would build a value of 4195328"):
        _chat_template.compile_template("{{ ('a' * 1024) * 4097 }}").render()


@pytest.mark.parametrize("mapping", ["{ns.z: 1}", "{1: ns.z}"])
def test_the_keys_and_values_of_a_printed_mapping_count_toward_the_nesting_bound(mapping):
    # printed, the mapping is level 0 and its key or value level 1: 100 tuples in each other pass, 101 do not
    build = "{% set ns = namespace(z=1) %}{% for i in range(N) %}{% set ns.z = (ns.z,) %}{% endfor %}"
    out = _render(build.replace("N", "100") + "{{ " + mapping + " }}")
    assert out.count("(") == 100 and out.count(",)") == 100
    err = _refusal(build.replace("N", "101") + "{{ " + mapping + " }}")
    assert err.kind == "limit" and "nested more than 100 levels deep" in err.msg


@pytest.mark.parametrize("value,size", [("[s, 1]", 1020), ("{'k': s, 'l': 1}", 1017)])
def test_a_structure_whose_first_item_exactly_reaches_the_bound_is_refused_for_the_items_after_it(value, size):
    # [s, 1] counts 2 + (len(s) + 2) before the 1, {'k': s, ...} 2 + (1 + len(s) + 4): both are 4194304 here
    text = "{%% set s = 'a' * %d + ('a' * 1024) * 4095 %%}{{ %s }}" % (size, value)
    with pytest.raises(ChatTemplateError, match="printing a value would build a text of more than 4194304"):
        render_template(text, {}, max_output=5 * 1024 * 1024)


@pytest.mark.parametrize("source,words,fix", [
    ("", "The chat template is empty or not a string", "Pass the model's chat template text"),
    ("{{ .Prompt }}", "an Ollama (Go text/template) template, not a Jinja chat template", "Ollama applies its own"),
    ("{{ 1" + "0" * 5000 + " }}", "does not compile: ValueError", "Check the template text"),
])
def test_compile_refusals_say_what_is_wrong_and_what_to_do(source, words, fix):
    with pytest.raises(ChatTemplateError) as err:
        _chat_template.compile_template(source)
    assert words in err.value.msg and fix in err.value.fix


@pytest.mark.parametrize("branch", ["{{ x | nofilter }}", "{{ x is notatest }}"])
def test_an_unknown_filter_or_test_in_a_branch_a_conversation_reaches_is_a_failure_not_a_refusal(branch):
    source = "{% for m in messages %}{% if m.role == 'system' %}" + branch + "{% endif %}{{ m.content }}{% endfor %}"
    assert render_template(source, {"messages": [{"role": "user", "content": "hi"}], "x": 1}) == "hi"
    with pytest.raises(ChatTemplateError) as err:
        render_template(source, {"messages": [{"role": "system", "content": "s"}], "x": 1})
    assert err.value.kind == "error" and err.value.template_message is None
    assert err.value.msg.startswith("The chat template failed: No ") and err.value.msg.endswith("found.")
    assert "published with" in err.value.fix


def test_a_refusal_is_the_templates_own_words_whatever_they_end_with():
    for words in ("System role not supported", "No filter named 'x' found.", ""):
        with pytest.raises(ChatTemplateError) as err:
            render_template("{{ raise_exception(w) }}", {"w": words})
        assert err.value.kind == "rejected" and err.value.template_message == words
