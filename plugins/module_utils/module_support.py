# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The thin glue between AnsibleModule and the library (the only module_utils file that knows Ansible)."""
from __future__ import annotations

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError


def fail_from(module, exc: VenomError, **extra) -> None:
    """Fail the task with the library error's message (what happened + how to fix it)."""
    result = {"error": type(exc).__name__}
    if exc.fix:
        result["fix"] = exc.fix
    if exc.details:
        result["details"] = exc.details
    result.update(extra)
    module.fail_json(msg=str(exc), **result)
