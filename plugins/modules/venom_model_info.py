#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: venom_model_info
short_description: What a Hugging Face Hub, a mirror or an Ollama server offers
version_added: 0.1.0
description:
  - Asks a provider which models it offers, and says for each whether this host has it installed
    (from the manifest in O(models_dir)) and at which revision. It never changes anything.
  - For V(huggingface) (the Hub, or a mirror such as olah, O(endpoint)), O(names) resolves each
    repository exactly as M(venom.models.venom_model) would (its commit and total size, which is
    what an install would download) and predicts its capabilities as the check mode of
    M(venom.models.venom_model) does - from the small files only (C(config.json),
    C(tokenizer_config.json), C(generation_config.json), chat templates - kilobytes, never the
    weights); without O(names) the Hub's search lists models (O(search),
    O(limit)); mirrors have no search, so give O(names) there.
  - For V(ollama), the models an Ollama server at O(endpoint) has (C(/api/tags)).
  - This replaces the C(available) subset of M(venom.models.venom_model_facts), which is
    deprecated (facts describe this host; remote lookups belong here). Unlike the facts subset,
    this module fails when the provider cannot be asked.
author:
  - venom.models developers (@venom-models)
extends_documentation_fragment:
  - venom.models.common
  - venom.models.common.info
  - venom.models.common.lookup
requirements:
  - huggingface_hub (provider V(huggingface))
  - requests (provider V(ollama))
seealso:
  - module: venom.models.venom_model
  - module: venom.models.venom_model_facts
"""

EXAMPLES = r"""
- name: What would installing these models from the mirror download?
  venom.models.venom_model_info:
    endpoint: http://mirror.internal:8090
    names: [sentence-transformers/all-MiniLM-L6-v2, BAAI/bge-small-en-v1.5]
  register: offer

- name: Fail when one of them is missing on the mirror
  ansible.builtin.assert:
    that: offer.models | rejectattr('available') | list | length == 0
    fail_msg: "{{ offer.models | rejectattr('available') | map(attribute='reason') | list }}"

- name: Search the public Hub
  venom.models.venom_model_info:
    search: MiniLM
    limit: 10

- name: The models of this host's Ollama server
  venom.models.venom_model_info:
    provider: ollama
"""

RETURN = r"""
provider:
  description: The provider that was asked.
  returned: always
  type: str
  sample: huggingface
endpoint:
  description: The endpoint that was asked.
  returned: always
  type: str
  sample: http://mirror.internal:8090
search:
  description: The O(search) text, or null.
  returned: always
  type: str
  sample: null
names:
  description: The O(names) that were looked up.
  returned: always
  type: list
  elements: str
  sample: [sentence-transformers/all-MiniLM-L6-v2]
count:
  description: How many models C(models) holds.
  returned: always
  type: int
  sample: 1
models:
  description:
    - The models the provider offers. C(revision) is the commit (Hugging Face) or the manifest
      digest (Ollama); C(size_bytes) what an install would download (known for O(names) on
      Hugging Face and for Ollama). C(installed) and C(installed_revision) come from this host's
      manifest; C(update_available) is true when the installed commit is not the resolved one.
    - C(capabilities) (Hugging Face with O(names)) are the capabilities an install would detect
      (C(max_context_length), C(supports_system_role), C(supports_function_calling),
      C(allowed_roles), C(prompt_template), C(quantization), with C(detected_from) and C(notes)),
      predicted from the small files; null for a model that is not available, in a search
      listing (one more request per model - give O(names)) and for Ollama. When a small file
      cannot be read, C(capabilities) is null and C(capabilities_error) says why; the rest of
      the row stands.
  returned: always
  type: list
  elements: dict
  sample:
    - name: sentence-transformers/all-MiniLM-L6-v2
      available: true
      reason: null
      revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
      requested_revision: main
      size_bytes: 90868376
      files_count: 13
      capabilities:
        max_context_length: 512
        supports_system_role: null
        supports_function_calling: null
        allowed_roles: null
        prompt_template: null
        quantization: F32
      capabilities_error: null
      installed: false
      installed_revision: null
      update_available: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.models.available import available
from ansible_collections.venom.models.plugins.module_utils.module_support import (
    common_argument_spec, fail_from, lookup_argument_spec, lookup_query, tls_warnings)
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest


def main():
    module = AnsibleModule(argument_spec=common_argument_spec(**lookup_argument_spec()), supports_check_mode=True)
    p = module.params
    query = lookup_query(module)
    try:
        result = available(models_dir=p["models_dir"], models=Manifest(p["models_dir"]).models(), **query)
    except VenomError as exc:
        tls_warnings(module, query["tls"])
        fail_from(module, exc)
    tls_warnings(module, query["tls"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
