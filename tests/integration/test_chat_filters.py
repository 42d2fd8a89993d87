# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The chat filters through the real ansible-playbook (templating, data tagging, error reporting)."""
from __future__ import annotations

import json

from tests.lib.ansible_run import run_playbook
from tests.unit.plugins.module_utils.chat_data import capabilities_for

MESSAGES = [{"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is Ansible?"},
            {"role": "tool", "content": "tool output"}]


def test_filters_in_a_playbook(tmp_path):
    # capabilities reach a play as data (a module result, a file), never as trusted template text
    caps_file = tmp_path / "caps.json"
    caps_file.write_text(json.dumps(capabilities_for("gemma-2")))
    play = {
        "name": "chat filters", "hosts": "localhost", "gather_facts": False,
        "vars": {"caps": "{{ lookup('ansible.builtin.file', '%s') | from_json }}" % caps_file, "msgs": MESSAGES},
        "tasks": [
            {"name": "adapt", "ansible.builtin.set_fact": {
                "adapted": "{{ msgs | venom.models.adapt_messages(caps, role_map={'tool': 'user'}) }}"}},
            {"name": "render", "ansible.builtin.set_fact": {
                "prompt": "{{ adapted | venom.models.render_chat(caps) }}"}},
            {"name": "show", "ansible.builtin.debug": {"var": "prompt"}},
            {"name": "refused", "ansible.builtin.debug": {
                "msg": "{{ msgs | venom.models.adapt_messages(caps) }}"}, "ignore_errors": True},
        ],
    }
    res = run_playbook([play])
    assert res.rc == 0, res.stdout + res.stderr
    adapted = res.task("adapt")["ansible_facts"]["adapted"]
    assert adapted == [{"role": "user",
                        "content": "Instructions: Answer in one sentence.\n\nUser: What is Ansible?\n\ntool output"}]
    assert res.task("render")["ansible_facts"]["prompt"] == (
        "<bos><start_of_turn>user\nInstructions: Answer in one sentence.\n\nUser: What is Ansible?\n\n"
        "tool output<end_of_turn>\n<start_of_turn>model\n")
    refused = res.task("refused")
    assert refused.get("failed") and "Message 2 has the role 'tool'" in refused["msg"] and "role_map" in refused["msg"]
