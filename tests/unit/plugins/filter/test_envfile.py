# SPDX-License-Identifier: GPL-3.0-or-later
"""The systemd EnvironmentFile format shared by venom_runtime and the roles: what is written is
read back unchanged, as systemd reads it (the template side is in tests/integration/test_env_file_format.py)."""
from __future__ import annotations

import pytest

from ansible_collections.venom.models.plugins.filter.systemd_env_quote import systemd_env_quote
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.runtimes import envfile

ODD = ['plain', 'two words', 'a"quote', "back\\slash", "dollar $HOME ${X}", "tick `id`", "single 'q'",
       "trailing\\", '\\"', "=eq=", "#not-a-comment", ""]


def test_round_trip_of_every_special_character():
    values = {f"K{i}": v for i, v in enumerate(ODD)}
    assert envfile.parse(envfile.render(values, ["header"])) == values


def test_quoting_is_systemds():
    assert envfile.quote('a"b\\c`d$e') == '"a\\"b\\\\c\\`d\\$e"'
    # systemd keeps a backslash before other characters inside double quotes
    assert envfile.parse('A="x\\ny\\q"\nB=\'lit\\$\'\nC= bare \n') == {"A": "x\\ny\\q", "B": "lit\\$", "C": "bare"}


def test_line_breaks_are_refused_and_secrets_not_shown():
    with pytest.raises(ValidationError, match=r"KEY \(hidden\) cannot go into"):
        envfile.quote("s3cret\nx", "KEY", secret=True)
    with pytest.raises(Exception, match="line break") as err:
        systemd_env_quote("s3cret\0")
    assert "s3cret" not in str(err.value)
    assert systemd_env_quote("$x") == '"\\$x"'
