# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model's owner/group/mode/directory_mode through ansible-playbook, against the olah mirror:
idempotent (check, real, check, real), a mode change is a change with a diff, drift is corrected,
and a member of the group reads the weights while other users cannot (the system group
``daemon`` stands in for the vllm role's group; the tests run as root)."""
from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import tempfile

from tests.lib.ansible_run import run_playbook
from tests.lib.idempotence import check_real_cycle

MODULE = "venom.models.venom_model"
GROUP = "daemon"  # an existing system group (and user) - no group is created


def _stats(path: str) -> dict:
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            out[os.path.relpath(full, path)] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    st = os.lstat(path)
    out["."] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def _can_read(user: str, path: str) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "head", "-c", "1", path], capture_output=True,
                          check=False).returncode == 0


def test_owner_group_mode_are_applied_kept_and_corrected(olah):
    assert os.geteuid() == 0, "this test changes file ownership: run the integration tier as root"
    base = tempfile.mkdtemp(prefix="venom-perms-")
    os.chmod(base, 0o755)  # other users may traverse to models_dir (pytest's tmp_path is 0700)
    try:
        _cycle(olah, os.path.join(base, "models"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cycle(olah, models_dir):
    repo = olah.repos["venom-test/tiny-gemma"]
    args = {"name": repo.name, "endpoint": olah.endpoint, "models_dir": models_dir,
            "owner": "root", "group": GROUP, "mode": "0640"}
    last = check_real_cycle(MODULE, args, [True, True, False, False])
    path = last["local_path"]
    gid = grp.getgrnam(GROUP).gr_gid
    seen = _stats(path)
    assert seen and all(v == ((0o750 if os.path.isdir(os.path.join(path, k)) else 0o640), 0, gid)
                        for k, v in seen.items()), seen
    assert last["model"]["permissions"] == {"owner": "root", "group": GROUP, "mode": "0640", "directory_mode": "0750"}
    weights = os.path.join(path, "model.safetensors")
    assert _can_read(GROUP, weights), "a member of the group (the runtime's user) reads the weights"
    assert not _can_read("nobody", weights), "other users do not"

    # only the mode changes: check mode predicts it with a diff and changes nothing; the real run does it
    new = dict(args, mode="0600", directory_mode="0700")
    plays = [{"name": "mode", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "check", MODULE: new, "check_mode": True, "diff": True},
        {"name": "real", MODULE: new, "diff": True},
        {"name": "again", MODULE: new},
        {"name": "omitted", MODULE: {k: v for k, v in args.items() if k not in ("owner", "group", "mode")}},
    ]}]
    res = run_playbook(plays)
    assert res.rc == 0, res.stdout[-4000:]
    check, real = res.task("check"), res.task("real")
    assert check["changed"] is True and check["action"] == "permissions", check
    assert check["diff"]["before"]["permissions"]["mode"] == "0640"
    assert check["diff"]["after"]["permissions"]["mode"] == "0600"
    assert real["changed"] is True and real["action"] == "permissions"
    assert res.task("again")["changed"] is False
    assert res.task("omitted")["changed"] is False, "a task without them keeps the recorded ones"
    assert {v[0] for k, v in _stats(path).items() if not os.path.isdir(os.path.join(path, k))} == {0o600}

    # drift by hand is found by the next plain state: present and corrected
    os.chmod(weights, 0o644)
    os.chown(weights, 0, 0)
    fixed = run_playbook([{"name": "fix", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "fix", MODULE: {"name": repo.name, "endpoint": olah.endpoint, "models_dir": models_dir}}]}])
    out = fixed.task("fix")
    assert out["changed"] is True and out["action"] == "permissions", out
    assert out["plan"]["permission_changes"] == [
        {"path": "model.safetensors", "group": [0, gid], "mode": ["0644", "0600"]}], out["plan"]
    assert _stats(path)["model.safetensors"] == (0o600, 0, gid)


def test_site_passes_the_group_and_mode_to_hugging_face_models(olah, tmp_path):
    """venom.models.site: venom_models_group, and with it mode 0640."""
    assert os.geteuid() == 0, "this test changes file ownership: run the integration tier as root"
    models_dir = str(tmp_path / "models")
    repo = olah.repos["venom-test/tiny-gemma"]
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"node": {
        "ansible_connection": "local", "venom_become": False, "venom_host_bootstrap": False,
        "venom_models_dir": models_dir, "venom_hf_endpoint": olah.endpoint, "venom_models_group": GROUP,
        "venom_models": [{"name": repo.name}]}}}}))
    res = run_playbook([{"import_playbook": "venom.models.site"}], inventory=str(inventory))
    assert res.rc == 0, res.stdout[-6000:] + res.stderr[-3000:]
    installed = res.task("Install, verify or update the other models", host="node")["results"][0]
    assert installed["model"]["permissions"] == {"group": GROUP, "mode": "0640", "directory_mode": "0750"}
    st = os.lstat(os.path.join(installed["local_path"], "model.safetensors"))
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, grp.getgrnam(GROUP).gr_gid)
