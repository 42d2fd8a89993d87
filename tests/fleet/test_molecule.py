# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The molecule scenarios of extensions/molecule, each a full `molecule test` on the fleet.

`default`: both roles on three real systemd hosts - check mode on fresh hosts, converge,
idempotence, the upgrade path (each service restarts exactly once), verify (hardening as
systemctl reports it, ports on 127.0.0.1, owners and modes, a real vLLM answering
/v1/embeddings, restarts after kill -9; then venom_runtime in mode systemd driving the vLLM unit:
activation of a model adopted by venom_model, idempotence, a broken model rolled back, the
runtime facts, a stop that empties the unit's cgroup; two instances of vllm@.service from
vllm_instances, one started by the role and one activated by venom.models.activate while the other
keeps running, then one removed by venom.models.site while the other serves on, and site run again
with no change). It runs from a collection tree built from the checkout,
so it tests what a user installs. The whole output goes to tests/output/molecule-<scenario>.log.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import pytest
import yaml

from tests.lib.ansible_run import collections_root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS_DIR = os.path.join(REPO, "extensions", "molecule")
SCENARIOS = sorted(d for d in os.listdir(SCENARIOS_DIR) if os.path.isfile(os.path.join(SCENARIOS_DIR, d, "molecule.yml")))
DOUBLE = os.path.join(REPO, "tests", "doubles", "ollama", "ollama_test_double.py")


def test_scenarios_exist():
    assert "default" in SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    if not (os.environ.get("VENOM_OLLAMA_DOUBLE") or os.path.isfile(DOUBLE)):
        pytest.fail(f"the Ollama test double is missing ({DOUBLE}); the scenario runs it on the hosts")
    if os.geteuid() != 0:
        pytest.fail("molecule's fleet needs root (systemd-nspawn, mounts): run the fleet tier as root, as CI does")
    root = collections_root()
    project = os.path.join(root, "ansible_collections", "venom", "models")
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_COLLECTIONS_PATH=root,
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", PY_COLORS="0")
    os.makedirs(os.path.join(REPO, "tests", "output"), exist_ok=True)
    log_path = os.path.join(REPO, "tests", "output", f"molecule-{scenario}.log")
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run([os.path.join(bindir, "molecule"), "test", "-s", scenario], cwd=project, env=env,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=3600, check=False)
    took = time.monotonic() - start
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    print(f"molecule test -s {scenario}: rc {proc.returncode} in {took:.0f}s; log {log_path}")
    assert proc.returncode == 0, f"molecule test -s {scenario} failed (rc {proc.returncode}); the end of {log_path}:\n{text[-8000:]}"
    with open(os.path.join(SCENARIOS_DIR, scenario, "molecule.yml"), encoding="utf-8") as fh:
        sequence = yaml.safe_load(fh)["scenario"]["test_sequence"]
    for step in sequence:
        assert f"{step}: Executed: Successful" in text, f"step {step} did not run successfully"
    # the scenario's secrets never reach the output
    for group_vars in glob.glob(os.path.join(SCENARIOS_DIR, scenario, "inventory", "group_vars", "*.yml")):
        with open(group_vars, encoding="utf-8") as fh:
            for name, value in (yaml.safe_load(fh) or {}).items():
                if name.endswith(("_api_key", "_token", "_password")) and value:
                    assert value not in text, f"{name} appears in the molecule output"
