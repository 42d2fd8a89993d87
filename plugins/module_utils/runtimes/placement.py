# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU and CPU placement and pre-flight of a runtime instance, decided before anything is stopped.

An instance with ``gpus`` runs on those devices only (``CUDA_VISIBLE_DEVICES``, in NVML's PCI-bus
order through ``CUDA_DEVICE_ORDER=PCI_BUS_ID``). Refused, with the figures:

* ``gpus`` on a host without NVML (CPU instances leave ``gpus`` out);
* a GPU index the host does not have, or one listed twice;
* a GPU another instance of the host holds, unless both have ``gpu_share`` and the instances'
  ``gpu_memory_utilization`` on that GPU add up to at most 1.0;
* a GPU whose memory cannot take the instance: vLLM budgets ``total x gpu_memory_utilization``
  for an instance and refuses to start when less than that is free; the budget must hold the
  model's weight share (size / tensor_parallel_size) plus ``WEIGHT_MARGIN``. Memory that this
  instance's own running processes hold counts as free (the switch stops them first).
"""
from __future__ import annotations

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.host.gpu import GIB

DEFAULT_UTILIZATION = 0.9  # vLLM's default --gpu-memory-utilization
WEIGHT_MARGIN = 0.1  # the weights take this much more than their file size once loaded (buffers, CUDA context)


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def check_placement(name: str, gpus: list, gpu_host, no_gpu_reason: str = "", *, gpu_share: bool = False,
                    utilization: float | None = None, tensor_parallel_size: int | None = None,
                    weights_bytes: int = 0, own_pids=(), others=()) -> list:
    """Raise ValidationError if instance ``name`` cannot run on ``gpus``; the checks passed, as text.

    ``others``: the other instances of the host that hold GPUs, as dicts with ``name``, ``gpus``,
    ``gpu_share`` and ``utilization``.
    """
    if not gpus:
        return []
    util = DEFAULT_UTILIZATION if utilization is None else float(utilization)
    if gpu_host is None:
        raise ValidationError(f"The instance '{name}' asks for GPUs {gpus}, but this host has no usable NVML: "
                              f"{no_gpu_reason}.",
                              fix="Leave 'gpus' out for an instance that runs on the CPU, or install the NVIDIA "
                                  "driver and the Python package nvidia-ml-py on the host.")
    if len(set(gpus)) != len(gpus):
        raise ValidationError(f"'gpus' {gpus} lists a GPU twice.", fix="List each GPU index once.")
    missing = [g for g in gpus if not 0 <= g < gpu_host.count]
    if missing:
        have = f"GPUs 0-{gpu_host.count - 1}" if gpu_host.count else "no GPU"
        raise ValidationError(f"The instance '{name}' asks for GPU {', '.join(map(str, missing))}, but this host has "
                              f"{have} (NVML, driver {gpu_host.driver_version}).",
                              fix="Use indexes as nvidia-smi lists them.")
    tp = tensor_parallel_size or len(gpus)
    if tp > len(gpus):
        raise ValidationError(f"tensor_parallel_size {tp} needs {tp} GPUs; the instance '{name}' has {len(gpus)}.",
                              fix="Give as many 'gpus' as tensor_parallel_size, or lower it.")
    checks = [f"NVML answers (driver {gpu_host.driver_version}, {gpu_host.count} GPUs)"]
    for gpu in gpus:
        holders = [o for o in others if gpu in (o.get("gpus") or [])]
        if holders:
            names = ", ".join(f"'{o['name']}'" for o in holders)
            if not gpu_share or not all(o.get("gpu_share") for o in holders):
                raise ValidationError(f"GPU {gpu} is held by the instance {names}.",
                                      fix="Choose another GPU, or set gpu_share: true on every instance that shares "
                                          "it (their gpu_memory_utilization must add up to at most 1.0).")
            total_util = util + sum(o.get("utilization") or DEFAULT_UTILIZATION for o in holders)
            if total_util > 1.0 + 1e-9:
                raise ValidationError(f"GPU {gpu} is shared with {names}; the instances' gpu_memory_utilization would "
                                      f"add up to {total_util:.2f}, more than 1.0.",
                                      fix="Lower gpu_memory_utilization so that the instances on the GPU add up to "
                                          "at most 1.0.")
        dev = gpu_host.devices[gpu]
        own = sum(used or 0 for pid, used in dev.processes.items() if pid in set(own_pids))
        free = dev.free + own
        budget = dev.total * util
        share = weights_bytes / tp * (1 + WEIGHT_MARGIN)
        if share > budget:
            raise ValidationError(
                f"GPU {gpu}: the model's weight share {_gib(weights_bytes / tp)} (+{WEIGHT_MARGIN:.0%} margin: "
                f"{_gib(share)}) does not fit the instance's budget {_gib(budget)} ({util:g} x {_gib(dev.total)}).",
                fix="Raise gpu_memory_utilization, spread the model over more GPUs (tensor_parallel_size), or "
                    "choose a smaller model.")
        if free < budget:
            raise ValidationError(
                f"GPU {gpu} has {_gib(free)} free (of {_gib(dev.total)}); the instance '{name}' needs "
                f"{_gib(budget)} ({util:g} x total) and the running model was left alone.",
                fix="Free the GPU (stop what uses it), lower gpu_memory_utilization, or choose another GPU.")
        checks.append(f"GPU {gpu}: {_gib(free)} free, needs {_gib(budget)} (weights {_gib(share)})")
    return checks


def check_cpus(name: str, cpus: list | None, mode: str, allowed, others=()) -> list:
    """Raise ValidationError if instance ``name`` cannot be confined to ``cpus``; the checks passed, as text.

    ``allowed``: the CPUs this host lets the module use (its affinity); ``others``: the other
    running instances with ``cpus``, as dicts with ``name`` and ``cpus``. Refused: ``cpus`` under
    systemd (the unit's ``CPUAffinity=`` does that), a CPU the host does not allow, a CPU another
    instance is confined to (a start that visits a busy instance's CPUs can stall: docs/runtime.md).
    """
    if not cpus:
        return []
    if mode != "process":
        raise ValidationError(f"'cpus' confines a process-mode instance; '{name}' runs under systemd.",
                              fix="Leave 'cpus' out and set CPUAffinity= in a drop-in of the unit "
                                  "(systemctl edit <unit>), or run the instance with mode: process.")
    allowed = sorted(allowed)
    missing = [c for c in cpus if c not in allowed]
    if missing:
        raise ValidationError(f"The instance '{name}' asks for CPU {', '.join(map(str, missing))}, but this host lets it "
                              f"use CPUs {_ranges(allowed)}.",
                              fix="Choose CPUs from that list (lscpu; a cgroup or taskset may narrow it).")
    for other in others:
        shared = sorted(set(cpus) & set(other.get("cpus") or ()))
        if shared:
            raise ValidationError(f"CPU {', '.join(map(str, shared))} is the CPU of the instance '{other['name']}'.",
                                  fix="Give each instance CPUs of its own, or leave 'cpus' out on both.")
    return [f"CPUs {_ranges(cpus)} of {_ranges(allowed)}"]


def _ranges(cpus) -> str:
    """``[0, 1, 2, 5]`` as ``0-2,5`` (the notation of taskset and cpusets)."""
    out, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
