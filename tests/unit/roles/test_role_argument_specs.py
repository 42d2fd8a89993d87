# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each role's meta/argument_specs.yml documents exactly the variables of its defaults/main.yml:
same names, every public name prefixed with the role's name, literal defaults equal, types that
fit the defaults."""
from __future__ import annotations

import os

import pytest
import yaml

ROLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "roles")
INTERNAL_ROLES = {"common"}  # shared tasks of the other roles (ansible-lint's role-name rule forbids "_common")
PUBLIC_ROLES = sorted(r for r in os.listdir(ROLES_DIR) if r not in INTERNAL_ROLES)
TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict, "path": str, "raw": object}


def _load(role: str, *parts: str):
    with open(os.path.join(ROLES_DIR, role, *parts), encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def _templated(value) -> bool:
    return isinstance(value, str) and "{{" in value


def test_there_are_public_roles():
    assert {"ollama", "vllm"} <= set(PUBLIC_ROLES)


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_argument_specs_match_defaults(role):
    defaults = _load(role, "defaults", "main.yml")
    options = _load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), (
        f"{role}: only in defaults {sorted(set(defaults) - set(options))}, "
        f"only in argument_specs {sorted(set(options) - set(defaults))}")
    for name, spec in options.items():
        assert name.startswith(f"{role}_"), f"{role}: variable {name} is not prefixed with the role's name"
        assert spec.get("description"), f"{role}: {name} has no description"
        value = defaults[name]
        if _templated(value):
            # computed defaults are described in prose; a literal default there would be wrong
            assert "default" not in spec, f"{role}: {name} has a computed default; describe it instead"
            continue
        assert "default" in spec, f"{role}: {name} documents no default"
        assert spec["default"] == value, f"{role}: {name} default {spec['default']!r} != defaults/main.yml {value!r}"
        expected = TYPES[spec.get("type", "str")]
        assert isinstance(value, expected) and not (expected is int and isinstance(value, bool)), \
            f"{role}: {name} default {value!r} is not of type {spec.get('type', 'str')}"
        if "choices" in spec:
            assert value in spec["choices"]
        if spec.get("type") == "list":
            assert "elements" in spec, f"{role}: list {name} names no element type"


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_secrets_are_no_log(role):
    options = _load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, spec in options.items():
        if any(word in name for word in ("key", "token", "password", "secret")):
            assert spec.get("no_log") is True, f"{role}: {name} looks secret but is not no_log"


def test_internal_role_has_no_public_variables():
    assert not _load("common", "defaults", "main.yml")
    assert _load("common", "meta", "argument_specs.yml")["argument_specs"]["main"]["options"] == {}
