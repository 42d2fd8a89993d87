# SPDX-License-Identifier: GPL-3.0-or-later
"""The systemd ``EnvironmentFile`` format, in one place: written by ``venom_runtime`` (the vLLM
activation) and by the roles (``roles/common/templates/env_file.j2`` through the filter
``venom.models.systemd_env_quote``), read back by ``venom_runtime``.

Values are written double-quoted with ``\\``, ``"``, `````` ` `````` and ``$`` escaped by a backslash, which
is how systemd's parser (``src/basic/env-file.c``) reads them back: inside double quotes a
backslash before one of those four characters stands for the character, before anything else it
stays. Single-quoted values are literal; unquoted values are stripped. A line break, carriage
return or NUL cannot be stored (refused by ``quote``).
"""
from __future__ import annotations

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError

_ESCAPED = '\\"`$'
UNSTORABLE = "\n\r\0"


def quote(value, key: str = "value", secret: bool = False) -> str:
    """``value`` as a double-quoted EnvironmentFile value."""
    text = str(value)
    if any(c in text for c in UNSTORABLE):
        shown = "(hidden)" if secret else repr(text)
        raise ValidationError(f"The value of {key} {shown} cannot go into a systemd environment file "
                              "(it contains a line break or NUL character).",
                              fix=f"Give {key} without line breaks.")
    return '"' + "".join("\\" + c if c in _ESCAPED else c for c in text) + '"'


def render(values: dict, header: list | None = None, secret_keys=()) -> str:
    """A whole file: ``# header`` lines, then ``KEY="value"`` lines (None values left out)."""
    lines = [f"# {line}" for line in header or []]
    lines += [f"{key}={quote(value, key, secret=key in secret_keys)}" for key, value in values.items()
              if value is not None]
    return "\n".join(lines) + "\n"


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        out, i, body = [], 0, raw[1:-1]
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPED:
                out.append(body[i + 1])
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)
    return raw


def parse(text: str) -> dict:
    """The ``KEY=value`` pairs of a file (comments, blank and malformed lines ignored)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        values[key.strip()] = _unquote(value.strip())
    return values
