# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.venom.models.plugins.filter.adapt_messages import FilterModule, adapt_messages
from tests.unit.plugins.module_utils.chat_data import capabilities_for, fresh_template_state


@pytest.fixture(autouse=True)
def fresh_templates():
    """Each test analyses and compiles its templates itself (no answer cached by an earlier test)."""
    fresh_template_state()


MESSAGES = [{"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is Ansible?"}]


def test_registered_under_its_name():
    assert FilterModule().filters() == {"adapt_messages": adapt_messages}


def test_folds_system_for_gemma():
    assert adapt_messages(MESSAGES, capabilities_for("gemma-2")) == [
        {"role": "user", "content": "Instructions: Answer in one sentence.\n\nUser: What is Ansible?"}]


def test_keeps_system_for_qwen_and_passes_options():
    assert adapt_messages(MESSAGES, capabilities_for("qwen2.5")) == MESSAGES
    out = adapt_messages(MESSAGES + [{"role": "tool", "content": "42"}], capabilities_for("gemma-2"),
                         role_map={"tool": "user"}, fold_template="[{system}] {user}")
    assert out == [{"role": "user", "content": "[Answer in one sentence.] What is Ansible?\n\n42"}]


def test_library_errors_become_filter_errors_with_the_fix():
    with pytest.raises(AnsibleFilterError) as err:
        adapt_messages(MESSAGES + [{"role": "tool", "content": "42"}], capabilities_for("gemma-2"))
    text = str(err.value)
    assert text.startswith("venom.models.adapt_messages: Message 2 has the role 'tool'") and "Fix: Map the role" in text
    with pytest.raises(AnsibleFilterError, match="system_mode is 'error'"):
        adapt_messages(MESSAGES, capabilities_for("gemma-2"), system_mode="error")
    with pytest.raises(AnsibleFilterError, match="capabilities must be a mapping"):
        adapt_messages(MESSAGES, "gemma")
