# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage quota and free-disk pre-flight, checked before any byte is downloaded.

* quota: the manifest's exact model sizes (all providers) plus the planned download must not
  exceed ``quota_gb`` (default 50 GB);
* disk: the free space of the filesystem that holds the download must stay above
  ``reserve_gb`` after the download.

Sizes are decimal: 1 GB = 10^9 bytes.
"""
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.errors import QuotaError
from ansible_collections.venom.models.plugins.module_utils.store.manifest import GB
from ansible_collections.venom.models.plugins.module_utils.store.validation import validate_non_negative, validate_size

DEFAULT_QUOTA_GB = 50.0
DEFAULT_RESERVE_GB = 2.0
DEFAULT_MODEL_SIZE_GB = 4.0  # the source's estimate, used only when a provider cannot tell


def storage_settings(recorded: dict, quota_gb: float | None = None, reserve_gb: float | None = None) -> dict:
    """The storage settings in force: as given, else as recorded with the manifest, else the defaults."""
    return {"quota_gb": float(quota_gb if quota_gb is not None else recorded.get("quota_gb", DEFAULT_QUOTA_GB)),
            "reserve_gb": float(reserve_gb if reserve_gb is not None else recorded.get("reserve_gb", DEFAULT_RESERVE_GB))}


def fmt_bytes(n: int | float) -> str:
    """Human size in decimal units, with enough precision to compare (e.g. '12.35 GB')."""
    n = float(n)
    for unit, scale in (("TB", 10 ** 12), ("GB", GB), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def free_bytes(path: str) -> int:
    """Free bytes available to unprivileged writers on the filesystem holding ``path`` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def plan(models: list, planned_bytes: int, quota_gb: float, reserve_gb: float, path: str,
         replaced_bytes: int = 0, disk_free: int | None = None) -> dict:
    """The quota and disk picture of a planned download (no exception).

    ``models`` are the manifest entries counted against the quota; ``replaced_bytes`` is the size
    of what the operation will remove once it succeeds (e.g. the old revision of an update),
    which still counts while the download runs.
    """
    quota_bytes = int(validate_non_negative(quota_gb, "quota_gb") * GB)
    reserve_bytes = int(validate_non_negative(reserve_gb, "reserve_gb") * GB)
    # every size entering a plan is a bounded, non-negative integer, whatever a server reported
    planned_bytes = validate_size(planned_bytes, "the planned download")
    replaced_bytes = validate_size(replaced_bytes, "the size of the replaced version")
    used = sum(validate_size(m.get("size_bytes") or 0, f"the size of {m.get('name')}") for m in models)
    disk_free = free_bytes(path) if disk_free is None else disk_free
    peak_used = used + planned_bytes
    report = {
        "quota_bytes": quota_bytes,
        "used_bytes": used,
        "planned_bytes": int(planned_bytes),
        "used_after_bytes": peak_used - replaced_bytes,
        "quota_free_after_bytes": quota_bytes - (peak_used - replaced_bytes),
        "disk_free_bytes": disk_free,
        "disk_free_after_bytes": disk_free - int(planned_bytes) + replaced_bytes,
        "reserve_bytes": reserve_bytes,
        "fits_quota": peak_used <= quota_bytes,
        "fits_disk": disk_free - int(planned_bytes) >= reserve_bytes,
        "path": path,
    }
    report["fits"] = report["fits_quota"] and report["fits_disk"]
    return report


def require_fit(report: dict, model: str, models: list) -> None:
    """Raise QuotaError with what is needed, what is free and what to do, if the plan does not fit."""
    planned = report["planned_bytes"]
    if not report["fits_quota"]:
        left = report["quota_bytes"] - report["used_bytes"]
        need_gb = (report["used_bytes"] + planned) / GB
        biggest = sorted(models, key=lambda m: m.get("size_bytes") or 0, reverse=True)[:3]
        candidates = ", ".join(f"{m['name']} ({fmt_bytes(m.get('size_bytes') or 0)})" for m in biggest)
        raise QuotaError(
            f"Installing {model} needs {fmt_bytes(planned)} but the quota of {fmt_bytes(report['quota_bytes'])} "
            f"has {fmt_bytes(max(0, left))} left ({fmt_bytes(report['used_bytes'])} used by {len(models)} model(s)). "
            "Nothing was downloaded.",
            fix=((f"Remove models with venom_model state=absent (largest: {candidates}) or " if candidates else "")
                 + f"raise quota_gb to at least {need_gb:.2f}."),
            **report)
    if not report["fits_disk"]:
        need = planned + report["reserve_bytes"]
        raise QuotaError(
            f"Installing {model} needs {fmt_bytes(planned)} plus the {fmt_bytes(report['reserve_bytes'])} reserve "
            f"({fmt_bytes(need)}) on the filesystem of {report['path']}, which has {fmt_bytes(report['disk_free_bytes'])} free. "
            "Nothing was downloaded.",
            fix=f"Free at least {fmt_bytes(need - report['disk_free_bytes'])} on that filesystem, move models_dir to a "
                "larger one, or lower reserve_gb.",
            **report)
