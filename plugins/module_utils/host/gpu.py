# SPDX-License-Identifier: GPL-3.0-or-later
"""The GPUs of this host as NVML sees them (package nvidia-ml-py, ``import pynvml``): driver,
device count, memory per device, memory per process. Thin on purpose: ``probe`` takes the NVML
module as a parameter, so placement and pre-flight logic is unit-tested against a fake NVML.

Not seen on a real GPU in this project's CI (no GPU there): the calls follow NVML's documented API;
per-process figures may be ``None`` (no privileges, MIG), which the callers treat as unknown.
Index order is NVML's (PCI bus order); runtimes set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` to match.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.venom.models.plugins.module_utils.host.usage import PYNVML_IMPORT_ERROR, pynvml

GIB = 2 ** 30


@dataclass
class Device:
    index: int
    total: int
    free: int
    processes: dict = field(default_factory=dict)  # host pid -> bytes used (None: unknown)


@dataclass
class GpuHost:
    driver_version: str | None
    devices: list

    @property
    def count(self) -> int:
        return len(self.devices)

    def vram_of(self, pids) -> int | None:
        """Bytes the given processes hold on all devices (None when NVML gives no figure for them)."""
        pids, total, known = set(pids), 0, False
        for dev in self.devices:
            for pid, used in dev.processes.items():
                if pid in pids and used is not None:
                    total += used
                    known = True
        return total if known else None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe(nvml=None) -> tuple[GpuHost | None, str]:
    """(the GPUs, "") or (None, why there is no NVML here). Never raises for a host without GPUs."""
    nvml = pynvml if nvml is None else nvml
    if nvml is None:
        return None, f"the Python package nvidia-ml-py (import pynvml) is not installed ({PYNVML_IMPORT_ERROR})"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # pylint: disable=broad-exception-caught  # NVMLError_* and driver load errors
        return None, f"NVML could not initialise ({exc}): no NVIDIA GPU or driver on this host"
    try:
        devices = []
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                procs = {int(p.pid): (int(p.usedGpuMemory) if isinstance(p.usedGpuMemory, int) else None)
                         for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
            except Exception:  # pylint: disable=broad-exception-caught  # not supported / no permission
                procs = {}
            devices.append(Device(index=index, total=int(mem.total), free=int(mem.free), processes=procs))
        return GpuHost(driver_version=driver, devices=devices), ""
    except Exception as exc:  # pylint: disable=broad-exception-caught
        return None, f"NVML failed while reading the GPUs ({exc})"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # pylint: disable=broad-exception-caught
            pass
