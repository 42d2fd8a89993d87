# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``make demo`` on a fresh machine: a fresh clone, no git-lfs, and missing Debian packages named.

* The demo's set-up (``scripts/demo.sh setup``: the packages check, the venvs, the olah mirror
  seeded with the real all-MiniLM-L6-v2 with its weights as LFS files) runs from a fresh clone
  with ``git-lfs`` hidden from PATH, and the mirror then serves the real weights byte for byte.
  The controller venv is the checkout's (linked) and the olah/vLLM venvs come from the cache, so
  this takes seconds once the caches exist.
* Without root and without git, the demo stops at once naming the package and the one command
  that installs it (as root it would run apt-get; that path is not exercised here).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import urllib.request

from tests.lib.machine_state import fresh_clone, path_without
from tests.lib.olah_mirror import MINILM, minilm_files, olah_venv
from tests.lib.ports import free_port, port_is_free

OLAH_PORTS = range(18121, 18126)
TIMEOUT = float(os.environ.get("VENOM_DEMO_TIMEOUT", "3600"))  # a cold cache builds the venvs first


def test_demo_setup_from_a_fresh_clone_without_git_lfs(tmp_path):
    clone = fresh_clone(str(tmp_path / "clone"))
    path = path_without(str(tmp_path / "path"), ("git-lfs",))
    port = free_port(OLAH_PORTS)
    env = dict(os.environ, PATH=path, VENOM_DEMO_STATE=str(tmp_path / "state"), VENOM_DEMO_OLAH_PORT=str(port),
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["bash", "scripts/demo.sh", "setup"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    try:
        assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        assert f"the mirror runs at http://127.0.0.1:{port}" in proc.stdout, proc.stdout[-3000:]
        # the weights are an LFS file of the mirror's repository, and olah serves their content
        repo = tmp_path / "state" / "olah" / "mirrors" / "models" / MINILM
        pointer = subprocess.run(["git", "show", "HEAD:model.safetensors"], cwd=repo, capture_output=True,
                                 check=True).stdout
        assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\noid sha256:"), pointer[:200]
        want = minilm_files(olah_venv())["model.safetensors"]
        url = f"http://127.0.0.1:{port}/{MINILM}/resolve/main/model.safetensors"
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (loopback)
            got = resp.read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest() and len(got) > 80_000_000
    finally:
        stop = subprocess.run(["bash", "scripts/demo.sh", "stop"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300, check=False)
    assert stop.returncode == 0, f"rc {stop.returncode}\n{stop.stdout[-3000:]}\n{stop.stderr[-3000:]}"
    assert port_is_free(port)


def test_demo_without_root_names_the_missing_packages_and_the_command():
    # pytest's tmp_path is private to root (0700): a directory a plain user can enter
    top = tempfile.mkdtemp(prefix="venom-fresh-")
    try:
        os.chmod(top, 0o755)
        clone = fresh_clone(os.path.join(top, "clone"), reuse_venv=False)
        path = path_without(os.path.join(top, "path"), ("git", "git-lfs"))
        env = {"PATH": path, "HOME": top, "VENOM_DEMO_STATE": os.path.join(top, "state"), "LANG": "C.UTF-8"}
        argv = ["bash", "scripts/demo.sh"]
        if os.getuid() == 0:  # the non-root path: as nobody
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
            subprocess.run(["chown", "-R", "65534:65534", top], check=True)
        proc = subprocess.run(argv, cwd=clone, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert "missing Debian packages (demo): git" in proc.stderr, proc.stderr[-3000:]
        assert "sudo apt-get install -y git" in proc.stderr, proc.stderr[-3000:]
        assert not os.path.exists(os.path.join(clone, ".venv")), "the demo went on past the missing package"
    finally:
        shutil.rmtree(top, ignore_errors=True)
