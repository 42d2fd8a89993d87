# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The community.docker-style idempotence check: check mode, real, check mode, real, in one play."""
from __future__ import annotations

from tests.lib.ansible_run import run_playbook


def check_real_cycle(module: str, args: dict, expect: list) -> dict:
    """Run ``module`` with ``args`` four times (check, real, check, real) with --diff in one play.

    Asserts that no run failed, the ``changed`` values equal ``expect`` and check mode predicted
    the real run's ``action`` (modules that return one). Returns the last result.
    """
    tasks = [{"name": f"step{i}", module: args, "check_mode": check, "diff": True}
             for i, check in enumerate((True, False, True, False))]
    res = run_playbook([{"name": "cycle", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    outs = [res.task(f"step{i}") for i in range(4)]
    for out in outs:
        assert not out["failed"], out.get("msg")
    assert [o["changed"] for o in outs] == expect, [o["changed"] for o in outs]
    assert outs[0].get("action") == outs[1].get("action"), "check mode predicts the real action"
    return outs[-1]
