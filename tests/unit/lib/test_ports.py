# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/lib/ports.py: the one free-port helper of every tier (ranges, the environment variable
that moves a range, exclude, start, and its one error)."""
from __future__ import annotations

import socket

import pytest

from tests.lib.ports import NoFreePort, free_port, port_is_free, port_range


@pytest.fixture
def busy():
    """A port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_port_is_never_returned_and_the_error_says_what_to_do(busy):  # pylint: disable=redefined-outer-name
    assert not port_is_free(busy)
    with pytest.raises(NoFreePort) as err:
        free_port([busy])
    assert str(err.value) == f"No free port in {busy}-{busy} on 127.0.0.1: stop the leftover servers (ss -ltnp)."


def test_the_kernel_picks_a_free_port_without_a_range():
    port = free_port()
    assert port > 0 and port_is_free(port)


def test_a_range_as_text_exclude_and_start():
    port = free_port()
    assert port_range(f"{port}-{port + 2}") == range(port, port + 3) and port_range(str(port)) == range(port, port + 1)
    assert free_port(str(port)) == port
    with pytest.raises(NoFreePort, match=r"in \(none left\)"):
        free_port([port], exclude=(port,))
    with pytest.raises(NoFreePort, match=r"in \(none left\)"):
        free_port([port], start=port + 1)


def test_the_environment_variable_replaces_the_range_and_is_named_in_the_error(monkeypatch, busy):  # pylint: disable=redefined-outer-name
    port = free_port()
    monkeypatch.setenv("VENOM_TEST_X_PORTS", str(port))
    assert free_port([busy], env="VENOM_TEST_X_PORTS") == port
    monkeypatch.setenv("VENOM_TEST_X_PORTS", f"{busy}-{busy}")
    with pytest.raises(NoFreePort) as err:
        free_port([port], env="VENOM_TEST_X_PORTS")
    assert str(err.value).endswith("(ss -ltnp), or set VENOM_TEST_X_PORTS to another range.")
    monkeypatch.delenv("VENOM_TEST_X_PORTS")
    assert free_port([port], env="VENOM_TEST_X_PORTS") == port
