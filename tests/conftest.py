# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-session policy shared by every pytest tier.

A tier that cannot run must say so loudly. Under CI (``CI`` set to a true value) or with
``VENOM_NO_SKIP=1`` any skipped test fails the session: in CI every tier runs.
"""
from __future__ import annotations

import os

_TRUE = {"1", "true", "yes", "on"}


def _strict() -> bool:
    return (os.environ.get("CI", "").lower() in _TRUE
            or os.environ.get("VENOM_NO_SKIP", "").lower() in _TRUE)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # pylint: disable=unused-argument
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.write_sep("!", f"{len(skipped)} TEST(S) SKIPPED: this tier did NOT fully run", red=True, bold=True)
    for rep in skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        terminalreporter.write_line(f"SKIPPED {rep.nodeid}: {reason}", red=True)
    if _strict():
        terminalreporter.write_line("CI/VENOM_NO_SKIP is set: a skip is a failure.", red=True, bold=True)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not _strict():
        return
    if reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1
