#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: venom_manifest
short_description: Check the venom.models manifest, or rebuild it from the models on disk
version_added: 0.1.0
description:
  - The manifest (C(<models_dir>/manifest.json)) lists the installed models. venom.models never
    resets a manifest it cannot read; every module fails instead and points here.
  - With O(state=valid) this module checks the manifest and fails with the problem if it is
    damaged, changing nothing. An entry whose paths (C(local_path), C(files), C(retained_versions))
    lead outside O(models_dir) makes the manifest invalid; the module names that entry.
  - With O(state=rebuilt) it rebuilds the manifest from the per-model records the library keeps
    in C(<models_dir>/.venom/records/) and from the files on disk, when the manifest is damaged,
    missing while records exist, or O(force=true). The old file is kept as
    C(manifest.json.broken-<time>). A model whose files are missing or changed size comes back
    with status C(damaged); M(venom.models.venom_model) with C(state=verified) repairs it.
author:
  - venom.models developers (@venom-models)
extends_documentation_fragment:
  - venom.models.common
  - venom.models.common.actions
attributes:
  idempotent:
    support: partial
    description: When run twice in a row with the same arguments, the second run reports no change.
    details: O(state=rebuilt) with O(force=true) rebuilds the manifest on every run, so it always reports a change.
options:
  state:
    description:
      - V(valid) checks only; V(rebuilt) rebuilds when needed.
    type: str
    choices: [valid, rebuilt]
    default: valid
  force:
    description:
      - With O(state=rebuilt), rebuild even a valid manifest (the old one is kept aside).
    type: bool
    default: false
seealso:
  - module: venom.models.venom_model
  - module: venom.models.venom_model_facts
"""

EXAMPLES = r"""
- name: Fail early when a host's manifest is damaged
  venom.models.venom_manifest:
    state: valid

- name: Rebuild a damaged manifest from what is on disk
  venom.models.venom_manifest:
    state: rebuilt
  register: rebuilt

- name: Repair models the rebuild found damaged
  venom.models.venom_model:
    name: "{{ item }}"
    state: verified
  loop: "{{ rebuilt.damaged }}"
"""

RETURN = r"""
valid:
  description: Whether the manifest was valid before the task.
  returned: always
  type: bool
  sample: false
problem:
  description: Why the manifest was not valid (what happened and how to fix it).
  returned: when the manifest was not valid
  type: str
  sample: "The manifest /var/lib/venom/models/manifest.json is not valid JSON: Expecting value: line 1 column 1 (char 0)."
models_count:
  description: Number of models in the manifest after the task.
  returned: always
  type: int
  sample: 3
restored:
  description: Models restored by the rebuild (or that would be, in check mode).
  returned: when a rebuild ran or was planned
  type: list
  elements: str
  sample: [sentence-transformers/all-MiniLM-L6-v2]
damaged:
  description: Models restored with status C(damaged) because their files are missing or changed.
  returned: when a rebuild ran or was planned
  type: list
  elements: str
  sample: []
problem_entry:
  description: The model whose manifest entry makes the manifest invalid (for example a path outside O(models_dir)).
  returned: when the manifest was not valid because of one entry
  type: str
  sample: org/model
lost:
  description:
    - Models the previous manifest listed that the rebuild could not restore (no valid record), each
      with C(name), C(provider) and C(reason). A rebuild never drops a model without saying so.
  returned: when a rebuild ran or was planned
  type: list
  elements: dict
  sample: [{name: org/model, provider: huggingface, reason: "no valid record in .venom/records ..."}]
unclaimed:
  description:
    - Version directories under O(models_dir) that no restored entry claims (C(path), C(provider),
      C(name), C(revision)); they also show up in M(venom.models.venom_model_facts) C(discovered).
  returned: when a rebuild ran or was planned
  type: list
  elements: dict
  sample: [{path: /var/lib/venom/models/huggingface/org/model/0123456789abcdef0123456789abcdef01234567,
            provider: huggingface, name: org/model, revision: 0123456789abcdef0123456789abcdef01234567}]
skipped:
  description: Record files that could not be used, with the reason.
  returned: when a rebuild ran or was planned
  type: list
  elements: dict
  sample: []
moved_aside:
  description: Where the previous manifest file was kept.
  returned: when a rebuild ran
  type: str
  sample: /var/lib/venom/models/manifest.json.broken-20261122T100000000000Z
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.manifest_state import STATES, ensure_manifest
from ansible_collections.venom.models.plugins.module_utils.module_support import common_argument_spec, fail_from


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            state=dict(type="str", choices=list(STATES), default="valid"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    manifest = Manifest(p["models_dir"], lock_timeout=p["lock_timeout"])
    try:
        result = ensure_manifest(manifest, p["state"], force=p["force"], check_mode=module.check_mode)
    except VenomError as exc:
        fail_from(module, exc)
        return
    for warning in result.pop("warnings"):
        module.warn(warning)
    diff = result.pop("diff", None)
    if module._diff and diff:
        result["diff"] = diff
    if not result["valid"] and p["state"] == "valid":
        module.fail_json(msg=result["problem"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
