# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_env_quote
short_description: Quote a value for a systemd EnvironmentFile
version_added: 0.1.0
author:
  - venom.models developers (@venom-models)
description:
  - Returns the value double-quoted with C(\\), C("), C(`) and C($) escaped by a backslash, the
    way systemd reads EnvironmentFile values back.
  - The one owner of the format shared by the roles' environment files and
    M(venom.models.venom_runtime), which writes and reads the vLLM activation in the same format
    (C(plugins/module_utils/runtimes/envfile.py)).
  - A value with a line break or NUL character cannot be stored and fails the filter.
options:
  _input:
    description: The value (converted to a string).
    type: raw
    required: true
seealso:
  - module: venom.models.venom_runtime
"""

EXAMPLES = r"""
- name: Write an environment file
  ansible.builtin.copy:
    content: "API_KEY={{ api_key | venom.models.systemd_env_quote }}\n"
    dest: /etc/example.env
    mode: "0600"
"""

RETURN = r"""
_value:
  description: The quoted value, with its double quotes.
  type: str
  sample: '"pa\$\$word"'
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.runtimes.envfile import quote


def systemd_env_quote(value):
    """``value`` as a double-quoted systemd EnvironmentFile value."""
    try:
        return quote(value, secret=True)  # the environment files are secret: never show a value
    except VenomError as exc:
        raise AnsibleFilterError(f"venom.models.systemd_env_quote: {exc.msg} {exc.fix or ''}".strip()) from None


class FilterModule:
    """systemd EnvironmentFile quoting."""

    def filters(self):
        return {"systemd_env_quote": systemd_env_quote}
