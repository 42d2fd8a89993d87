# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_report
short_description: Build the fleet report from the venom_model_facts of many hosts
version_added: 0.1.0
author:
  - venom.models developers (@venom-models)
description:
  - Takes a mapping of host name to the C(ansible_facts) that M(venom.models.venom_model_facts)
    returned on that host (an empty mapping or null for a host that gave none, because it was
    unreachable or failed) and returns the fleet report, as data, as Markdown or as an HTML page.
  - Per host - its models (name, provider, revision, size, status, active), model disk against the
    quota, free disk, memory, GPUs and VRAM, the runtimes with their active model and health, failed
    and running operations, and the problems worth a look (unhealthy runtime, disk over 90% of the
    quota, a model not installed, failed operations).
  - For the fleet - totals, every model with the revisions it has and on which hosts (C(drift) when
    hosts disagree), the unreachable hosts and the hosts with problems.
  - The playbook C(venom.models.report) gathers the facts and writes both forms on the controller.
    The same functions are plain Python in C(plugins/plugin_utils/report.py).
positional: format
options:
  _input:
    description:
      - Host name to the facts of M(venom.models.venom_model_facts) on that host.
    type: dict
    required: true
  format:
    description:
      - V(data) returns the report as a mapping (write it with C(to_nice_json)); V(markdown) returns
        the Markdown text; V(html) one self-contained HTML page (inline CSS and SVG bars for disk
        against quota and VRAM per GPU, the models and revisions with drift highlighted, runtimes
        with their health, failed operations; no JavaScript, no external resource, every string
        from a host escaped). V(markdown) and V(html) also take a report that V(data) built.
    type: str
    choices: [data, markdown, html]
    default: data
  title:
    description:
      - The title of the Markdown or HTML report.
    type: str
    default: venom.models fleet report
  previous:
    description:
      - The previous report (for example the JSON file written last time). When the new report says
        the same apart from the time it was generated and the figures of the moment (CPU, memory,
        free disk, GPU utilisation and VRAM use), the previous report is returned unchanged, so
        files written from it do not change.
      - A mapping, or its JSON text; text that is not a report (damaged, or of another version) is ignored.
    type: raw
seealso:
  - module: venom.models.venom_model_facts
"""

EXAMPLES = r"""
- name: Gather on every host
  venom.models.venom_model_facts:
  register: venom_facts_result

- name: Write the report on the controller
  run_once: true
  delegate_to: localhost
  vars:
    facts_by_host: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars)
                       | map(attribute='venom_facts_result', default={}) | map(attribute='ansible_facts', default={}))) }}"
    report: "{{ facts_by_host | venom.models.fleet_report }}"
  ansible.builtin.copy:
    content: "{{ report | venom.models.fleet_report('markdown') }}"
    dest: ./fleet-report.md
    mode: "0644"
"""

RETURN = r"""
_value:
  description:
    - The report, with C(schema), C(generated_at), C(summary) (hosts, reachable, unreachable,
      models_installed, distinct_models, bytes_installed, failed_operations, hosts_with_problems,
      drift), C(models) (name, provider, revisions mapping revision to hosts, hosts, drift) and
      C(hosts) (host, reachable, models, usage, gpus, runtimes, active_models, failed_operations,
      running_operations, problems); or its Markdown text, or its HTML page.
  type: raw
"""

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import plain_data
from ansible_collections.venom.models.plugins.plugin_utils.report import SCHEMA, build_report, render_html, render_markdown

_RENDER = {"markdown": render_markdown, "html": render_html}


def fleet_report(hosts, format="data", title="venom.models fleet report", previous=None):  # pylint: disable=redefined-builtin
    """The fleet report of ``{host: facts}`` as data, Markdown or HTML."""
    if format not in ("data", "markdown", "html"):
        raise AnsibleFilterError(f"venom.models.fleet_report: format must be 'data', 'markdown' or 'html', not {format!r}.")
    data = plain_data(hosts)
    if not isinstance(data, dict):
        raise AnsibleFilterError("venom.models.fleet_report: the input must map host names to the facts of "
                                 f"venom.models.venom_model_facts, not a {type(data).__name__}.")
    previous = plain_data(previous) if previous else None
    if isinstance(previous, str):
        try:
            previous = json.loads(previous)
        except ValueError:
            previous = None
    report = data if data.get("schema") == SCHEMA else build_report(data, previous=previous)
    return _RENDER[format](report, title=title) if format in _RENDER else report


class FilterModule:
    """venom.models fleet report."""

    def filters(self):
        return {"fleet_report": fleet_report}
