# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Debian tools some tests run (installed by scripts/setup-system.sh): a missing one fails the
test and names its package, never skips it."""
from __future__ import annotations

import os
import shutil

import pytest


def require(program: str, package: str) -> str:
    """The path of ``program`` (PATH, then /usr/sbin and /usr/bin); fails naming ``package``."""
    exe = shutil.which(program) or next((p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}")
                                         if os.access(p, os.X_OK)), None)
    if not exe:
        pytest.fail(f"{program} is missing: install the Debian package {package} (scripts/setup-system.sh)",
                    pytrace=False)
    return exe


def promtool() -> str:
    return require("promtool", "prometheus")
