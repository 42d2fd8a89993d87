# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report: venom_model_facts of many hosts in one document (data, and Markdown).

``build_report(hosts)`` takes ``{host: ansible_facts of venom_model_facts, or None when the host
gave none (unreachable or failed)}`` and returns a JSON-able document: per host its models
(name, provider, revision, size, status, active), disk against quota, free disk, memory, GPUs
and VRAM, runtimes with their active model and health, and failed operations; for the fleet,
totals, every model with the revisions it has on which hosts (``drift`` when hosts disagree),
the active models, and the problems worth a look. ``render_markdown(report)`` writes it for
people. Plain Python: the ``venom.models.fleet_report`` filter and the ``report`` playbook use it.
"""
from __future__ import annotations

from ansible_collections.venom.models.plugins.module_utils.timeutil import iso

SCHEMA = "venom.models/fleet-report@1"
_MODEL_KEYS = ("name", "provider", "revision", "size_bytes", "size_gb", "status", "active", "active_runtime",
               "runtime", "installed_at")
_USAGE_KEYS = ("disk_usage_gb", "disk_limit_gb", "disk_usage_percent", "disk_free_gb", "memory_total_gb",
               "memory_usage_percent", "cpu_usage_percent", "gpu_count", "vram_usage_mb", "vram_total_mb",
               "vram_usage_percent", "models_count")
_RUNTIME_KEYS = ("configured", "mode", "running", "healthy", "health", "model", "served_model_name", "pid", "port",
                 "restarts", "url")
_OP_KEYS = ("id", "type", "model", "provider", "error", "message", "started_at", "finished_at", "interrupted")


def _pick(d: dict | None, keys) -> dict:
    d = d or {}
    return {k: d.get(k) for k in keys}


def _host(name: str, facts: dict | None) -> dict:
    if not isinstance(facts, dict) or not facts:
        return {"host": name, "reachable": False, "models": [], "usage": None, "gpus": [], "runtimes": {},
                "active_models": {}, "failed_operations": [], "running_operations": [],
                "problems": ["no facts: the host was unreachable or the facts task failed"]}
    models = [_pick(m, _MODEL_KEYS) for m in facts.get("venom_models") or []]
    usage = facts.get("venom_usage")
    runtimes = {rt: _pick(st, _RUNTIME_KEYS) for rt, st in sorted((facts.get("venom_runtimes") or {}).items())}
    ops = facts.get("venom_operations") or []
    failed = [_pick(o, _OP_KEYS) for o in ops if o.get("status") == "failed"]
    running = [_pick(o, _OP_KEYS + ("progress", "bytes_done", "bytes_total")) for o in ops
               if o.get("status") in ("pending", "in_progress")]
    active = {rt: st["model"] for rt, st in runtimes.items() if st.get("configured") and st.get("model")}
    for m in models:  # the manifest's active flag, for hosts whose runtimes were not gathered
        if m.get("active") and m.get("active_runtime") and m["active_runtime"] not in active:
            active[m["active_runtime"]] = m["name"]
    problems = []
    for rt, st in runtimes.items():
        if st.get("configured") and not st.get("healthy"):
            problems.append(f"{rt} is not healthy: {st.get('health') or 'not running'}")
    if usage and (usage.get("disk_usage_percent") or 0) >= 90:
        problems.append(f"model disk at {usage['disk_usage_percent']}% of its {usage.get('disk_limit_gb')} GB quota")
    for m in models:
        if m.get("status") not in (None, "installed"):
            problems.append(f"model {m['name']} is {m['status']}")
    if failed:
        problems.append(f"{len(failed)} failed operation(s), newest: {failed[0].get('type')} "
                        f"{failed[0].get('model')}: {failed[0].get('error')}")
    return {"host": name, "reachable": True, "models": models, "usage": _pick(usage, _USAGE_KEYS) if usage else None,
            "gpus": list((usage or {}).get("gpus") or []), "runtimes": runtimes, "active_models": active,
            "failed_operations": failed, "running_operations": running, "problems": problems}


def build_report(hosts: dict, generated_at: str | None = None) -> dict:
    """The fleet report document for ``{host: facts or None}`` (see the module docstring)."""
    rows = [_host(str(name), hosts[name]) for name in sorted(hosts, key=str)]
    catalogue: dict = {}
    for row in rows:
        for m in row["models"]:
            key = (m["provider"], m["name"])
            item = catalogue.setdefault(key, {"name": m["name"], "provider": m["provider"], "revisions": {},
                                              "hosts": [], "size_bytes": m.get("size_bytes")})
            item["revisions"].setdefault(str(m.get("revision")), []).append(row["host"])
            item["hosts"].append(row["host"])
    models = []
    for key in sorted(catalogue):
        item = catalogue[key]
        item["drift"] = len(item["revisions"]) > 1
        models.append(item)
    reachable = [r for r in rows if r["reachable"]]
    summary = {
        "hosts": len(rows), "reachable": len(reachable),
        "unreachable": [r["host"] for r in rows if not r["reachable"]],
        "models_installed": sum(len(r["models"]) for r in reachable),
        "distinct_models": len(models),
        "bytes_installed": sum(int(m.get("size_bytes") or 0) for r in reachable for m in r["models"]),
        "failed_operations": sum(len(r["failed_operations"]) for r in reachable),
        "hosts_with_problems": [r["host"] for r in rows if r["problems"]],
        "drift": [m["name"] for m in models if m["drift"]],
    }
    return {"schema": SCHEMA, "generated_at": generated_at or iso(), "summary": summary, "models": models,
            "hosts": rows}


def _gb(value) -> str:
    return "-" if value is None else f"{value:g}"


def _cell(value) -> str:
    text = "-" if value in (None, "", []) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list, rows: list) -> list:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(report: dict, title: str = "venom.models fleet report") -> str:
    """The report for people: summary, per-host table, models and versions, problems, failed operations."""
    s = report["summary"]
    lines = [f"# {title}", "", f"Generated {report['generated_at']}.", "",
             f"- Hosts: {s['reachable']} of {s['hosts']} reachable"
             + (f" (unreachable: {', '.join(s['unreachable'])})" if s["unreachable"] else ""),
             f"- Models installed: {s['models_installed']} ({s['distinct_models']} distinct), "
             f"{s['bytes_installed'] / 1e9:.3f} GB",
             f"- Failed operations: {s['failed_operations']}",
             f"- Version drift: {', '.join(s['drift']) if s['drift'] else 'none'}",
             f"- Hosts with problems: {', '.join(s['hosts_with_problems']) if s['hosts_with_problems'] else 'none'}",
             "", "## Hosts", ""]
    host_rows = []
    for h in report["hosts"]:
        u = h["usage"] or {}
        vram = "-" if u.get("vram_total_mb") is None else f"{u.get('vram_usage_mb')}/{u.get('vram_total_mb')} MB"
        active = ", ".join(f"{rt}: {m}" for rt, m in sorted(h["active_models"].items())) or "-"
        health = ", ".join(f"{rt} {'healthy' if st.get('healthy') else ('down' if st.get('configured') else 'absent')}"
                           for rt, st in sorted(h["runtimes"].items())) or "-"
        host_rows.append([h["host"], "yes" if h["reachable"] else "no", len(h["models"]),
                          f"{_gb(u.get('disk_usage_gb'))}/{_gb(u.get('disk_limit_gb'))} GB ({_gb(u.get('disk_usage_percent'))}%)"
                          if u else "-", _gb(u.get("disk_free_gb")) + " GB" if u else "-",
                          u.get("gpu_count") if u else "-", vram, active, health])
    lines += _table(["host", "reachable", "models", "model disk / quota", "free disk", "GPUs", "VRAM used/total",
                     "active models", "runtimes"], host_rows)
    lines += ["", "## Models and versions", ""]
    lines += _table(["model", "provider", "revision", "hosts", "drift"],
                    [[m["name"], m["provider"], rev[:12] if rev != "None" else "-", ", ".join(hosts),
                      "yes" if m["drift"] else "no"] for m in report["models"] for rev, hosts in sorted(m["revisions"].items())])
    problems = [(h["host"], p) for h in report["hosts"] for p in h["problems"]]
    lines += ["", "## Problems", ""]
    lines += [f"- **{host}**: {p}" for host, p in problems] if problems else ["None."]
    failed = [(h["host"], o) for h in report["hosts"] for o in h["failed_operations"]]
    lines += ["", "## Failed operations", ""]
    if failed:
        lines += _table(["host", "type", "model", "finished", "error"],
                        [[host, o.get("type"), o.get("model"), o.get("finished_at"), o.get("error")] for host, o in failed])
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"
