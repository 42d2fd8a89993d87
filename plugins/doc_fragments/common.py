# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Documentation shared by the venom.models modules."""
from __future__ import annotations


class ModuleDocFragment:
    """Options and attributes shared by the venom.models modules."""

    DOCUMENTATION = r"""
options:
  models_dir:
    description:
      - The directory that holds the models, the manifest (C(manifest.json)) and the library's
        state (in C(.venom/) - locks, operations journal, staging area for downloads).
      - All venom.models modules on one host must use the same directory to see the same models.
    type: path
    default: /var/lib/venom/models
  lock_timeout:
    description:
      - Seconds to wait for another run on the same host that holds the lock of the same model,
        runtime or manifest. On timeout the task fails and names the holder (pid, operation).
      - Locks are released by the kernel when their holder exits, so there are never stale locks.
      - Modules that only read ignore it.
    type: float
    default: 600
  quota_gb:
    description:
      - Storage quota for all models in O(models_dir), in GB (10^9 bytes).
        M(venom.models.venom_model) refuses an install that would exceed it before anything is
        downloaded; M(venom.models.venom_model_facts) computes the usage percentage against it.
      - The host's storage settings live with its manifest - M(venom.models.venom_model) records a
        O(quota_gb) it is given (recording a new value is a change), and every later run and the
        facts use the recorded value when the option is omitted; 50 when nothing is recorded.
      - Modules that store no models (M(venom.models.venom_runtime), M(venom.models.venom_manifest))
        ignore it.
    type: float
  reserve_gb:
    description:
      - Free space, in GB, that must remain on the filesystem of O(models_dir) after a download
        (M(venom.models.venom_model)); the other modules ignore it.
      - Recorded with the manifest like O(quota_gb); 2 when nothing is recorded.
    type: float
  validate_certs:
    description:
      - Check the TLS certificate (and host name) of every https remote the module asks - the Hugging
        Face Hub or mirror, the Ollama server, the Ollama registry.
      - V(false) turns the check off; the task then warns, naming each remote it did not check. Prefer
        O(ca_path).
      - Modules that ask no remote ignore it.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file of CA certificates on the managed host that verifies the remotes' certificates, for a
        private CA or a TLS-intercepting proxy. It replaces the default trust store for these requests
        (include the public CAs if the same task also reaches public servers).
      - A certificate that cannot be verified fails the task with an error naming the remote, the reason
        and this option; nothing is installed or changed.
      - Modules that ask no remote ignore it.
    type: path
attributes:
  platform:
    support: full
    platforms: posix
    description: Runs on POSIX managed hosts (Linux; the runtimes need systemd or a POSIX process model).
notes:
  - O(models_dir), O(lock_timeout), O(quota_gb), O(reserve_gb), O(validate_certs) and O(ca_path) are
    accepted by every module of the collection, so that C(module_defaults) for the action group
    C(group/venom.models.all) sets them once per play.
requirements:
  - python >= 3.11 on the managed host
"""

    ACTIONS = r"""
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: full
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    support: full
    description: When run twice in a row with the same arguments, the second run reports no change.
"""

    # with INFO (the read-only attributes)
    FACTS = r"""
attributes:
  facts:
    support: full
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
"""

    LOOKUP = r"""
options:
  provider:
    description:
      - The provider to ask what it offers.
    type: str
    choices: [huggingface, ollama]
    default: huggingface
  endpoint:
    description:
      - The Hugging Face Hub or mirror (default U(https://huggingface.co)), or the Ollama server
        (default U(http://127.0.0.1:11434)).
    type: str
  search:
    description:
      - Only models whose name contains this text.
    type: str
  names:
    description:
      - Look up exactly these models (Hugging Face repository ids or Ollama names). Each is
        reported, with C(available=false) and the reason when the provider does not have it.
      - On Hugging Face each is resolved exactly as M(venom.models.venom_model) would resolve it
        (its commit and total size, which is what an install would download). Mirrors such as olah have no
        search, so give O(names) there.
    type: list
    elements: str
    default: []
  revision:
    description:
      - With O(names) on Hugging Face, the branch, tag or commit to resolve.
    type: str
  limit:
    description:
      - Without O(names), the largest number of models to list (1 to 1000).
    type: int
    default: 50
  token:
    description:
      - Hugging Face token (private or gated repositories). Falls back to the E(HF_TOKEN)
        environment variable. Never written anywhere.
    type: str
"""

    INFO = r"""
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return the same result; it never changes anything.
  diff_mode:
    support: none
    description: Returns no diff.
  idempotent:
    support: full
    description: Never changes anything (venom_model_facts' C(metrics_file) aside, written only when its content changed).
"""
