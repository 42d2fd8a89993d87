#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: venom_model
short_description: Install, verify, update and remove one local LLM model
version_added: 0.1.0
description:
  - Manages one model on one host under O(models_dir), recorded in the manifest
    (C(<models_dir>/manifest.json)) with its exact size, the digest of every file, the commit it
    came from and the capabilities detected from its files.
  - O(provider=huggingface) downloads a repository from the Hugging Face Hub or a Hub mirror
    (O(endpoint), for example olah) pinned to a commit; O(provider=local) adopts a directory that
    is already on the host (air-gapped hosts).
  - O(provider=ollama) manages the model in an Ollama server's store through the server's HTTP API
    (O(endpoint)). It pulls with progress in the journal, records the manifest digest and the
    capabilities C(/api/show) reports, and removes with C(/api/delete). Before pulling it reads
    the model's manifest from the registry to check the quota with the exact size of the layers
    the store lacks (Ollama never checks). V(verified) re-hashes the model's blobs in
    O(models_path) and pulls damaged ones again.
  - Downloads go to a staging area inside O(models_dir) and resume where they stopped after an
    interruption (killed run, reboot, network drop); every file is verified (sha256 for LFS files,
    size and git blob id for the others) before the version is moved into place in one step. A
    model is C(installed) in the manifest only when it is complete and verified.
  - The quota (O(quota_gb)) and the free disk (O(reserve_gb)) are checked with the exact sizes
    before any byte is downloaded.
  - An installed model costs no network request and no hashing on the next run with O(state=present).
author:
  - venom.models developers (@venom-models)
extends_documentation_fragment:
  - venom.models.common
  - venom.models.common.actions
options:
  name:
    description:
      - The model. For V(huggingface) the repository id C(org/name); for V(local) a name of one to three
        C(/)-separated parts, optionally with C(:tag).
      - For V(ollama), C([host/][namespace/]model[:tag]) as Ollama takes it; it is normalised as Ollama
        displays it (C(llama3) is C(llama3:latest)) and matched case-insensitively.
    type: str
    required: true
  provider:
    description:
      - Where the model comes from.
    type: str
    choices: [huggingface, ollama, local]
    default: huggingface
  state:
    description:
      - V(present) installs the model if it is not installed (or not at the requested O(revision)) and
        re-fetches files that are missing or have the wrong size. It makes no network request when
        the model is installed as requested.
      - V(latest) re-resolves the branch (or re-reads the O(source) of a local model) and installs
        the new version beside the old one, switches the manifest entry, then removes the old files,
        unless a runtime has the model active (then they are kept and a warning says so).
      - V(verified) re-hashes every file against the recorded digests, offline, and fetches again only
        the files that differ or are missing; it is changed only if something was repaired.
      - V(absent) removes the files, the manifest entry and any interrupted download. It refuses to
        remove a model that a runtime has active, unless O(force=true).
    type: str
    choices: [present, absent, verified, latest]
    default: present
  revision:
    description:
      - For V(huggingface), a branch, a tag or a full commit id. It is resolved to the commit, which is
        recorded; the default is the repository's C(main) branch.
    type: str
  token:
    description:
      - Hugging Face access token, for private and gated repositories. Never logged, returned or stored.
      - If not set, the environment variable E(HF_TOKEN) of the module is used.
    type: str
  endpoint:
    description:
      - Base URL of the Hugging Face Hub or of a Hub mirror (such as olah), for example
        C(http://mirror.internal:8090). Default C(https://huggingface.co).
      - For V(ollama), the Ollama server. Default C(http://127.0.0.1:11434).
    type: str
  registry:
    description:
      - For V(ollama), the registry to read the model's manifest from before pulling (for the quota
        check), as C(scheme://host[:port]). Default the host in O(name) (C(registry.ollama.ai) unless the
        name has one), over https unless O(insecure).
    type: str
  insecure:
    description:
      - For V(ollama), the registry speaks plain HTTP (Ollama's C(insecure) pull option). Only for a
        registry you trust.
    type: bool
    default: false
  models_path:
    description:
      - For V(ollama), the Ollama server's model store (its E(OLLAMA_MODELS)), read to verify the
        model's blobs and to count interrupted downloads. Default C(/usr/share/ollama/.ollama/models),
        the store of Ollama's Linux service.
    type: path
  allow_patterns:
    description:
      - Only files matching at least one of these globs are installed (as in C(snapshot_download); C(*)
        also matches C(/), a pattern ending in C(/) matches a folder).
    type: list
    elements: str
  ignore_patterns:
    description:
      - Files matching any of these globs are not installed.
    type: list
    elements: str
  source:
    description:
      - For V(local), the absolute path of the model directory on the managed host. Required to install;
        after that it is recorded and used by V(verified) and V(latest).
    type: path
  adopt_mode:
    description:
      - For V(local), how files are brought under O(models_dir). V(auto) hard-links when the source is on
        the same filesystem and copies otherwise; V(copy) always copies; V(hardlink) fails if it cannot link.
      - Hard-linked files share their content with the source, so changing the source in place changes the
        installed model (V(verified) detects it).
    type: str
    choices: [auto, copy, hardlink]
    default: auto
  runtime:
    description:
      - Which runtime the model is meant for; recorded in the manifest.
      - Without it, a new entry gets the provider's runtime - V(vllm) for V(huggingface) and
        V(local), V(ollama) for V(ollama) - and an existing entry keeps what it has.
    type: str
    choices: [vllm, ollama]
  display_name:
    description:
      - Human-readable name recorded in the manifest. Default the last part of O(name).
    type: str
  capabilities:
    description:
      - Overrides of the detected capabilities (C(supports_system_role), C(supports_function_calling),
        C(allowed_roles), C(prompt_template), C(max_context_length), C(quantization)). Kept until changed;
        V({}) removes all overrides.
    type: dict
  force:
    description:
      - With O(state=absent), remove the model even if a runtime has it active.
    type: bool
    default: false
  owner:
    description:
      - User (name or uid) that owns the model's files and directories (V(huggingface), V(local)). Changing it
        needs root.
      - Given to a new version in the staging area before it is moved into place, so the model never appears
        with another owner; checked on every run (C(lstat) only, no hashing) and corrected when it differs.
      - Recorded in the manifest entry (RV(model.permissions)); a later task that omits it keeps the recorded
        one (a repair or an update never widens access). Not recorded and unchanged when never given.
    type: str
  group:
    description:
      - Group (name or gid) of the model's files and directories; give the group of the runtime's user (the
        venom.models.vllm role's C(vllm_group)) with O(mode=0640) so that gated weights are not world-readable.
      - Applied, checked and recorded like O(owner).
    type: str
  mode:
    description:
      - Permissions of the model's files, as an octal string (V('0640')); symbolic modes are not accepted.
        The default (when never given) is V(0644) (for V(local), never more than the source file's).
      - Applied, checked and recorded like O(owner).
    type: raw
  directory_mode:
    description:
      - Permissions of the model's directories (the version directory and those below it), as an octal
        string. Default O(mode) with search (C(x)) wherever it grants read (V('0640') gives V('0750')),
        else V(0755).
      - Applied, checked and recorded like O(owner).
    type: raw
    aliases: [dir_mode]
  timeout:
    description:
      - Seconds the download may take in total. When it passes the task fails; what was downloaded is
        kept and the next run resumes. Default no limit.
    type: float
attributes:
  action:
    support: full
    description: Has an action plugin, which prints the progress of a download from the operations journal.
  async:
    support: full
    description: Supports the C(async) keyword (then the action plugin prints no progress).
  check_mode:
    support: partial
    details:
      - Check mode resolves the revision, lists the files, checks the quota and predicts the capabilities
        from the small files (C(config.json), C(tokenizer_config.json), chat templates; for V(local) the
        source's files, GGUF header included) without downloading weights.
      - For O(provider=ollama) the capabilities of a model the server does not have yet cannot be
        predicted (the server's C(/api/show) knows only pulled models); they are null and a warning says so.
notes:
  - O(owner), O(group), O(mode) and O(directory_mode) are this module's own options rather than
    Ansible's common file attributes (C(add_file_common_args)), because they apply to a whole tree
    of files and directories inside the staging area, before the version is moved into place, and
    are recorded in the manifest; Ansible's attributes apply to one path after the fact. SELinux
    contexts and file attributes are not managed. Links are never followed (a symbolic link in a
    model's directory is refused), and a file hard-linked to its source (O(adopt_mode=hardlink)) is
    not changed - with these options, V(auto) copies instead.
  - An action plugin runs the module in the background on the host and prints its progress from the
    operations journal (percent, bytes done and total, rate, ETA) at least every
    C(venom_models_progress_interval) seconds (a variable, default 5; V(0) turns it off); the task's
    result is the module's own. It runs in the foreground in check mode, with O(state=absent), with
    C(no_log) and when the task sets C(async) itself.
  - Check mode resolves the revision and lists the files (network, read-only) and reports the plan
    (files and bytes to download, quota and free disk after) and exactly whether a real run changes
    anything; with O(state=verified) it hashes the files (read-only).
  - O(validate_certs) and O(ca_path) apply to the module's own requests - the Hub or mirror, the Ollama
    server at O(endpoint), the registry manifest read from O(registry). The layers of an Ollama model are
    downloaded by the Ollama server, which uses its own trust store - the C(venom.models.ollama) role's
    C(ollama_ca_path) sets it.
requirements:
  - huggingface_hub >= 1.0 on the managed host (for O(provider=huggingface))
  - requests on the managed host (for O(provider=ollama))
  - jinja2 on the managed host (capability detection from chat templates)
seealso:
  - module: venom.models.venom_model_facts
  - module: venom.models.venom_manifest
"""

EXAMPLES = r"""
- name: Install a model pinned to a commit
  venom.models.venom_model:
    name: sentence-transformers/all-MiniLM-L6-v2
    revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
    runtime: vllm

- name: Install from an internal Hub mirror, only the safetensors weights
  venom.models.venom_model:
    name: google/gemma-2-2b-it
    endpoint: http://hub-mirror.internal:8090
    allow_patterns: ["*.json", "*.safetensors", "tokenizer*"]
    quota_gb: 200
  environment:
    HF_TOKEN: "{{ vault_hf_token }}"

- name: Install from a mirror whose certificate a private CA signed
  venom.models.venom_model:
    name: google/gemma-2-2b-it
    endpoint: https://hub-mirror.internal:8443
    ca_path: /etc/ssl/certs/internal-ca.pem

- name: Follow the main branch
  venom.models.venom_model:
    name: Qwen/Qwen2.5-0.5B-Instruct
    state: latest

- name: Re-hash every file and repair what differs
  venom.models.venom_model:
    name: Qwen/Qwen2.5-0.5B-Instruct
    state: verified

- name: Adopt a model copied to an air-gapped host
  venom.models.venom_model:
    name: qwen2.5-0.5b
    provider: local
    source: /srv/incoming/Qwen2.5-0.5B-Instruct
    runtime: vllm

- name: Preview an update (files and bytes to download, quota after)
  venom.models.venom_model:
    name: Qwen/Qwen2.5-0.5B-Instruct
    state: latest
  check_mode: true
  register: preview

- name: Gated weights readable by the vLLM service only (root owns them, group vllm reads them)
  venom.models.venom_model:
    name: google/gemma-2-2b-it
    group: vllm
    mode: "0640"
    directory_mode: "0750"

- name: Remove a model
  venom.models.venom_model:
    name: Qwen/Qwen2.5-0.5B-Instruct
    state: absent
"""

RETURN = r"""
action:
  description:
    - What the task did (or would do in check mode) - V(none), V(install), V(update), V(sync) (same version,
      other file selection), V(repair), V(metadata), V(prune) (old versions kept for a runtime removed),
      V(permissions) (the owner, group or mode of the installed files set or recorded),
      V(remove), V(discard_staging) (an interrupted download removed), V(record) (an Ollama model that the
      server already has is recorded in the manifest without a pull; reported as C(changed=false)).
  returned: always
  type: str
  sample: install
name:
  description: The model's canonical name.
  returned: always
  type: str
  sample: sentence-transformers/all-MiniLM-L6-v2
provider:
  description: The provider.
  returned: always
  type: str
  sample: huggingface
state:
  description: The requested state.
  returned: always
  type: str
  sample: present
revision:
  description:
    - The installed version (Hub commit; for local models the digest of the file list).
    - For Ollama, the sha256 of the model's manifest, as C(/api/tags) reports it.
  returned: always
  type: str
  sample: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
requested_revision:
  description: The revision as requested (branch, tag or commit) that resolved to O(revision).
  returned: always
  type: str
  sample: main
local_path:
  description: Where the model's files are on the host.
  returned: always
  type: str
  sample: /var/lib/venom/models/huggingface/sentence-transformers/all-MiniLM-L6-v2/c9745ed1d9f207416be6d2e6f8de32d1f16199bf
size_bytes:
  description: Exact size of the installed files.
  returned: always
  type: int
  sample: 91621751
capabilities:
  description:
    - Detected capabilities with the overrides applied. In check mode, predicted from the small files.
  returned: always
  type: dict
  sample: {"supports_system_role": false, "max_context_length": 8192, "quantization": null}
model:
  description: The manifest entry after the task (predicted in check mode; null once removed).
  returned: always
  type: dict
  sample: {"name": "org/model", "provider": "huggingface", "status": "installed", "revision": "c9745ed1...",
           "permissions": {"owner": "root", "group": "vllm", "mode": "0640", "directory_mode": "0750"}}
  contains:
    permissions:
      description:
        - The owner, group and modes the model's files and directories are kept at (O(owner), O(group), O(mode),
          O(directory_mode) as last given). Absent when none was ever given.
      returned: when one of them was given
      type: dict
      sample: {"group": "vllm", "mode": "0640", "directory_mode": "0750"}
plan:
  description:
    - The plan - C(action), C(reason), C(files_to_fetch) (up to 200 paths), C(fetch_files), C(fetch_bytes),
      C(permission_changes) (files and directories whose owner, group or mode differ, each with
      C(path) and C([actual, wanted]) per attribute; up to 200),
      C(capabilities_predicted) (check mode of an install or update - whether RV(capabilities) were predicted),
      C(staged_bytes) (already downloaded by an interrupted run), C(problems) (files that differ),
      C(quota) (C(quota_bytes), C(used_bytes), C(planned_bytes), C(used_after_bytes), C(quota_free_after_bytes),
      C(disk_free_bytes), C(disk_free_after_bytes), C(reserve_bytes), C(fits)).
  returned: always
  type: dict
  sample: {"action": "install", "fetch_bytes": 91621751, "fetch_files": 13, "quota": {"fits": true}}
operation:
  description: The journal operation of this run (id, type, status, bytes, duration); null when nothing changed.
  returned: always
  type: dict
  sample: {"id": "6f1c...", "type": "install", "status": "completed", "bytes_total": 91621751}
storage:
  description:
    - The host's storage settings in force (O(quota_gb), O(reserve_gb)) - as given, else as recorded
      with the manifest, else the defaults. C(recorded) is true when this run recorded a new value
      (in check mode, when it would record one).
  returned: success
  type: dict
  sample: {"quota_gb": 400.0, "reserve_gb": 2.0, "recorded": false}
bytes_downloaded:
  description: Bytes transferred over the network (or copied) by this run; less than the size when it resumed.
  returned: always
  type: int
  sample: 0
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.models.huggingface import redact
from ansible_collections.venom.models.plugins.module_utils.models.operations import ModelOperations
from ansible_collections.venom.models.plugins.module_utils.module_support import common_argument_spec, fail_from
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest

REQUEST_FIELDS = ("name", "provider", "state", "revision", "owner", "group", "mode", "directory_mode",
                  "models_dir", "quota_gb", "reserve_gb", "token",
                  "endpoint", "allow_patterns", "ignore_patterns", "source", "adopt_mode", "runtime",
                  "display_name", "capabilities", "force", "timeout", "lock_timeout", "registry", "insecure",
                  "models_path", "validate_certs", "ca_path")


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            name=dict(type="str", required=True),
            provider=dict(type="str", choices=["huggingface", "ollama", "local"], default="huggingface"),
            state=dict(type="str", choices=["present", "absent", "verified", "latest"], default="present"),
            revision=dict(type="str"),
            token=dict(type="str", no_log=True, fallback=(env_fallback, ["HF_TOKEN"])),
            endpoint=dict(type="str"),
            registry=dict(type="str"),
            insecure=dict(type="bool", default=False),
            models_path=dict(type="path"),
            allow_patterns=dict(type="list", elements="str"),
            ignore_patterns=dict(type="list", elements="str"),
            source=dict(type="path"),
            adopt_mode=dict(type="str", choices=["auto", "copy", "hardlink"], default="auto"),
            runtime=dict(type="str", choices=["vllm", "ollama"]),
            display_name=dict(type="str"),
            capabilities=dict(type="dict"),
            force=dict(type="bool", default=False),
            timeout=dict(type="float"),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw"),
            directory_mode=dict(type="raw", aliases=["dir_mode"]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    request = ModelRequest(**{key: params[key] for key in REQUEST_FIELDS})
    try:
        result = ModelOperations(request, check_mode=module.check_mode, diff_detail=module._verbosity >= 3).run()
    except VenomError as exc:
        exc.msg = redact(exc.msg, params["token"])
        fail_from(module, exc, name=params["name"], provider=params["provider"], state=params["state"])
    for warning in result.pop("warnings"):
        module.warn(redact(warning, params["token"]))
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
