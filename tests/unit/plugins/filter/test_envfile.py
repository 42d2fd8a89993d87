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


def test_a_rendered_file_has_header_comments_then_quoted_lines_and_leaves_none_out():
    text = envfile.render({"A": "x y", "B": None, "C": 3}, ["managed by venom", "do not edit"])
    assert text == '# managed by venom\n# do not edit\nA="x y"\nC="3"\n'
    assert envfile.render({}) == "\n"
    assert envfile.render({"A": ""}) == 'A=""\n'


def test_only_a_secret_keys_value_is_hidden_in_the_refusal():
    with pytest.raises(ValidationError, match=r"TOKEN \(hidden\)") as err:
        envfile.render({"TOKEN": "abc\rdef"}, secret_keys=("TOKEN",))
    assert "abc" not in str(err.value)
    with pytest.raises(ValidationError, match=r"PLAIN 'abc\\rdef' cannot go into") as err:
        envfile.render({"PLAIN": "abc\rdef"}, secret_keys=("TOKEN",))
    assert "Give PLAIN without line breaks" in err.value.fix
    with pytest.raises(ValidationError, match="value 'a\\\\x00b'"):
        envfile.quote("a\0b")


def test_the_reader_skips_comments_blank_and_malformed_lines_and_strips_keys():
    text = "# c\n; also a comment\n# X=1\n  ; Y=2\n\n   \nNOEQUALS\n  KEY  =  \"v=w\"  \nE=\nQ='single \"q\"'\n"
    assert envfile.parse(text) == {"KEY": "v=w", "E": "", "Q": 'single "q"'}


def test_a_lone_quote_is_a_value_and_a_trailing_backslash_stays():
    # C="x\" (a lone backslash at the end) and D="a\\" (an escaped backslash) both read as x\ and a\
    assert envfile.parse("A=\"\nB='\nC=\"x\\\"\nD=\"a\\\\\"\n") == {"A": '"', "B": "'", "C": "x\\", "D": "a\\"}
    assert envfile.parse('A="\\$\\`\\"\\\\x"') == {"A": '$`"\\x'}
    assert envfile.parse("A='x\"\nB=\"x'") == {"A": "'x\"", "B": "\"x'"}


def test_empty_quoted_values_are_empty():
    assert envfile.parse("A=''\nB=\"\"\n") == {"A": "", "B": ""}
