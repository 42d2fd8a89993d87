# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Files of installed models: digests, checks, the staging area, moving into place, removal.

Shared by the providers that keep model files under ``models_dir`` (huggingface, local).

Staging area of one model version (inside ``models_dir``, so the final move is a rename)::

    <models_dir>/.venom/staging/<model key>/<version>/
        tree/<path>        files downloaded/copied AND verified, in their final layout
        partial/<path>     downloads in progress (resumed from their length on the next run)
        state.json         {path: {size, sha256, git_oid}} of every verified file in tree/

A file enters ``tree/`` only after its digest matched; ``state.json`` is rewritten after each
one, so a run killed at any point loses at most the file being written, and even that resumes
from its partial length. When every file is in ``tree/``, ``tree/`` is renamed to the version
directory in one step and the staging directory is removed.
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import shutil
import threading

from ansible_collections.venom.models.plugins.module_utils.errors import IntegrityError, QuotaError, VenomError
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_json, fsync_dir
from ansible_collections.venom.models.plugins.module_utils.store.ownership import apply as apply_permissions
from ansible_collections.venom.models.plugins.module_utils.store.ownership import apply_path
from ansible_collections.venom.models.plugins.module_utils.models.providers import Problem
from ansible_collections.venom.models.plugins.module_utils.store.validation import ensure_inside, safe_join

CHUNK = 1024 * 1024


# -- digests ---------------------------------------------------------------------------------------

class Hasher:
    """sha256 of the content and, on request, the git blob id (sha1 of ``blob <size>\\0`` + content)."""

    def __init__(self, size: int | None = None, git: bool = False):
        self.sha256 = hashlib.sha256()
        self.git = None
        if git:
            if size is None:
                raise ValueError("the git blob id needs the size up front")
            self.git = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        self.length = 0

    def update(self, data) -> None:
        self.sha256.update(data)
        if self.git is not None:
            self.git.update(data)
        self.length += len(data)

    def feed_file(self, path: str, limit: int | None = None, progress=None) -> None:
        """Hash the first ``limit`` bytes of ``path`` (all of it by default)."""
        left = limit
        with open(path, "rb") as fh:
            while left is None or left > 0:
                data = fh.read(CHUNK if left is None else min(CHUNK, left))
                if not data:
                    break
                self.update(data)
                if left is not None:
                    left -= len(data)
                if progress is not None:
                    progress.add(len(data), transferred=False)

    def digests(self) -> dict:
        out = {"sha256": self.sha256.hexdigest()}
        if self.git is not None:
            out["git_oid"] = self.git.hexdigest()
        return out


def file_digests(path: str, size: int | None = None, git: bool = False, progress=None) -> dict:
    h = Hasher(size if size is not None else os.path.getsize(path), git=git)
    h.feed_file(path, progress=progress)
    return h.digests()


def mismatch(spec, digests: dict, size: int) -> str | None:
    """Why the content described by ``digests``/``size`` is not ``spec`` (a FileSpec), or None."""
    if size != spec.size:
        return f"size {size}, expected {spec.size}"
    if spec.sha256 and digests.get("sha256") and digests["sha256"] != spec.sha256:
        return f"sha256 {digests['sha256']}, expected {spec.sha256}"
    if spec.git_oid and digests.get("git_oid") and digests["git_oid"] != spec.git_oid:
        return f"git blob id {digests['git_oid']}, expected {spec.git_oid}"
    if not spec.sha256 and not spec.git_oid:
        return None
    if spec.sha256 and "sha256" not in digests and spec.git_oid and "git_oid" not in digests:
        return "no digest computed"
    return None


# -- selection -------------------------------------------------------------------------------------

def _norm_patterns(patterns) -> list:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    return [p + "*" if p.endswith("/") else p for p in patterns]


def select_paths(paths, allow_patterns=None, ignore_patterns=None) -> list:
    """The paths kept by the allow/ignore globs, as ``snapshot_download`` selects them.

    ``fnmatch.fnmatchcase`` (case-sensitive; ``*`` also matches ``/``); a pattern ending in ``/``
    matches everything below that folder. No allow patterns: everything is allowed.
    """
    allow, ignore = _norm_patterns(allow_patterns), _norm_patterns(ignore_patterns)
    out = []
    for p in paths:
        if allow and not any(fnmatch.fnmatchcase(p, pat) for pat in allow):
            continue
        if ignore and any(fnmatch.fnmatchcase(p, pat) for pat in ignore):
            continue
        out.append(p)
    return out


def normalized_selection(allow_patterns, ignore_patterns) -> dict:
    """The file selection as recorded in the manifest (sorted, duplicates removed, None if empty)."""
    def norm(v):
        v = sorted(set([v] if isinstance(v, str) else (v or [])))
        return v or None
    return {"allow_patterns": norm(allow_patterns), "ignore_patterns": norm(ignore_patterns)}


# -- checks of installed files ---------------------------------------------------------------------

def stat_problems(local_path: str | None, files: list) -> list:
    """Problems visible with ``stat`` only: the directory or a file missing, a size that differs."""
    if not local_path or not os.path.isdir(local_path):
        return [Problem(path=f["path"], kind="missing") for f in files] or [Problem(path=".", kind="missing")]
    out = []
    for rec in files:
        try:
            st = os.stat(os.path.join(local_path, rec["path"]))
        except OSError:
            out.append(Problem(path=rec["path"], kind="missing"))
            continue
        if st.st_size != rec["size"]:
            out.append(Problem(path=rec["path"], kind="size", expected=rec["size"], actual=st.st_size))
    return out


def hash_problems(local_path: str | None, files: list, progress=None) -> list:
    """Every file re-hashed against its recorded sha256 (offline). Returns the problems."""
    out = []
    for rec in files:
        path = os.path.join(local_path or "/nonexistent", rec["path"])
        try:
            size = os.path.getsize(path)
        except OSError:
            out.append(Problem(path=rec["path"], kind="missing"))
            if progress is not None:
                progress.add(rec["size"], transferred=False)
            continue
        if size != rec["size"]:
            out.append(Problem(path=rec["path"], kind="size", expected=rec["size"], actual=size))
            if progress is not None:
                progress.add(rec["size"], transferred=False)
            continue
        if not rec.get("sha256"):
            out.append(Problem(path=rec["path"], kind="digest", expected="a recorded sha256", actual=None))
            continue
        got = file_digests(path, size, progress=progress)["sha256"]
        if got != rec["sha256"]:
            out.append(Problem(path=rec["path"], kind="digest", expected=rec["sha256"], actual=got))
    return out


# -- staging ---------------------------------------------------------------------------------------

class StagingArea:
    """The staging directory of one model version (see the module docstring)."""

    def __init__(self, root: str):
        self.root = root
        self.tree = os.path.join(root, "tree")
        self.partial = os.path.join(root, "partial")
        self.state_path = os.path.join(root, "state.json")
        self._lock = threading.Lock()
        self._state: dict | None = None

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def ensure(self) -> "StagingArea":
        for d in (self.root, self.tree, self.partial):
            os.makedirs(d, mode=0o750, exist_ok=True)
        return self

    def state(self) -> dict:
        if self._state is None:
            try:
                with open(self.state_path, encoding="utf-8") as fh:
                    data = json.load(fh)
                self._state = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._state = {}
        return self._state

    def verified(self, spec) -> bool:
        """Whether ``spec`` is in tree/ and was verified by an earlier run (stat only)."""
        rec = self.state().get(spec.path)
        if not rec or rec.get("size") != spec.size:
            return False
        if (spec.sha256 and rec.get("sha256") != spec.sha256) or (spec.git_oid and rec.get("git_oid") != spec.git_oid):
            return False
        try:
            return os.path.getsize(self.tree_path(spec.path)) == spec.size
        except OSError:
            return False

    def tree_path(self, rel: str) -> str:
        return safe_join(self.tree, rel)

    def partial_path(self, rel: str) -> str:
        return safe_join(self.partial, rel)

    def partial_size(self, rel: str) -> int:
        try:
            return os.path.getsize(self.partial_path(rel))
        except (OSError, VenomError):
            return 0

    def record(self, spec, digests: dict) -> None:
        with self._lock:
            st = self.state()
            st[spec.path] = dict(size=spec.size, **digests)
            atomic_write_json(self.state_path, st, mode=0o640, durable=False)

    def place(self, src: str, spec, digests: dict, chmod: bool = True, mode: int = 0o644) -> None:
        """Move a verified file into tree/ and record it (``chmod=False`` for hard links: shared inode)."""
        dst = self.tree_path(spec.path)
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        os.replace(src, dst)
        if chmod:
            os.chmod(dst, mode)
        self.record(spec, digests)

    def adopt_tree(self, directory: str) -> None:
        """Take an existing version directory back as tree/ (a run killed after the final rename)."""
        if os.path.isdir(self.tree) and not os.listdir(self.tree):
            os.rmdir(self.tree)
        if os.path.exists(self.tree):
            return
        os.makedirs(self.root, mode=0o750, exist_ok=True)
        os.rename(directory, self.tree)

    def move_to(self, rel: str, final: str, permissions=None) -> None:
        """Move the verified file ``rel`` from tree/ into the installed directory ``final`` (a repair or a
        completed selection), with its ``permissions`` (``ownership.Permissions``) set first."""
        src = self.tree_path(rel)
        if permissions:
            apply_path(src, permissions)
        dst = safe_join(final, rel)
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        os.replace(src, dst)

    def commit(self, final: str, permissions=None) -> None:
        """Rename tree/ to ``final`` (atomic; same filesystem) and remove the staging directory.

        ``permissions`` (``ownership.Permissions``) are given to the tree before the rename, so the
        version never appears with others."""
        parent = os.path.dirname(final)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        for root, dirs, _files in os.walk(self.tree):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        os.chmod(self.tree, 0o755)
        apply_permissions(self.tree, permissions)
        os.rename(self.tree, final)
        fsync_dir(parent)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        prune_empty_parents(os.path.dirname(self.root), stop=os.path.dirname(os.path.dirname(self.root)))


def prune_empty_parents(path: str, stop: str) -> None:
    """Remove ``path`` and its parents while they are empty directories, never ``stop`` or above."""
    stop = os.path.abspath(stop)
    path = os.path.abspath(path)
    while path != stop and path.startswith(stop + os.sep):
        try:
            os.rmdir(path)
        except OSError:
            return
        path = os.path.dirname(path)


def remove_tree_inside(base: str, path: str) -> bool:
    """``rm -rf path`` after proving it lies strictly inside ``base`` (resolving symlinks)."""
    if not path or not os.path.lexists(path):
        return False
    real = ensure_inside(base, path)
    if real == os.path.realpath(base):
        raise VenomError(f"Refusing to remove {path}: it is the models directory itself.",
                         fix="The manifest entry's local_path is wrong; rebuild the manifest with venom_manifest.")
    if os.path.isdir(real) and not os.path.islink(path):
        shutil.rmtree(real)
    else:
        os.unlink(path)
    return True


def disk_full(exc: OSError, where: str) -> QuotaError:
    return QuotaError(f"The disk holding {where} is full ({exc.strerror}). The partial download is kept and "
                      "resumes on the next run.",
                      fix="Free space on that filesystem (or lower reserve_gb only if you know the space suffices), "
                          "then run the task again.")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def integrity_error(name: str, path: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"The file {path} of {name} does not match its published digest after a retry ({why}).",
        fix="The source serves different content than it lists: check the mirror/endpoint (a proxy rewriting "
            "content, a broken mirror sync), then run the task again; nothing was installed.")
