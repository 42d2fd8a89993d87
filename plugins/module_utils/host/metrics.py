# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's model state as Prometheus metrics, in node_exporter's textfile collector format.

``render(facts, operations)`` turns the facts of venom_model_facts (``venom_models``,
``venom_usage``, ``venom_runtimes``) and the operations journal into the text exposition format;
``write_textfile(path, text)`` replaces the collector file atomically (temp file in the same
directory, then rename: node_exporter reads only ``*.prom`` files, never the hidden temp file).
Both are pure apart from the write; ``collect`` gathers the facts and writes them, for the
module's ``metrics_file`` option and the systemd timer the roles install.

Naming follows Prometheus' conventions: one ``venom_`` prefix, base units in names
(``_bytes``, ``_seconds``), ``_total`` only for counters, ``_info`` gauges of value 1 for
string facts. Label sets are bounded by what a host has: a model, a runtime instance, a GPU, an
operation type (the journal's fixed list): never a label per download, file or operation id.
A figure the host cannot measure (RSS without /proc access, VRAM without NVML) is left out,
never written as 0.

Runtime facts are read keyed by runtime instance (``{instance: {runtime, running, healthy,
model, restarts, rss_bytes, vram, gpus, ...}}``); the older form keyed by runtime name
(``vllm``, ``ollama``) is the special case of an instance named after its runtime. Missing
fields are tolerated.
"""
from __future__ import annotations

import math

from ansible_collections.venom.models.plugins.module_utils.host.facts import gather
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_bytes
from ansible_collections.venom.models.plugins.module_utils.store.journal import RUNNING_STATUSES, Journal
from ansible_collections.venom.models.plugins.module_utils.store.journal import STATUSES as OPERATION_STATUSES
from ansible_collections.venom.models.plugins.module_utils.store.journal import TYPES as OPERATION_TYPES
from ansible_collections.venom.models.plugins.module_utils.store.manifest import GB
from ansible_collections.venom.models.plugins.module_utils.timeutil import parse_iso

PREFIX = "venom_"
RUNTIME_KINDS = ("vllm", "ollama")
MIB = 2 ** 20
# Field names the instance facts may carry the tree RSS and per-GPU VRAM under (first found wins).
_RSS_FIELDS = ("rss_bytes", "memory_rss_bytes", "tree_rss_bytes")
_VRAM_FIELDS = ("vram", "vram_bytes", "vram_by_gpu", "gpu_memory")


class Family:
    """One metric family: name, help, type and its samples."""

    def __init__(self, name: str, help_text: str, kind: str = "gauge"):
        self.name = PREFIX + name
        self.help = help_text
        self.kind = kind
        self.samples: list[tuple[dict, float]] = []

    def add(self, value, **labels) -> None:
        """Add a sample; a value of None (not measured) is left out."""
        if value is None:
            return
        number = float(value)
        if math.isnan(number):
            return
        self.samples.append((labels, number))


def escape_label(value) -> str:
    """A label value escaped for the text format (backslash, double quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value.is_integer() and abs(value) < 2 ** 63:
        return str(int(value))
    return repr(value)


def exposition(families: list[Family]) -> str:
    """The text exposition of ``families`` (families without samples are left out)."""
    lines = []
    for fam in families:
        if not fam.samples:
            continue
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in sorted(fam.samples, key=lambda s: sorted(s[0].items())):
            body = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{fam.name}{{{body}}} {_number(value)}" if body else f"{fam.name} {_number(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _flag(value) -> float | None:
    return None if value is None else (1.0 if value else 0.0)


def _first(d: dict, keys):
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


def runtime_kind(key: str, state: dict) -> str:
    """vllm or ollama: the instance's ``runtime`` field, else its name when that is a runtime's."""
    kind = state.get("runtime")
    if kind:
        return str(kind)
    name = state.get("name") or key
    return name if name in RUNTIME_KINDS else "unknown"


def vram_by_gpu(state: dict) -> dict:
    """``{gpu index (str): bytes}`` of one runtime instance; empty when not measured.

    Accepts a mapping ``{gpu: bytes}``, a list of ``{index|gpu, used_bytes|vram_bytes|used_mb|vram_mb}``,
    or a scalar (bytes; ``vram_mb`` in MiB) that is attributed to the instance's only GPU, or to
    ``gpu="all"`` when it has several.
    """
    raw = _first(state, _VRAM_FIELDS)
    scale = 1
    if raw is None and state.get("vram_mb") is not None:
        raw, scale = state["vram_mb"], MIB
    out: dict = {}
    if isinstance(raw, dict):
        for gpu, value in raw.items():
            if value is not None:
                out[str(gpu)] = float(value) * scale
    elif isinstance(raw, list):
        for item in raw:
            if not isinstance(item, dict):
                continue
            gpu = _first(item, ("index", "gpu"))
            if gpu is None:
                continue
            if _first(item, ("used_bytes", "vram_bytes")) is not None:
                out[str(gpu)] = float(_first(item, ("used_bytes", "vram_bytes")))
            elif _first(item, ("used_mb", "vram_mb")) is not None:
                out[str(gpu)] = float(_first(item, ("used_mb", "vram_mb"))) * MIB
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        gpus = state.get("gpus") or []
        out[str(gpus[0]) if len(gpus) == 1 else "all"] = float(raw) * scale
    return out


def _operation_type(op: dict) -> str:
    kind = op.get("type")
    return kind if kind in OPERATION_TYPES else "other"


def _timestamp(text) -> float | None:
    try:
        return parse_iso(text).timestamp() if text else None
    except (TypeError, ValueError):
        return None


def _model_families(models: list) -> list[Family]:
    info = Family("model_info", "An installed model (value 1), with its provider, revision and status.")
    size = Family("model_size_bytes", "Bytes on disk of an installed model (its exact manifest size).")
    count = Family("models", "Models in the manifest.")
    for m in models:
        labels = {"model": m.get("name") or "", "provider": m.get("provider") or ""}
        info.add(1, revision=m.get("revision") or "", status=m.get("status") or "", **labels)
        size.add(m.get("size_bytes"), **labels)
    count.add(len(models))
    return [info, size, count]


def _usage_families(usage: dict) -> list[Family]:
    used = Family("models_disk_used_bytes", "Bytes the installed models take on disk.")
    quota = Family("models_disk_quota_bytes", "The model storage quota in bytes.")
    free = Family("models_disk_free_bytes", "Free bytes on the filesystem that holds the models directory.")
    gpu_info = Family("gpu_info", "A GPU of the host (value 1), with its name and UUID (NVML).")
    gpu_used = Family("gpu_memory_used_bytes", "VRAM in use on a GPU (NVML), all processes.")
    gpu_total = Family("gpu_memory_total_bytes", "VRAM of a GPU (NVML).")
    used.add(usage.get("disk_usage_bytes"))
    quota.add(usage.get("disk_limit_bytes") if usage.get("disk_limit_bytes") is not None
              else (None if usage.get("disk_limit_gb") is None else usage["disk_limit_gb"] * GB))
    free.add(usage.get("disk_free_bytes") if usage.get("disk_free_bytes") is not None
             else (None if usage.get("disk_free_gb") is None else usage["disk_free_gb"] * GB))
    for gpu in usage.get("gpus") or []:
        index = str(gpu.get("index"))
        gpu_info.add(1, gpu=index, name=gpu.get("name") or "", uuid=gpu.get("uuid") or "")
        if gpu.get("vram_used_mb") is not None:
            gpu_used.add(gpu["vram_used_mb"] * MIB, gpu=index)
        if gpu.get("vram_total_mb") is not None:
            gpu_total.add(gpu["vram_total_mb"] * MIB, gpu=index)
    return [used, quota, free, gpu_info, gpu_used, gpu_total]


def _runtime_families(runtimes: dict) -> list[Family]:
    fams = {
        "configured": Family("runtime_configured", "1 if the runtime instance is set up on this host."),
        "up": Family("runtime_up", "1 if the runtime instance's process or unit is running."),
        "healthy": Family("runtime_healthy", "1 if the runtime instance passes the activation health gate."),
        "model": Family("runtime_served_model_info", "The model a runtime instance serves (value 1)."),
        "restarts": Family("runtime_restarts_total", "Restarts of the runtime instance (systemd NRestarts, "
                                                     "or crashes recovered in process mode).", "counter"),
        "rss": Family("runtime_memory_rss_bytes", "Resident memory of the runtime instance's whole process tree."),
        "vram": Family("runtime_gpu_memory_used_bytes", "VRAM the runtime instance's processes use on a GPU (NVML)."),
    }
    for key in sorted(runtimes or {}):
        st = runtimes[key] or {}
        labels = {"runtime": runtime_kind(key, st), "runtime_instance": str(key)}
        fams["configured"].add(_flag(st.get("configured", True)), **labels)
        fams["up"].add(_flag(st.get("running")), **labels)
        fams["healthy"].add(_flag(st.get("healthy")), **labels)
        if st.get("model") and st.get("running"):
            fams["model"].add(1, model=st["model"], **labels)
        fams["restarts"].add(st.get("restarts"), **labels)
        fams["rss"].add(_first(st, _RSS_FIELDS), **labels)
        for gpu, value in sorted(vram_by_gpu(st).items()):
            fams["vram"].add(value, gpu=gpu, **labels)
    return list(fams.values())


def _operation_families(operations: list) -> list[Family]:
    status = Family("operation_last_status", "Status of the newest operation of a type (1 for its status, "
                                             "0 for the others).")
    duration = Family("operation_last_duration_seconds", "Duration of the newest finished operation of a type.")
    finished = Family("operation_last_finished_timestamp_seconds",
                      "When the newest finished operation of a type ended (Unix time).")
    failed = Family("operations_failed", "Failed operations of a type in the journal's retained history.")
    running = Family("operations_in_progress", "Operations of a type running now.")
    by_type: dict = {}
    for op in operations or []:
        by_type.setdefault(_operation_type(op), []).append(op)
    for kind, ops in sorted(by_type.items()):
        ops = sorted(ops, key=lambda o: o.get("started_at") or "", reverse=True)
        newest = ops[0].get("status")
        for state in OPERATION_STATUSES:
            status.add(1 if newest == state else 0, type=kind, status=state)
        done = [o for o in ops if o.get("finished_at")]
        if done:
            last = max(done, key=lambda o: o.get("finished_at") or "")
            duration.add(last.get("duration_seconds"), type=kind)
            finished.add(_timestamp(last.get("finished_at")), type=kind)
        failed.add(sum(1 for o in ops if o.get("status") == "failed"), type=kind)
        running.add(sum(1 for o in ops if o.get("status") in RUNNING_STATUSES), type=kind)
    return [status, duration, finished, failed, running]


def render(facts: dict, operations: list | None = None) -> str:
    """The exposition of one host's facts (``ansible_facts`` of venom_model_facts).

    ``operations`` is the journal (all retained operations); without it, ``venom_operations``
    of the facts is used. A subset that was not gathered gives no metrics.
    """
    families: list[Family] = []
    if facts.get("venom_models") is not None:
        families += _model_families(facts["venom_models"])
    if facts.get("venom_usage"):
        families += _usage_families(facts["venom_usage"])
    if facts.get("venom_runtimes") is not None:
        families += _runtime_families(facts["venom_runtimes"])
    ops = operations if operations is not None else facts.get("venom_operations")
    if ops is not None:
        families += _operation_families(ops)
    return exposition(families)


def write_textfile(path: str, text: str, write: bool = True) -> bool:
    """Replace ``path`` with ``text`` atomically unless it already holds it. True if it did (or,
    with ``write=False``, would) change."""
    data = text.encode("utf-8")
    try:
        with open(path, "rb") as fh:
            if fh.read() == data:
                return False
    except FileNotFoundError:
        pass
    if not write:
        return True
    atomic_write_bytes(path, data, mode=0o644)
    return True


METRICS_SUBSETS = ("models", "usage", "runtimes")


def collect(models_dir: str, path: str, quota_gb: float = 50.0, runner=None, api_key: str | None = None,
            facts: dict | None = None, write: bool = True) -> dict:
    """Write the metrics of this host to ``path``; returns ``{"changed", "path", "series"}``.

    ``facts`` are the facts already gathered (the module's); the subsets the metrics need that are
    missing are gathered here. Operations are read from the whole journal. ``write=False`` (check
    mode) only tells whether the file would change.
    """
    facts = dict(facts or {})
    missing = [s for s, key in (("models", "venom_models"), ("usage", "venom_usage"), ("runtimes", "venom_runtimes"))
               if facts.get(key) is None]
    if missing:
        facts.update(gather(models_dir, missing, quota_gb=quota_gb, runner=runner, api_key=api_key))
    text = render(facts, Journal(models_dir).list())
    changed = write_textfile(path, text, write=write)
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {"changed": changed, "path": path, "series": series}
