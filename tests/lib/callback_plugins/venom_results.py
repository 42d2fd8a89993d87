# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only callback: append every task result as one JSON line to $VENOM_RESULTS_FILE."""
from __future__ import annotations

DOCUMENTATION = r"""
name: venom_results
type: aggregate
short_description: Write task results as JSON lines (tests only)
description:
  - Used by the venom.models test suite to read structured results of ansible-playbook runs.
options: {}
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    """Append each task result to the file named by VENOM_RESULTS_FILE."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "venom_results"
    CALLBACK_NEEDS_ENABLED = False

    def _write(self, result, status):
        path = os.environ.get("VENOM_RESULTS_FILE")
        if not path:
            return
        record = {
            "host": result._host.get_name(),  # pylint: disable=protected-access
            "task": result._task.get_name(),  # pylint: disable=protected-access
            "action": result._task.action,  # pylint: disable=protected-access
            "status": status,
            "result": dict(result._result),  # pylint: disable=protected-access
        }
        # ansible-core 2.19 no longer keeps 'failed' in the result it hands to callbacks
        record["result"].setdefault("failed", status == "failed")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._write(result, "unreachable")
