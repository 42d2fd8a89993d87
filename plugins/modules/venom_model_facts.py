#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: venom_model_facts
short_description: Facts about the models, usage and operations of an LLM host
version_added: 0.1.0
description:
  - Reads the venom.models manifest, the operations journal and the host's resources and returns
    them as facts. It changes nothing on the host, except the metrics file O(metrics_file) when given.
  - C(models) lists the installed models (name, provider, revision, exact size, status, local
    path, active flag); C(capabilities) adds each model's detected capabilities (system role
    support, allowed roles, function calling, context length, quantization, prompt template).
  - C(usage) gives disk used by models against the quota, free disk, CPU, memory and per-GPU
    utilisation and VRAM. A host without a GPU or driver gets C(null) GPU fields and a note.
  - C(operations) lists recent operations (install, remove, verify, update, activate), newest
    first, including any still running with their progress; a running install's progress can
    be watched from another play while it downloads.
  - C(runtimes) reports vLLM and Ollama on this host as M(venom.models.venom_runtime) manages them,
    with the mode (systemd or process), running, healthy (the same health gate as activation), pid, port,
    the active model, restarts and whether the runtime is configured at all. It only asks this
    host's own servers.
  - C(available) is deprecated and will be removed in 0.2.0; use M(venom.models.venom_model_info),
    which takes the same options and returns the same list. It is the only subset that talks to
    another machine, so neither the default nor V(all) gathers it. When the provider cannot be
    asked (down, unreachable), the subset carries C(error) and C(fix), a warning says so, and the
    other facts are returned as usual.
  - C(available) lists the models a provider offers. For C(huggingface) (the Hub or a mirror such as
    olah, O(endpoint)), O(names) resolves each repository exactly as M(venom.models.venom_model)
    would (its commit and total size, which is what an install would download); without O(names) the Hub's
    search lists models (O(search), O(limit)); mirrors have no search, so give O(names) there. For
    C(ollama), the models an Ollama server at O(endpoint) has (C(/api/tags)). Each model says
    whether this host has it installed, and at which revision.
  - A O(models_dir) that does not exist gives empty facts and a warning (it is often a wrong path).
  - C(discovered) lists model directories, GGUF files and Hugging Face cache snapshots on the host
    that the manifest does not know (in O(models_dir), the Hub caches and O(discovery_paths)),
    each with the arguments M(venom.models.venom_model) needs to adopt it.
author:
  - venom.models developers (@venom-models)
extends_documentation_fragment:
  - venom.models.common
  - venom.models.common.info
  - venom.models.common.facts
  - venom.models.common.lookup
options:
  gather_subset:
    description:
      - Which facts to gather. V(all) gathers every subset about this host (all but the deprecated
        C(available)); prefix a subset with C(!) to leave it out.
    type: list
    elements: str
    default: [models, capabilities, usage, operations, runtimes, discovered]
  name:
    description:
      - Only report this model (in C(models) and C(operations)).
    type: str
  discovery_paths:
    description:
      - More directories to search for unmanaged models in the C(discovered) subset, for example
        an application's C(./models) directory.
    type: list
    elements: path
    default: []
  operation_id:
    description:
      - Return only this operation in C(venom_operations) (its C(id), as a module's result or an
        earlier fact gives it), whatever its age. An unknown id fails the task.
    type: str
  operations_limit:
    description:
      - How many recent operations to return. Running operations are always returned.
    type: int
    default: 20
  api_key:
    description:
      - The vLLM API key, so that the C(runtimes) health check can read C(/v1/models) from a vLLM
        started with O(venom.models.venom_runtime#module:api_key).
    type: str
  metrics_file:
    description:
      - Also write this host's model state as Prometheus metrics to this file, in node_exporter's
        textfile collector format (for example
        C(/var/lib/prometheus/node-exporter/venom_models.prom)). The file is replaced atomically
        (temp file and rename in the same directory) and only when its content changed; the
        directory must exist. The metrics need the C(models), C(usage) and C(runtimes) subsets
        (gathered for the file when O(gather_subset) leaves them out) and read the whole
        operations journal. See C(docs/observability.md) for every metric.
      - The roles install a systemd timer that refreshes the file (C(venom-models-metrics.timer)).
      - In check mode the file is not written; RV(metrics.changed) says whether it would be.
    type: path
requirements:
  - psutil (CPU and memory figures, and a process-mode runtime's C(pids) and C(rss_bytes); without it they are null or empty)
  - nvidia-ml-py (GPU figures; without it or without a GPU they are null)
seealso:
  - module: venom.models.venom_model
  - module: venom.models.venom_runtime
  - module: venom.models.venom_model_info
"""

EXAMPLES = r"""
- name: Gather everything that needs no network
  venom.models.venom_model_facts:

# venom_model prints its own progress while it runs (no async needed). For an install started in
# the background (async, poll 0), wait for the job itself: the install records its operation in the
# journal only once it has started, so "no operation in progress" is no sign that it has finished.
- name: Start a long install in the background
  venom.models.venom_model:
    name: Qwen/Qwen2.5-7B-Instruct
  async: 14400
  poll: 0
  register: venom_install_job

- name: Wait for the background install
  ansible.builtin.async_status:
    jid: "{{ venom_install_job.ansible_job_id }}"
  register: venom_install_result
  until: venom_install_result is finished
  retries: 1440
  delay: 10

- name: Progress of the installs running now on the host (percent, bytes)
  venom.models.venom_model_facts:
    gather_subset: [operations]
  register: venom_progress

- name: Show them
  ansible.builtin.debug:
    msg: >-
      {{ item.model }}: {{ item.progress }}% of {{ item.bytes_total | default(0, true) | human_readable }}
  loop: "{{ venom_progress.ansible_facts.venom_operations | selectattr('status', 'eq', 'in_progress') }}"

- name: Which runtimes run here, and what do they serve?
  venom.models.venom_model_facts:
    gather_subset: [runtimes]

- name: Fail when vLLM is not healthy
  ansible.builtin.assert:
    that: ansible_facts['venom_runtimes']['vllm']['healthy']
    fail_msg: "vLLM on {{ inventory_hostname }}: {{ ansible_facts['venom_runtimes']['vllm']['health'] }}"

- name: One operation by its id
  venom.models.venom_model_facts:
    gather_subset: [operations]
    operation_id: "{{ install_result.operation.id }}"

- name: Warn when the model disk is nearly full
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} uses {{ ansible_facts['venom_usage']['disk_usage_percent'] }}% of its model quota"
  when: ansible_facts['venom_usage']['disk_usage_percent'] > 90
"""

RETURN = r"""
metrics:
  description: What O(metrics_file) got.
  returned: when O(metrics_file) is set
  type: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /var/lib/prometheus/node-exporter/venom_models.prom
    changed:
      description: Whether the file was (in check mode, would be) rewritten.
      type: bool
      sample: true
    series:
      description: How many samples it holds.
      type: int
      sample: 42
ansible_facts:
  description: The gathered facts.
  returned: always
  type: dict
  contains:
    venom_models:
      description: Installed models from the manifest, per-file digests left out (C(files_count) instead).
      returned: when the models or capabilities subset is gathered
      type: list
      elements: dict
      sample:
        - name: sentence-transformers/all-MiniLM-L6-v2
          provider: huggingface
          display_name: all-MiniLM-L6-v2
          status: installed
          size_bytes: 90868376
          size_gb: 0.091
          revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
          local_path: /var/lib/venom/models/huggingface/sentence-transformers/all-MiniLM-L6-v2/c9745ed1d9f207416be6d2e6f8de32d1f16199bf
          runtime: vllm
          active: false
          files_count: 13
          capabilities:
            supports_system_role: null
            max_context_length: 512
    venom_usage:
      description:
        - Disk, CPU, memory and GPU figures.
        - GPU fields are null and C(notes) says why when there is no GPU, driver or NVML library.
      returned: when the usage subset is gathered
      type: dict
      sample:
        disk_usage_gb: 12.5
        disk_limit_gb: 50
        disk_usage_percent: 25.0
        disk_free_gb: 410.2
        cpu_usage_percent: 45.2
        memory_total_gb: 16.0
        memory_used_gb: 8.5
        memory_usage_percent: 53.1
        gpu_usage_percent: null
        vram_usage_mb: null
        vram_total_mb: null
        vram_usage_percent: null
        gpus: []
        models_count: 3
        notes: ["GPU figures unavailable: NVML could not initialise (NVML Shared Library Not Found); no NVIDIA GPU or driver on this host."]
    venom_operations:
      description:
        - Recent operations, newest first. Running ones have no C(finished_at) and no C(duration_seconds).
        - An operation whose process died is reported as C(failed) with C(interrupted=true).
      returned: when the operations subset is gathered
      type: list
      elements: dict
      sample:
        - id: 550e8400-e29b-41d4-a716-446655440000
          type: install
          model: sentence-transformers/all-MiniLM-L6-v2
          provider: huggingface
          status: in_progress
          progress: 45.0
          bytes_done: 40890769
          bytes_total: 90868376
          message: downloading model.safetensors
          error: null
          started_at: "2026-11-22T10:00:00.000Z"
    venom_runtimes:
      description:
        - Per runtime instance, keyed by the instance's name, its state on this host. C(vllm) and
          C(ollama) are always listed; every other instance started by M(venom.models.venom_runtime)
          with O(venom.models.venom_runtime#module:name) (for example C(chat) and C(embed) on one GPU host) is listed too.
        - C(runtime) is the engine (C(vllm) or C(ollama)), C(mode) C(systemd) or C(process), C(unit)
          the systemd unit (null in process mode), C(model) the active model, C(health) the reason
          when it is not healthy, C(configured) false for a runtime never set up on this host.
        - C(restarts) counts systemd's restarts of the unit (C(NRestarts)), or, in process mode, the
          crashes that venom.models.venom_runtime recovered.
        - What the running instance uses. C(uptime) is the age of its main process in seconds,
          C(pids) every process of its tree, C(rss_bytes) the resident memory of that tree. C(vram_bytes) is
          NVML's per-process GPU memory summed over the tree (null without NVML). These are null, and
          C(pids) empty, when it is not running. C(gpus) is the GPUs its activation was placed on (null
          when it has none), C(cpus) the CPUs a process-mode instance is confined to (null when it is not).
      returned: when the runtimes subset is gathered
      type: dict
      sample:
        vllm:
          name: vllm
          configured: true
          mode: systemd
          unit: vllm.service
          running: true
          healthy: true
          health: ok
          pid: 4242
          port: 8000
          url: http://127.0.0.1:8000
          model: sentence-transformers/all-MiniLM-L6-v2
          served_model_name: all-MiniLM-L6-v2
          restarts: 0
          runtime: vllm
          uptime: 3600.5
          pids: [4242, 4250, 4251]
          rss_bytes: 2147483648
          vram_bytes: 17179869184
          gpus: [0, 1]
          cpus: null
        ollama:
          name: ollama
          configured: false
          mode: process
          running: false
          healthy: false
          health: not configured on this host
          pid: null
          port: 11434
          model: null
          restarts: null
    venom_available:
      description:
        - Deprecated. What M(venom.models.venom_model_info) returns (C(provider), C(endpoint),
          C(search), C(names), C(count), C(models)), as one dict. When the provider could not be asked,
          C(models) is empty and C(error) and C(fix) say why.
      returned: when the available subset is gathered
      type: dict
      sample:
        provider: huggingface
        endpoint: http://mirror.internal:8090
        count: 0
        models: []
        error: "cannot reach http://mirror.internal:8090 (connection refused)"
        fix: Check the endpoint, the host's network and proxy settings, and the token.
    venom_discovered:
      description:
        - Models on disk the manifest does not know. C(kind) is C(model_directory) (a directory with
          C(config.json) and weights), C(gguf_file) or C(huggingface_cache) (a Hub cache snapshot,
          with C(repo_id) and C(revision)).
        - C(adopt_with) holds the C(name), C(provider) and C(source) options of venom.models.venom_model that adopt it.
      returned: when the discovered subset is gathered
      type: list
      elements: dict
      sample:
        - path: /root/.cache/huggingface/hub/models--BAAI--bge-small-en-v1.5/snapshots/5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
          kind: huggingface_cache
          repo_id: BAAI/bge-small-en-v1.5
          revision: 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
          size_bytes: 133466304
          adopt_with:
            provider: local
            name: BAAI/bge-small-en-v1.5
            source: /root/.cache/huggingface/hub/models--BAAI--bge-small-en-v1.5/snapshots/5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
    venom_gathered_subsets:
      description: The subsets that were gathered, after expanding V(all) and exclusions.
      returned: always
      type: list
      elements: str
      sample: [models, capabilities, usage, operations, runtimes, discovered]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.host.facts import (
    DEFAULT_SUBSETS, DEPRECATED_SUBSETS, gather, resolve_subsets)
from ansible_collections.venom.models.plugins.module_utils.module_support import (
    common_argument_spec, fail_from, lookup_argument_spec, lookup_query, tls_warnings)
from ansible_collections.venom.models.plugins.module_utils.host.metrics import collect


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            gather_subset=dict(type="list", elements="str", default=list(DEFAULT_SUBSETS)),
            name=dict(type="str"),
            operations_limit=dict(type="int", default=20),
            operation_id=dict(type="str"),
            discovery_paths=dict(type="list", elements="path", default=[]),
            **lookup_argument_spec(),
            api_key=dict(type="str", no_log=True),
            metrics_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    query = lookup_query(module)

    def runner(argv):
        return module.run_command(argv)

    systemctl_runner = runner if module.get_bin_path("systemctl") else None
    result = {"changed": False}
    try:
        for subset in set(resolve_subsets(p["gather_subset"])) & set(DEPRECATED_SUBSETS):
            module.deprecate(f"gather_subset {subset} is deprecated: {DEPRECATED_SUBSETS[subset]}.",
                             version="0.2.0", collection_name="venom.models")
        facts = gather(p["models_dir"], p["gather_subset"], quota_gb=p["quota_gb"],
                       operations_limit=p["operations_limit"], name=p["name"],
                       discovery_paths=p["discovery_paths"],
                       runner=systemctl_runner,
                       available_query=query, api_key=p["api_key"], warn=module.warn,
                       operation_id=p["operation_id"])
        if p["metrics_file"]:
            own = facts if p["name"] is None else {}  # a name filter would hide the other models
            result["metrics"] = collect(p["models_dir"], p["metrics_file"], quota_gb=p["quota_gb"],
                                        runner=systemctl_runner, api_key=p["api_key"], facts=own,
                                        write=not module.check_mode)
            result["changed"] = result["metrics"]["changed"]
    except VenomError as exc:
        fail_from(module, exc)
    except OSError as exc:
        module.fail_json(msg=f"Cannot write the metrics file {p['metrics_file']}: {exc}",
                         fix="Create its directory (node_exporter's textfile collector directory) or fix its permissions.")
    tls_warnings(module, query["tls"])
    module.exit_json(ansible_facts=facts, **result)


if __name__ == "__main__":
    main()
