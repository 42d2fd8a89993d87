# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which consecutive turns are merged for a model that needs user/assistant alternation."""
from __future__ import annotations

import pytest

from ansible_collections.venom.models.plugins.module_utils.capabilities.chat import adapt_messages
from tests.unit.plugins.module_utils.chat_data import capabilities_for, fresh_template_state


@pytest.fixture(autouse=True)
def fresh_templates():
    """Each test analyses and compiles its templates itself (no answer cached by an earlier test)."""
    fresh_template_state()


GEMMA = capabilities_for("gemma-2")   # needs alternation, no system role


def _adapt(messages, **kwargs):
    return adapt_messages(messages, GEMMA, validate=False, **kwargs)


def test_turns_of_different_speakers_are_not_merged():
    msgs = [{"role": "user", "content": "Hi", "name": "alice"}, {"role": "user", "content": "Hello", "name": "bob"}]
    assert _adapt(msgs) == msgs


def test_a_named_turn_and_an_unnamed_one_are_not_merged():
    msgs = [{"role": "user", "content": "Hi", "name": "alice"}, {"role": "user", "content": "Hello"}]
    assert _adapt(msgs) == msgs


def test_turns_of_the_same_speaker_are_merged_keeping_the_name():
    msgs = [{"role": "user", "content": "Hi", "name": "alice"}, {"role": "user", "content": "Hello", "name": "alice"}]
    assert _adapt(msgs) == [{"role": "user", "content": "Hi\n\nHello", "name": "alice"}]


def test_three_turns_in_a_row_become_one():
    msgs = [{"role": "assistant", "content": c} for c in ("a", "b", "c")]
    assert _adapt(msgs) == [{"role": "assistant", "content": "a\n\nb\n\nc"}]


def test_a_turn_with_tool_calls_or_extra_fields_is_never_merged():
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    msgs = [{"role": "assistant", "content": "thinking"}, call]
    assert _adapt(msgs) == msgs
    extra = [{"role": "user", "content": "a"}, {"role": "user", "content": "b", "tool_call_id": "x"}]
    assert _adapt(extra) == extra


def test_parts_are_merged_text_first_then_the_other_parts():
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    msgs = [{"role": "user", "content": [{"type": "text", "text": "look"}, image]},
            {"role": "user", "content": "and this"}]
    assert _adapt(msgs) == [{"role": "user", "content": [{"type": "text", "text": "look\n\nand this"}, image]}]


def test_merge_consecutive_false_keeps_every_turn():
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert _adapt(msgs, merge_consecutive=False) == msgs


# --- merging in a model that keeps system messages and needs alternation ------------------------------

GEMMA_WITH_SYSTEM = dict(GEMMA, supports_system_role=True, allowed_roles=["system", "user", "assistant"])


def test_consecutive_system_messages_are_merged_when_kept():
    msgs = [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}]
    assert adapt_messages(msgs, GEMMA_WITH_SYSTEM, validate=False) == [
        {"role": "system", "content": "a\n\nb"}, {"role": "user", "content": "c"}]


def test_turns_of_different_roles_in_a_row_are_not_merged():
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert _adapt(msgs) == msgs


def test_consecutive_tool_results_are_never_merged():
    msgs = [{"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}]
    caps = dict(GEMMA, allowed_roles=["user", "assistant", "tool"])
    assert adapt_messages(msgs, caps, validate=False) == msgs


def test_merging_parts_keeps_the_other_parts_of_both_turns():
    one = {"type": "image_url", "image_url": {"url": "data:,1"}}
    two = {"type": "image_url", "image_url": {"url": "data:,2"}}
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"}, one]},
            {"role": "user", "content": [two, {"type": "text", "text": "b"}]}]
    assert _adapt(msgs) == [{"role": "user", "content": [{"type": "text", "text": "a\n\nb"}, one, two]}]


def test_merging_text_parts_only_gives_text():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"}]}, {"role": "user", "content": "b"}]
    assert _adapt(msgs) == [{"role": "user", "content": "a\n\nb"}]


def test_a_model_without_alternation_keeps_consecutive_turns():
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert adapt_messages(msgs, capabilities_for("qwen2.5"), validate=False) == msgs
