# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Resource usage of a host: model disk use against the quota, free disk, CPU, memory, GPUs.

psutil gives CPU and memory; NVML (``import pynvml``,
package nvidia-ml-py) gives GPU utilisation and VRAM. A host without a GPU, without the NVIDIA
driver or without those packages gets ``null`` fields and a note, never a failure.
"""
from __future__ import annotations

try:
    import psutil
except ImportError as _exc:  # pragma: no cover - depends on the host
    psutil = None
    PSUTIL_IMPORT_ERROR: ImportError | None = _exc
else:
    PSUTIL_IMPORT_ERROR = None

try:
    import pynvml
except ImportError as _exc:  # pragma: no cover - depends on the host
    pynvml = None
    PYNVML_IMPORT_ERROR: ImportError | None = _exc
else:
    PYNVML_IMPORT_ERROR = None

from ansible_collections.venom.models.plugins.module_utils.store.manifest import GB
from ansible_collections.venom.models.plugins.module_utils.store.quota import free_bytes

MB = 2 ** 20


def _pct(part, whole):
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 1)


def gpu_usage(nvml=None) -> tuple[list, list]:
    """Per-GPU figures through NVML: (gpus, notes). Any NVML failure is a note, not an error."""
    nvml = pynvml if nvml is None else nvml
    if nvml is None:
        return [], [f"GPU figures unavailable: the Python package nvidia-ml-py (import pynvml) is not installed "
                    f"({PYNVML_IMPORT_ERROR})."]
    try:
        nvml.nvmlInit()
    except Exception as exc:  # pylint: disable=broad-exception-caught  # NVMLError_* and driver load errors
        return [], [f"GPU figures unavailable: NVML could not initialise ({exc}); no NVIDIA GPU or driver on this host."]
    gpus, notes = [], []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            gpu = {"index": index, "name": None, "uuid": None, "utilization_percent": None,
                   "vram_used_mb": None, "vram_total_mb": None, "vram_usage_percent": None}
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                gpu["name"] = name.decode() if isinstance(name, bytes) else name
                uuid = nvml.nvmlDeviceGetUUID(handle)
                gpu["uuid"] = uuid.decode() if isinstance(uuid, bytes) else uuid
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                gpu["vram_used_mb"] = round(mem.used / MB, 1)
                gpu["vram_total_mb"] = round(mem.total / MB, 1)
                gpu["vram_usage_percent"] = _pct(mem.used, mem.total)
                gpu["utilization_percent"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                notes.append(f"GPU {index}: some figures unavailable ({exc}).")
            gpus.append(gpu)
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # pylint: disable=broad-exception-caught
            pass
    return gpus, notes


def usage(models: list, quota_gb: float, models_dir: str, cpu_interval: float = 0.1, nvml=None) -> dict:
    """The usage figures of one host, with per-GPU detail."""
    used = sum(int(m.get("size_bytes") or 0) for m in models)
    free = free_bytes(models_dir)
    notes = []
    out = {
        "disk_usage_bytes": used,
        "disk_usage_gb": round(used / GB, 3),
        "disk_limit_gb": quota_gb,
        "disk_limit_bytes": int(quota_gb * GB),
        "disk_usage_percent": _pct(used, quota_gb * GB),
        "disk_free_bytes": free,
        "disk_free_gb": round(free / GB, 3),
        "models_count": len(models),
        "cpu_usage_percent": None, "cpu_count": None,
        "memory_total_gb": None, "memory_used_gb": None, "memory_usage_percent": None,
    }
    if psutil is None:
        notes.append(f"CPU and memory figures unavailable: the Python package psutil is not installed ({PSUTIL_IMPORT_ERROR}).")
    else:
        out["cpu_usage_percent"] = psutil.cpu_percent(interval=cpu_interval)
        out["cpu_count"] = psutil.cpu_count()
        vm = psutil.virtual_memory()
        out["memory_total_gb"] = round(vm.total / GB, 3)
        out["memory_used_gb"] = round((vm.total - vm.available) / GB, 3)
        out["memory_usage_percent"] = _pct(vm.total - vm.available, vm.total)
    gpus, gpu_notes = gpu_usage(nvml)
    notes.extend(gpu_notes)
    vram_used = [g["vram_used_mb"] for g in gpus if g["vram_used_mb"] is not None]
    vram_total = [g["vram_total_mb"] for g in gpus if g["vram_total_mb"] is not None]
    utils = [g["utilization_percent"] for g in gpus if g["utilization_percent"] is not None]
    out.update({
        "gpus": gpus,
        "gpu_count": len(gpus),
        "gpu_usage_percent": round(sum(utils) / len(utils), 1) if utils else None,
        "vram_usage_mb": round(sum(vram_used), 1) if vram_used else None,
        "vram_total_mb": round(sum(vram_total), 1) if vram_total else None,
    })
    out["vram_usage_percent"] = _pct(out["vram_usage_mb"], out["vram_total_mb"])
    out["notes"] = notes
    return out
