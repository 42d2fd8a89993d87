# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-session policy shared by every pytest tier.

A tier that cannot run must say so loudly. Under CI (``CI`` set to a true value) or with
``VENOM_NO_SKIP=1`` any skipped test fails the session: in CI every tier runs.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile

_TRUE = {"1", "true", "yes", "on"}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make_collection_importable() -> None:
    """Let ``import ansible_collections.venom.models...`` work when pytest runs from the checkout.

    ansible-test runs from an ``ansible_collections/venom/models`` tree where this is already true;
    otherwise a symlink tree in the temp dir points at the checkout.
    """
    if os.path.basename(os.path.dirname(os.path.dirname(_REPO))) == "ansible_collections":
        root = os.path.dirname(os.path.dirname(os.path.dirname(_REPO)))
    else:
        root = os.path.join(tempfile.gettempdir(), f"venom-pytest-{os.getuid()}-{hashlib.sha256(_REPO.encode()).hexdigest()[:10]}")
        link = os.path.join(root, "ansible_collections", "venom", "models")
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.realpath(link) != _REPO:
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(_REPO, link)
    if root not in sys.path:
        sys.path.insert(0, root)
    if _REPO not in sys.path:
        sys.path.insert(0, _REPO)


_make_collection_importable()


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


# Tests that run ansible-core (modules, filters, playbooks) are repeated on the newest ansible-core
# release (scripts/test.sh integration-newest: pytest -m ansible); the rest (servers, vLLM, the
# demo) do not depend on its version. A test module runs ansible-core when it uses
# tests/lib/ansible_run.py, so it is marked without a list to keep up to date.
ANSIBLE_RUNNER = "tests.lib.ansible_run"


def pytest_configure(config):
    config.addinivalue_line("markers", "ansible: runs ansible-core (set for every test module that uses "
                                       f"{ANSIBLE_RUNNER}); repeated on the newest ansible-core")


def _runs_ansible(module) -> bool:
    return any(getattr(value, "__module__", None) == ANSIBLE_RUNNER for value in vars(module).values())


def pytest_collection_modifyitems(items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and _runs_ansible(module):
            item.add_marker("ansible")
