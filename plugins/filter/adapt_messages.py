# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: adapt_messages
short_description: Adapt a chat message list to what a model accepts
version_added: 0.1.0
author:
  - venom.models developers (@venom-models)
description:
  - Takes an OpenAI-style message list and a model's capabilities (as
    M(venom.models.venom_model_facts) reports them) and returns a message list the model accepts.
  - Roles named in O(role_map) are renamed first (for example V(tool) to V(user)).
  - When the model has no system role (Gemma-style chat templates raise C(System role not supported),
    others silently drop it), system messages are folded into the next user message with
    O(fold_template), the C(Instructions:... User:...) shape by default.
  - A role outside the model's C(allowed_roles) is refused with an error that names the message, the
    role and the way out.
  - Consecutive messages of the same role are merged (joined by a blank line) when the model's chat
    template demands that user and assistant turns alternate.
  - When the capabilities hold the model's Jinja chat template (C(prompt_template)), the result is
    rendered with it in a sandbox (the environment transformers and vLLM use) and must be accepted
    and keep the text of every system, user and tool message; otherwise the filter fails and says why.
  - No text is dropped and nothing is invented. The same function is available as plain Python in
    C(plugins/module_utils/capabilities/chat.py) (C(adapt_messages)).
positional: capabilities
options:
  _input:
    description:
      - The messages, each a mapping with C(role) and C(content) (a string, a list of OpenAI content
        parts, or null). Other keys (C(tool_calls), C(tool_call_id), C(name)) are kept.
    type: list
    elements: dict
    required: true
  capabilities:
    description:
      - The model's capabilities, for example C(ansible_facts['venom_models'][0]['capabilities']).
      - Uses C(supports_system_role), C(allowed_roles) and C(prompt_template); keys that are null
        (unknown) are worked out from C(prompt_template) when it is a Jinja chat template.
      - An optional C(special_tokens) mapping (C(bos_token), C(eos_token)) is passed to the template.
    type: dict
    required: true
  system_mode:
    description:
      - What to do with system messages when the model does not accept them.
      - V(fold) folds them into the next user message with O(fold_template).
      - V(keep) leaves them (the check against the template then fails if it refuses or drops them).
      - V(error) fails.
    type: str
    choices: [fold, keep, error]
    default: fold
  fold_template:
    description:
      - How a system text is folded into a user message. Must contain C({system}) and C({user}).
    type: str
    default: "Instructions: {system}\n\nUser: {user}"
  role_map:
    description:
      - "Roles to rename before anything else, for example C({tool: user, developer: system})."
    type: dict
  merge_consecutive:
    description:
      - Merge consecutive same-role messages when the chat template demands alternation.
    type: bool
    default: true
  validate:
    description:
      - Render the result with the model's chat template (when known) and fail if the template
        refuses it or drops text.
    type: bool
    default: true
notes:
  - Capabilities from M(venom.models.venom_model_facts) or from a file are data and are used as they are. A chat
    template written into a playbook variable must be tagged C(!unsafe), or Ansible templates it itself.
seealso:
  - plugin: venom.models.render_chat
    plugin_type: filter
  - module: venom.models.venom_model_facts
"""

EXAMPLES = r"""
- name: Gather the capabilities of the model the host serves
  venom.models.venom_model_facts:
    name: google/gemma-2-2b-it
    gather_subset: [capabilities]

- name: Build a request the model accepts (the system prompt is folded in for Gemma)
  ansible.builtin.set_fact:
    chat_messages: >-
      {{ [{'role': 'system', 'content': 'Answer in one sentence.'},
          {'role': 'user', 'content': 'What is Ansible?'}]
         | venom.models.adapt_messages(ansible_facts['venom_models'][0]['capabilities']) }}
    # for Gemma: [{'role': 'user', 'content': "Instructions: Answer in one sentence.\n\nUser: What is Ansible?"}]

- name: Send tool results as user turns to a model without a tool role, with a custom fold
  ansible.builtin.uri:
    url: http://127.0.0.1:8000/v1/chat/completions
    method: POST
    body_format: json
    body:
      model: my-model
      messages: >-
        {{ conversation | venom.models.adapt_messages(model_caps, role_map={'tool': 'user'},
                                                      fold_template='[{system}]\n{user}') }}
"""

RETURN = r"""
_value:
  description:
    - The adapted messages (new mappings; the input is not changed).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.venom.models.plugins.module_utils.capabilities.chat import DEFAULT_FOLD_TEMPLATE
from ansible_collections.venom.models.plugins.module_utils.capabilities.chat import adapt_messages as _adapt_messages
from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import plain_data
from ansible_collections.venom.models.plugins.module_utils.errors import VenomError


def adapt_messages(messages, capabilities, system_mode="fold", fold_template=DEFAULT_FOLD_TEMPLATE, role_map=None,
                   merge_consecutive=True, validate=True):
    """Adapt ``messages`` to the model described by ``capabilities``."""
    try:
        return _adapt_messages(plain_data(messages), plain_data(capabilities), system_mode=system_mode,
                               fold_template=fold_template, role_map=plain_data(role_map),
                               merge_consecutive=merge_consecutive, validate=validate)
    except VenomError as exc:
        raise AnsibleFilterError(f"venom.models.adapt_messages: {exc}") from None


class FilterModule:
    """venom.models chat request adaptation."""

    def filters(self):
        return {"adapt_messages": adapt_messages}
