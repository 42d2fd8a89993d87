# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Documentation shared by the venom.models modules."""
from __future__ import annotations


class ModuleDocFragment:
    """Options and attributes shared by the venom.models modules."""

    DOCUMENTATION = r"""
options:
  models_dir:
    description:
      - The directory that holds the models, the manifest (C(manifest.json)) and the library's
        state (in C(.venom/) - locks, operations journal, staging area for downloads).
      - All venom.models modules on one host must use the same directory to see the same models.
    type: path
    default: /var/lib/venom/models
requirements:
  - python >= 3.11 on the managed host
"""

    LOCKING = r"""
options:
  lock_timeout:
    description:
      - Seconds to wait for another run on the same host that holds the lock of the same model,
        runtime or manifest. On timeout the task fails and names the holder (pid, operation).
      - Locks are released by the kernel when their holder exits, so there are never stale locks.
    type: float
    default: 600
"""

    ACTIONS = r"""
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: full
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    support: full
    description: When run twice in a row with the same arguments, the second run reports no change.
"""

    FACTS = r"""
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return the same facts; it changes nothing but its metrics file, which
      check mode does not write.
  diff_mode:
    support: none
    description: Returns no diff.
  facts:
    support: full
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
  idempotent:
    support: full
    description: Changes nothing but its metrics file, and that only when its content changed.
"""
