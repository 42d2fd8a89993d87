# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: render_chat
short_description: Render a chat message list with a model's chat template
version_added: 0.1.0
author:
  - venom.models developers (@venom-models)
description:
  - Renders OpenAI-style messages into the prompt text the model sees, with the model's own Jinja chat
    template (the C(prompt_template) of its capabilities, from C(tokenizer_config.json),
    C(chat_template.jinja) or GGUF metadata).
  - The template runs in the sandboxed environment transformers and vLLM use (C(raise_exception),
    C(strftime_now), C(tojson), loop controls, C(trim_blocks)/C(lstrip_blocks)), with bounds on time and
    output size, so a hostile template cannot hang or exhaust the host.
  - Useful to check a conversation before sending it, and for runtimes that take a raw prompt.
  - Ollama (Go) templates are not rendered; send messages to Ollama's C(/api/chat) instead.
  - The same function is available as plain Python in C(plugins/module_utils/capabilities/chat.py) (C(render_chat)).
positional: template
options:
  _input:
    description:
      - The messages, each a mapping with C(role) and C(content).
    type: list
    elements: dict
    required: true
  template:
    description:
      - The chat template text, or the model's capabilities (a mapping holding C(prompt_template) and
        optionally C(special_tokens)).
    type: raw
    required: true
  add_generation_prompt:
    description:
      - Append the template's opening of an assistant turn (as chat servers do).
    type: bool
    default: true
  tools:
    description:
      - Tool definitions (OpenAI function schema) for templates that render them.
    type: list
    elements: dict
  documents:
    description:
      - Documents for retrieval-augmented templates.
    type: list
    elements: dict
  special_tokens:
    description:
      - The tokenizer's special tokens the template uses, such as C(bos_token) and C(eos_token).
    type: dict
  template_vars:
    description:
      - More variables for the template (for example C(enable_thinking) or C(date_string)).
    type: dict
notes:
  - Capabilities from M(venom.models.venom_model_facts) or from a file are data and are used as they are. A chat
    template written into a playbook variable must be tagged C(!unsafe), or Ansible templates it itself.
seealso:
  - plugin: venom.models.adapt_messages
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Show the prompt a Gemma model will see for an adapted conversation
  ansible.builtin.debug:
    msg: >-
      {{ messages | venom.models.adapt_messages(caps)
                  | venom.models.render_chat(caps, special_tokens={'bos_token': '<bos>'}) }}

- name: Render with a template given as text, with tool definitions
  ansible.builtin.set_fact:
    prompt: >-
      {{ [{'role': 'user', 'content': 'Weather in Paris?'}]
         | venom.models.render_chat(lookup('ansible.builtin.file', 'chat_template.jinja'), tools=my_tools) }}
"""

RETURN = r"""
_value:
  description:
    - The rendered prompt text.
  type: string
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.venom.models.plugins.module_utils.capabilities.chat import render_chat as _render_chat
from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import plain_data
from ansible_collections.venom.models.plugins.module_utils.errors import VenomError


def render_chat(messages, template, add_generation_prompt=True, tools=None, documents=None, special_tokens=None,
                template_vars=None):
    """Render ``messages`` with the chat template (or the capabilities holding it)."""
    extra = dict(plain_data(template_vars or {}))
    reserved = sorted({"messages", "add_generation_prompt", "special_tokens"} & set(extra))
    if reserved:
        raise AnsibleFilterError(f"venom.models.render_chat: template_vars may not set {', '.join(reserved)}; "
                                 "pass them as the filter's own arguments.")
    if tools is not None:
        extra["tools"] = plain_data(tools)
    if documents is not None:
        extra["documents"] = plain_data(documents)
    try:
        return _render_chat(plain_data(messages), plain_data(template), add_generation_prompt=add_generation_prompt,
                            special_tokens=plain_data(special_tokens), **extra)
    except VenomError as exc:
        raise AnsibleFilterError(f"venom.models.render_chat: {exc}") from None


class FilterModule:
    """venom.models chat rendering."""

    def filters(self):
        return {"render_chat": render_chat}
