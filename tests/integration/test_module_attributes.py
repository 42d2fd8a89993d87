# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What ansible-doc says about every module: the attributes operators rely on, and membership of
the action group group/venom.models.all (meta/runtime.yml) for every module the collection ships."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.lib.ansible_run import collections_root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "plugins", "modules")) if f.endswith(".py"))
PARTIAL = {"venom_runtime": "state=restarted", "venom_manifest": "force=true"}


def _docs() -> dict:
    cli = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([cli, "--json", *(f"venom.models.{m}" for m in MODULES)], capture_output=True, text=True,
                          check=False, timeout=300, env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root()))
    assert proc.returncode == 0, proc.stderr
    return {k.rsplit(".", 1)[-1]: v["doc"] for k, v in json.loads(proc.stdout).items()}


def test_every_module_states_its_platform_and_honest_idempotence():
    docs = _docs()
    assert sorted(docs) == MODULES
    for name, doc in docs.items():
        attrs = doc["attributes"]
        assert attrs["platform"]["platforms"] == "posix" and attrs["platform"]["support"] == "full", name
        for option in ("models_dir", "lock_timeout", "quota_gb", "reserve_gb", "validate_certs", "ca_path"):
            assert option in doc["options"], (name, option)
        if name in PARTIAL:
            assert attrs["idempotent"]["support"] == "partial" and PARTIAL[name] in attrs["idempotent"]["details"], name
        else:
            assert attrs["idempotent"]["support"] == "full", name


def test_the_action_group_holds_every_module():
    with open(os.path.join(REPO, "meta", "runtime.yml"), encoding="utf-8") as fh:
        runtime = yaml.safe_load(fh)
    assert sorted(runtime["action_groups"]["all"]) == MODULES
