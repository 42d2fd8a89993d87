# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The states of the manifest a task can ask for (``venom_manifest``): ``valid`` checks it,
``rebuilt`` rebuilds it from the per-model records and the files on disk when that is needed.

``ensure_manifest`` decides, acts (unless in check mode) and returns the task's result: what
changed, the diff, and the warnings to show.
"""
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest

STATES = ("valid", "rebuilt")


def ensure_manifest(manifest: Manifest, state: str = "valid", force: bool = False, check_mode: bool = False) -> dict:
    """The result of bringing ``manifest`` to ``state``.

    Always: ``changed``, ``valid`` (before any rebuild), ``problem``/``problem_entry`` when invalid,
    ``warnings`` (a list). With ``state=valid`` an invalid manifest is the caller's failure (the
    result has no ``models_count`` then). A rebuild is needed when the manifest is invalid, when it
    is missing while records of models exist, or with ``force``; it adds ``restored``,
    ``damaged``, ``skipped``, ``lost``, ``unclaimed``, ``models_count``, ``diff`` and, unless in
    check mode, ``moved_aside``.
    """
    status = manifest.check()
    result = {"changed": False, "valid": status["valid"], "warnings": []}
    if not status["valid"]:
        result["problem"] = status["error"]
        if status["entry"] is not None:
            result["problem_entry"] = status["entry"]
    if state == "valid":
        if status["valid"]:
            result["models_count"] = status["models"]
        return result
    plan = manifest.plan_rebuild()
    missing_with_records = not os.path.exists(manifest.path) and (plan["restored"] or plan["damaged"])
    if status["valid"] and not force and not missing_with_records:
        result["models_count"] = status["models"]
        return result
    if not check_mode:
        plan = manifest.rebuild()
        result["moved_aside"] = plan["moved_aside"]
    result.update(
        changed=True,
        restored=[e["name"] for e in plan["restored"]],
        damaged=[e["name"] for e in plan["damaged"]],
        skipped=plan["skipped"],
        lost=plan["lost"],
        unclaimed=plan["unclaimed"],
        models_count=len(plan["restored"]) + len(plan["damaged"]),
    )
    for item in plan["lost"]:
        result["warnings"].append(f"The rebuilt manifest does not list {item['provider']} model {item['name']}: "
                                  f"{item['reason']}.")
    for item in plan["unclaimed"]:
        result["warnings"].append(f"{item['path']} holds model files no manifest entry claims; see 'unclaimed' and "
                                  "venom_model_facts (gather_subset: discovered) to adopt or remove them.")
    result["diff"] = {"before": {"valid": status["valid"], "models": status["models"]},
                      "after": {"valid": True, "models": sorted(result["restored"] + result["damaged"])}}
    return result
