# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only facts about one host's models: what venom_model_facts returns, as plain Python."""
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.models.available import available
from ansible_collections.venom.models.plugins.module_utils.models.discovery import discover
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.quota import storage_settings
from ansible_collections.venom.models.plugins.module_utils.runtimes.controller import runtimes_status
from ansible_collections.venom.models.plugins.module_utils.host.usage import usage

SUBSETS = ("models", "capabilities", "usage", "operations", "runtimes", "available", "discovered")
# Everything that asks no other machine: ``runtimes`` only asks this host's own servers (127.0.0.1).
# ``all`` is these too: facts describe this host. ``available`` (a remote lookup, now the module
# venom_model_info) is gathered only when named, and then never fails the facts (see gather()).
DEFAULT_SUBSETS = ("models", "capabilities", "usage", "operations", "runtimes", "discovered")
DEPRECATED_SUBSETS = {"available": "use the module venom.models.venom_model_info (same options, same result)"}


def resolve_subsets(requested: list) -> list:
    """Expand ``all`` and ``!name`` exclusions into the ordered list of subsets to gather."""
    requested = list(requested or DEFAULT_SUBSETS)
    include, exclude = set(), set()
    for item in requested:
        negate = item.startswith("!")
        name = item[1:] if negate else item
        if name != "all" and name not in SUBSETS:
            raise ValidationError(f"Unknown gather_subset {item!r}.",
                                  fix=f"Use 'all' or any of: {', '.join(SUBSETS)} (prefix '!' to exclude).")
        target = exclude if negate else include
        target.update(DEFAULT_SUBSETS if name == "all" else (name,))
    if not include:
        include = set(DEFAULT_SUBSETS)
    return [s for s in SUBSETS if s in include and s not in exclude]


def model_summary(entry: dict, with_capabilities: bool) -> dict:
    """A manifest entry as facts show it: per-file lists replaced by their count."""
    out = {k: v for k, v in entry.items() if k != "files"}
    out["files_count"] = len(entry.get("files") or [])
    if not with_capabilities:
        out.pop("capabilities", None)
    return out


def _remote(subset: str, query: dict, lookup, warn) -> dict:
    """A subset that asks another machine: its answer, or, when that machine cannot be asked
    (down, unreachable, refusing), the same shape with ``error`` and ``fix`` and a warning."""
    try:
        return lookup()
    except ValidationError:
        raise  # a wrong option is the task's fault, not the remote's
    except (VenomError, OSError) as exc:
        msg, fix = getattr(exc, "msg", str(exc)), getattr(exc, "fix", None)
        warn(f"The {subset} subset could not be gathered (the other subsets were): {exc}")
        return {"provider": query.get("provider"), "endpoint": query.get("endpoint"), "count": 0, "models": [],
                "error": msg, "fix": fix}


def operation(models_dir: str, op_id: str) -> dict:
    """One operation of the journal by its id (the original system's ``GET /operations/{id}``)."""
    return Journal(models_dir).get(op_id)


def gather(models_dir: str, subsets: list, quota_gb: float | None = None, operations_limit: int = 20,
           name: str | None = None, discovery_paths: list | None = None, runner=None,
           available_query: dict | None = None, api_key: str | None = None, warn=None,
           operation_id: str | None = None) -> dict:
    """Facts for the requested subsets, keyed as the module returns them under ansible_facts.

    ``runner(argv) -> (rc, out, err)`` runs systemctl for the runtimes subset (without it, runtimes
    are looked at as local processes only). ``available_query`` holds the keyword arguments of
    ``_available.available`` (provider, endpoint, token, search, names, revision, limit).
    ``warn(message)`` receives what the caller should show as warnings: a ``models_dir`` that does
    not exist, a remote that could not be asked (deprecations, DEPRECATED_SUBSETS, are the
    caller's). ``operation_id`` makes the operations subset that one operation (an unknown id
    fails with NotFoundError).
    """
    warn = warn or (lambda _message: None)
    subsets = resolve_subsets(subsets)
    if not os.path.isdir(models_dir):
        warn(f"models_dir {models_dir} does not exist on this host, so no model is installed there. If the "
             "models live elsewhere, set models_dir (or module_defaults for group/venom.models.all).")
    facts: dict = {}
    models = None
    if {"models", "capabilities", "usage", "discovered", "available"} & set(subsets):
        models = Manifest(models_dir).models()
    if "models" in subsets or "capabilities" in subsets:
        chosen = [m for m in models if name is None or m["name"] == name]
        facts["venom_models"] = [model_summary(m, "capabilities" in subsets) for m in chosen]
    if "usage" in subsets:
        # the quota the installs obey: as given, else as venom_model recorded it with the manifest
        quota = storage_settings(Manifest(models_dir).settings(), quota_gb=quota_gb)["quota_gb"]
        facts["venom_usage"] = usage(models, quota, models_dir)
    if "operations" in subsets and operation_id:
        facts["venom_operations"] = [operation(models_dir, operation_id)]
    elif "operations" in subsets:
        journal = Journal(models_dir)
        recent = journal.list(limit=operations_limit, model=name)
        running = [r for r in journal.list(status="in_progress", model=name) if r["id"] not in {x["id"] for x in recent}]
        facts["venom_operations"] = sorted(recent + running, key=lambda r: r["started_at"], reverse=True)
    if "runtimes" in subsets:
        facts["venom_runtimes"] = runtimes_status(models_dir, runner=runner, api_key=api_key)
    if "available" in subsets:
        query = dict(available_query or {})
        query.setdefault("provider", "huggingface")
        facts["venom_available"] = _remote("available", query,
                                           lambda: available(models_dir=models_dir, models=models, **query), warn)
    if "discovered" in subsets:
        facts["venom_discovered"] = discover(models_dir, models, extra_paths=discovery_paths)
    facts["venom_gathered_subsets"] = subsets
    return facts
