# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/examples/inventory.yml as ansible-inventory reads it: the groups of a mixed fleet and the
variables venom.models.site needs. (tests/fleet/test_example_inventory.py runs site --check against it.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.lib.ansible_run import ansible_env

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "docs", "examples", "inventory.yml")


def inventory_list(*paths: str) -> dict:
    """``ansible-inventory --list`` of ``paths`` (the real CLI), as a dict; any warning fails."""
    cli = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    argv = [cli, "--list"]
    for p in paths:
        argv += ["-i", p]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120,
                          env=dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="1"))
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_the_example_inventory_describes_a_mixed_fleet():
    inv = inventory_list(EXAMPLE)
    hostvars = inv["_meta"]["hostvars"]
    assert set(inv["all"]["children"]) >= {"venom_mirror", "vllm_gpu", "ollama_cpu"}
    assert inv["vllm_gpu"]["hosts"] == ["gpu-1.llm.internal", "gpu-2.llm.internal"]
    assert inv["ollama_cpu"]["hosts"] == ["cpu-1.llm.internal", "cpu-2.llm.internal"]
    assert inv["venom_mirror"]["hosts"] == ["mirror-1.llm.internal"]
    for host, hv in hostvars.items():
        # every host runs the modules with the virtualenv venom.models.host makes
        assert hv["ansible_python_interpreter"] == "/opt/venom/venv/bin/python", host
        for model in hv.get("venom_models", []):
            assert model["name"], host
        for runtime, spec in hv.get("venom_active_models", {}).items():
            assert runtime in hv["venom_install_runtimes"], (host, runtime)
            active = spec["model"] if isinstance(spec, dict) else spec
            assert active in [m["name"] for m in hv["venom_models"]], (host, active)
    assert hostvars["gpu-1.llm.internal"]["venom_install_runtimes"] == ["vllm"]
    assert hostvars["gpu-2.llm.internal"]["venom_active_models"]["vllm"]["tensor_parallel_size"] == 2
    assert hostvars["cpu-1.llm.internal"]["venom_models"][0]["provider"] == "ollama"
    assert hostvars["mirror-1.llm.internal"]["venom_quota_gb"] == 2000, "group vars win over all's"


def test_site_installs_the_mirror_on_the_example_mirror_host():
    """The example's group names are the ones venom.models.site reads: its Mirror play targets the
    example's mirror host, and only it."""
    cli = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run([cli, "-i", EXAMPLE, "--list-hosts", "venom.models.site"], capture_output=True, text=True,
                          check=False, timeout=120, env=ansible_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plays = {}  # "  play #2 (venom_mirror): Mirror\tTAGS: []", its pattern, "hosts (1):", the hosts
    for block in proc.stdout.split("\n  play #")[1:]:
        lines = block.strip().splitlines()
        name = lines[0].split(": ", 1)[1].split("\t", 1)[0].strip()
        plays[name] = sorted(line.strip() for line in lines[3:] if line.strip())
    assert plays["Mirror"] == ["mirror-1.llm.internal"], plays
    assert "gpu-1.llm.internal" in plays["Hosts"] and len(plays["Hosts"]) == 5, plays
