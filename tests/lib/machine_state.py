# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Machine states for tests of "a fresh machine": a fresh clone of the checkout, and a PATH on
which some commands do not exist (as if their Debian packages were not installed)."""
from __future__ import annotations

import os
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def path_without(workdir: str, hidden: tuple[str, ...], path: str | None = None) -> str:
    """A PATH with the same commands as ``path`` (default: this process's PATH) except ``hidden``:
    one directory of symlinks (first hit wins, as for the shell). Fails if a hidden command would
    still be found, so a test cannot pass by accident."""
    path = os.environ.get("PATH", "") if path is None else path
    bindir = os.path.join(workdir, "bin")
    os.makedirs(bindir, exist_ok=True)
    for d in path.split(os.pathsep):
        if not d or not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            link = os.path.join(bindir, name)
            full = os.path.join(d, name)
            if name in hidden or os.path.lexists(link) or not (os.path.isfile(full) and os.access(full, os.X_OK)):
                continue
            os.symlink(full, link)
    for name in hidden:
        assert shutil.which(name, path=bindir) is None, f"{name} is still on the PATH"
    return bindir


def fresh_clone(dest: str, reuse_venv: bool = True) -> str:
    """A fresh clone of this checkout at ``dest``: the files git would clone (tracked, plus
    untracked but not ignored, so the working tree under test counts), a new git repository, no
    ./demo-state, no build output. ``reuse_venv`` links the checkout's .venv (the controller venv,
    which scripts/venv.sh checks by its requirements stamp) to keep the test fast."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = os.path.join(REPO, rel)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy2(src, out, follow_symlinks=False)
    subprocess.run(["git", "init", "-q", dest], check=True, capture_output=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True, capture_output=True)
    if reuse_venv:
        os.symlink(os.path.join(REPO, ".venv"), os.path.join(dest, ".venv"))
        with open(os.path.join(dest, ".git", "info", "exclude"), "a", encoding="utf-8") as fh:
            fh.write(".venv\n")  # .gitignore's ".venv/" does not match a symlink
    return dest
