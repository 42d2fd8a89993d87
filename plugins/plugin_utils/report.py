# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report: venom_model_facts of many hosts in one document (data, and Markdown).

``build_report(hosts)`` takes ``{host: ansible_facts of venom_model_facts, or None when the host
gave none (unreachable or failed)}`` and returns a JSON-able document: per host its models
(name, provider, revision, size, status, active), disk against quota, free disk, memory, GPUs
and VRAM, runtimes with their active model and health, and failed operations; for the fleet,
totals, every model with the revisions it has on which hosts (``drift`` when hosts disagree),
the active models, and the problems worth a look. ``render_markdown(report)`` and
``render_html(report)`` (one self-contained page with bars) write it for people; ``same_content``
tells whether a new report says anything the previous one did not. Plain Python: the ``venom.models.fleet_report`` filter and the ``report`` playbook use it.
"""
from __future__ import annotations

import html

from ansible_collections.venom.models.plugins.module_utils.store.journal import RUNNING_STATUSES
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso

SCHEMA = "venom.models/fleet-report@1"
_MODEL_KEYS = ("name", "provider", "revision", "size_bytes", "size_gb", "status", "active", "active_runtime",
               "runtime", "installed_at")
_USAGE_KEYS = ("disk_usage_gb", "disk_limit_gb", "disk_usage_percent", "disk_free_gb", "memory_total_gb",
               "memory_usage_percent", "cpu_usage_percent", "gpu_count", "vram_usage_mb", "vram_total_mb",
               "vram_usage_percent", "models_count")
_RUNTIME_KEYS = ("configured", "mode", "running", "healthy", "health", "model", "served_model_name", "pid", "port",
                 "restarts", "url", "runtime", "gpus", "rss_bytes", "vram_bytes")
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
               if o.get("status") in RUNNING_STATUSES]
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


def build_report(hosts: dict, generated_at: str | None = None, previous: dict | None = None) -> dict:
    """The fleet report document for ``{host: facts or None}`` (see the module docstring).

    With ``previous`` (the last report), that report is returned as it is when the new one says
    the same (``same_content``): its files then stay byte for byte the same."""
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
    report = {"schema": SCHEMA, "generated_at": generated_at or iso(), "summary": summary, "models": models,
              "hosts": rows}
    return previous if same_content(report, previous) else report


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


# ---------------------------------------------------------------------------------------------
# Unchanged reports: the same document, so the files stay the same


# Figures of the moment: a report that differs from the previous one only in these (and the time)
# is the previous report, so re-running the report playbook rewrites nothing.
_MOMENTARY_USAGE = ("cpu_usage_percent", "memory_usage_percent", "disk_free_gb", "vram_usage_mb",
                    "vram_usage_percent")
_MOMENTARY_GPU = ("utilization_percent", "vram_used_mb", "vram_usage_percent")


def _stable_view(report: dict) -> dict:
    view = {k: v for k, v in report.items() if k != "generated_at"}
    hosts = []
    for h in report.get("hosts") or []:
        h = dict(h)
        if isinstance(h.get("usage"), dict):
            h["usage"] = {k: v for k, v in h["usage"].items() if k not in _MOMENTARY_USAGE}
        h["gpus"] = [{k: v for k, v in g.items() if k not in _MOMENTARY_GPU} for g in h.get("gpus") or []
                     if isinstance(g, dict)]
        hosts.append(h)
    view["hosts"] = hosts
    return view


def same_content(report: dict, previous) -> bool:
    """True if ``previous`` (a report, e.g. the JSON file written last time) says what ``report``
    says, apart from the time it was generated and the figures of the moment (CPU, memory, free
    disk, GPU utilisation and VRAM use)."""
    return (isinstance(previous, dict) and previous.get("schema") == SCHEMA
            and _stable_view(previous) == _stable_view(report))


# ---------------------------------------------------------------------------------------------
# HTML


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2433}
header{background:#1d2433;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b9c0cf}main{padding:20px 28px;max-width:1200px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:18px}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0002;min-width:130px}
.card b{display:block;font-size:22px}.card.bad b{color:#c0392b}
section{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0002;padding:14px 18px;margin-bottom:16px}
h2{font-size:17px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;margin:4px 0}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e6ec;
vertical-align:top;overflow-wrap:break-word}th{background:#f0f2f5;font-weight:600;white-space:nowrap}
tr.drift td{background:#fff4d6}tr.drift td.rev{font-weight:600;color:#9a6200}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;
white-space:nowrap}
.ok{background:#2e8b57}.down{background:#c0392b}.warn{background:#d68910}.off{background:#8a93a6}
.problems li{color:#c0392b}.muted{color:#6b7385}code{font-size:12px}
.bar{margin:4px 0 8px}.bar svg{display:block}.host{border-left:4px solid #2e8b57}.host.bad{border-left-color:#c0392b}
"""


def _e(value) -> str:
    """Any value as escaped HTML text ('-' for nothing)."""
    return html.escape("-" if value in (None, "", []) else str(value), quote=True)


def _bar(label: str, used, total, unit: str) -> str:
    """A labelled SVG bar of ``used`` against ``total`` (green, orange from 75 %, red from 90 %)."""
    if used is None or not total:
        return f'<div class="bar muted">{_e(label)}: not measured</div>'
    frac = max(0.0, min(1.0, float(used) / float(total)))
    color = "#c0392b" if frac >= 0.9 else "#d68910" if frac >= 0.75 else "#2e8b57"
    text = f"{label}: {used:g} / {total:g} {unit} ({100 * float(used) / float(total):.1f} %)"
    return (f'<div class="bar"><svg width="520" height="22" role="img" aria-label="{_e(text)}">'
            f'<rect x="0" y="0" width="520" height="22" rx="4" fill="#e3e6ec"/>'
            f'<rect x="0" y="0" width="{520 * frac:.1f}" height="22" rx="4" fill="{color}"/>'
            f'<text x="8" y="15" font-size="12" fill="#1d2433">{_e(text)}</text></svg></div>')


def _mib(value) -> str | None:
    return None if value is None else f"{value / 2 ** 20:.0f}"


def _badge(state: dict) -> str:
    if not state.get("configured"):
        return '<span class="badge off">not configured</span>'
    if state.get("healthy"):
        return '<span class="badge ok">healthy</span>'
    if state.get("running"):
        return '<span class="badge warn">unhealthy</span>'
    return '<span class="badge down">down</span>'


def _html_table(header: list, rows: list, row_classes: list | None = None) -> str:
    """``rows`` hold cells that are already HTML (escape with ``_e``)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = (row_classes or [""] * len(rows))[i]
        attr = f' class="{cls}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _host_html(h: dict) -> str:
    out = [f'<section class="host{" bad" if h["problems"] else ""}"><h2>{_e(h["host"])}'
           + ("" if h["reachable"] else ' <span class="badge down">unreachable</span>') + "</h2>"]
    u = h.get("usage") or {}
    if u:
        out.append(_bar("model disk", u.get("disk_usage_gb"), u.get("disk_limit_gb"), "GB"))
        out.append(f'<div class="muted">free disk {_e(u.get("disk_free_gb"))} GB, {_e(u.get("models_count"))} models</div>')
    for g in h.get("gpus") or []:
        out.append(_bar(f"GPU {g.get('index')} {g.get('name') or ''} VRAM".replace("  ", " "),
                        g.get("vram_used_mb"), g.get("vram_total_mb"), "MB"))
    if h["reachable"] and not h.get("gpus"):
        out.append('<div class="muted">no GPU figures (no GPU or no NVML on this host)</div>')
    if h["runtimes"]:
        out.append("<h3>Runtimes</h3>")
        out.append(_html_table(
            ["instance", "state", "model", "mode", "port", "restarts", "GPUs", "RSS (MB)", "VRAM (MB)", "health"],
            [[f"<td>{_e(name)}</td>", f"<td>{_badge(st)}</td>", f"<td>{_e(st.get('model'))}</td>",
              f"<td>{_e(st.get('mode'))}</td>", f"<td>{_e(st.get('port'))}</td>", f"<td>{_e(st.get('restarts'))}</td>",
              f"<td>{_e(', '.join(str(g) for g in st.get('gpus') or []))}</td>", f"<td>{_e(_mib(st.get('rss_bytes')))}</td>",
              f"<td>{_e(_mib(st.get('vram_bytes')))}</td>", f"<td>{_e(st.get('health'))}</td>"]
             for name, st in sorted(h["runtimes"].items())]))
    if h["models"]:
        out.append("<h3>Models</h3>")
        out.append(_html_table(
            ["model", "provider", "revision", "size (GB)", "status", "active"],
            [[f"<td>{_e(m.get('name'))}</td>", f"<td>{_e(m.get('provider'))}</td>",
              f"<td><code>{_e((m.get('revision') or '')[:12])}</code></td>", f"<td>{_e(m.get('size_gb'))}</td>",
              f"<td>{_e(m.get('status'))}</td>", f"<td>{'yes' if m.get('active') else ''}</td>"] for m in h["models"]]))
    if h["problems"]:
        out.append('<h3>Problems</h3><ul class="problems">' + "".join(f"<li>{_e(p)}</li>" for p in h["problems"]) + "</ul>")
    out.append("</section>")
    return "".join(out)


def render_html(report: dict, title: str = "venom.models fleet report") -> str:
    """The report as one self-contained HTML page: inline CSS and SVG, no script, no external
    resource (works offline); every string that came from a host is escaped."""
    s = report["summary"]
    cards = [("hosts reachable", f"{s['reachable']} / {s['hosts']}", bool(s["unreachable"])),
             ("models installed", f"{s['models_installed']} ({s['distinct_models']} distinct)", False),
             ("installed", f"{s['bytes_installed'] / 1e9:.3f} GB", False),
             ("models with drift", len(s["drift"]), bool(s["drift"])),
             ("failed operations", s["failed_operations"], bool(s["failed_operations"])),
             ("hosts with problems", len(s["hosts_with_problems"]), bool(s["hosts_with_problems"]))]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
             f"<header><h1>{_e(title)}</h1><p>Generated {_e(report.get('generated_at'))}</p></header><main>",
             '<div class="cards">' + "".join(f'<div class="card{" bad" if bad else ""}">{_e(k)}<b>{_e(v)}</b></div>'
                                             for k, v, bad in cards) + "</div>"]
    rows, classes = [], []
    for m in report["models"]:
        for rev, hosts in sorted(m["revisions"].items()):
            rows.append([f"<td>{_e(m['name'])}</td>", f"<td>{_e(m['provider'])}</td>",
                         f'<td class="rev"><code>{_e(rev[:12] if rev != "None" else None)}</code></td>',
                         f"<td>{_e(', '.join(hosts))}</td>", f"<td>{'drift' if m['drift'] else 'same everywhere'}</td>"])
            classes.append("drift" if m["drift"] else "")
    parts.append("<section><h2>Models and revisions</h2>"
                 + (_html_table(["model", "provider", "revision", "hosts", "fleet"], rows, classes) if rows
                    else '<p class="muted">No models installed.</p>') + "</section>")
    failed = [(h["host"], o) for h in report["hosts"] for o in h["failed_operations"]]
    parts.append("<section><h2>Failed operations</h2>"
                 + (_html_table(["host", "type", "model", "finished", "error"],
                                [[f"<td>{_e(host)}</td>", f"<td>{_e(o.get('type'))}</td>", f"<td>{_e(o.get('model'))}</td>",
                                  f"<td>{_e(o.get('finished_at'))}</td>", f"<td>{_e(o.get('error'))}</td>"]
                                 for host, o in failed]) if failed else '<p class="muted">None.</p>') + "</section>")
    parts += [_host_html(h) for h in report["hosts"]]
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
