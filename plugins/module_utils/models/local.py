# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The local provider: adopt a model directory that is already on the host (air-gapped installs).

The source directory (``source``, e.g. a copy brought on a disk, a ``snapshot_download`` local
dir, or a Hub cache snapshot whose files are symlinks into ``blobs/``) is hashed file by file;
the version id is the sha256 over the file list (``files_digest``). The files are copied (or
hard-linked when ``adopt_mode`` allows and the source is on the same filesystem) into
``<models_dir>/local/<name>/<id12>/`` through the staging area, each one verified against the
digest computed from the source, then renamed into place in one step.

Hidden metadata directories (``.git``, ``.cache``, ``.venom``) are not adopted. Symbolic links to
files are followed (their content is adopted) only when they resolve inside the source (for a Hub
cache snapshot ``.../models--org--name/snapshots/<commit>``: inside ``models--org--name``, where
its ``blobs/`` are); a link that leads anywhere else is refused, naming it. Links to directories
are not followed. A copy is never more readable than its source file (mode ``0644 & source``); a
hard link shares the source's inode and so its mode.

``state: latest`` re-reads the source: when a file's size or modification time changed, the
source is hashed again and a changed content is adopted as a new version.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile

from ansible_collections.venom.models.plugins.module_utils.capabilities.deferred import (
    detect_gguf_capabilities, detect_hf_capabilities)
from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ProviderError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.models.filetree import FileTreeProvider
from ansible_collections.venom.models.plugins.module_utils.models.staging import (
    CHUNK, Hasher, StagingArea, disk_full, file_digests, integrity_error, is_disk_full, mismatch, select_paths)
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec, Target, files_digest
from ansible_collections.venom.models.plugins.module_utils.store.validation import validate_choice, validate_relative_file_path

ADOPT_MODES = ("auto", "copy", "hardlink")
SKIP_DIRS = (".git", ".cache", ".venom", "__pycache__")


class LocalProvider(FileTreeProvider):
    """Provider ``local``: see the module docstring."""

    name = "local"
    prefix = "local"

    def version_key(self, version: str) -> str:
        return version[:12]  # a content digest: 12 hex characters name the directory

    def __init__(self, request, paths):
        super().__init__(request, paths)
        validate_choice(request.adopt_mode, ADOPT_MODES, "adopt_mode")
        self.source = self._check_source(request.source) if request.source else None

    def _check_source(self, source: str) -> str:
        if not isinstance(source, str) or not os.path.isabs(source):
            raise ValidationError(f"source {source!r} is not an absolute path.",
                                  fix="Give the absolute path of the model directory on the target host.")
        real = os.path.realpath(source)
        if not os.path.isdir(real):
            raise NotFoundError(f"The source directory {source} does not exist on the host (or is not a directory).",
                                fix="Copy the model directory to the host first (e.g. ansible.posix.synchronize), "
                                    "then point source at it.")
        managed = [os.path.realpath(self.paths.state_dir), os.path.realpath(os.path.join(self.paths.models_dir, "local"))]
        for m in managed:
            if real == m or real.startswith(m + os.sep):
                raise ValidationError(f"The source {source} lies inside the directories venom.models manages ({m}).",
                                      fix="Adopt from a directory outside models_dir/local and models_dir/.venom.")
        return real

    # -- offline checks ------------------------------------------------------------------------------
    def satisfies(self, entry: dict) -> bool:
        if entry.get("status") != "installed":
            return False
        recorded_source = (entry.get("source") or {}).get("path")
        if self.source is not None and self.source != recorded_source:
            return False
        return self.same_selection(entry)

    # -- the source ----------------------------------------------------------------------------------
    def _source_for(self, entry: dict | None) -> str:
        if self.source:
            return self.source
        recorded = (entry or {}).get("source", {}).get("path") if entry else None
        if recorded:
            return self._check_source(recorded)
        raise ValidationError(f"provider local needs source (the model directory on the host) to install {self.model_id}.",
                              fix="Set source to the absolute path of the directory to adopt.")

    def scan(self, source: str) -> dict:
        """path -> (size, mtime_ns) of the regular files under ``source`` (symlinks to files followed)."""
        found = {}
        for root, dirs, names in os.walk(source):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(root, d)))
            for name in names:
                full = os.path.join(root, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue  # a dangling link
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel = validate_relative_file_path(os.path.relpath(full, source))
                found[rel] = (st.st_size, st.st_mtime_ns)
        return found

    @staticmethod
    def link_root(source: str) -> str:
        """Where the links of ``source`` may lead: the source itself, or a Hub cache snapshot's repository."""
        parent = os.path.dirname(source)
        if os.path.basename(parent) == "snapshots" and os.path.basename(os.path.dirname(parent)).startswith("models--"):
            return os.path.dirname(parent)
        return source

    def source_file(self, source: str, rel: str) -> str:
        """The resolved path of the source file ``rel``; a symlink that leads out of the source is refused."""
        full = os.path.join(source, rel)
        real = os.path.realpath(full)
        root = os.path.realpath(self.link_root(source))
        if os.path.commonpath([root, real]) != root:
            raise ValidationError(
                f"The source {source} holds {rel}, a symbolic link to {real}, outside the source; it is not adopted.",
                fix=f"Replace the link {full} by the file it should be (or remove it, or exclude it with ignore_patterns).",
                link=full, target=real)
        return real

    def _unchanged(self, entry: dict, source: str) -> bool:
        """Whether the source still has exactly the recorded files, sizes and times (stat only)."""
        if (entry.get("source") or {}).get("path") != source:
            return False
        scanned = self.scan(source)
        chosen = select_paths(sorted(scanned), self.selection["allow_patterns"], self.selection["ignore_patterns"])
        recorded = {f["path"]: f for f in entry.get("files", [])}
        if set(chosen) != set(recorded):
            return False
        return all(scanned[p][0] == recorded[p]["size"] and scanned[p][1] == recorded[p].get("mtime_ns")
                   for p in chosen)

    def resolve(self, entry: dict | None, latest: bool = False) -> Target:
        source = self._source_for(entry)
        if entry is not None and entry.get("status") == "installed" and self._unchanged(entry, source) and \
                {"allow_patterns": entry.get("allow_patterns"), "ignore_patterns": entry.get("ignore_patterns")} == self.selection:
            files = [FileSpec.from_record(f) for f in entry["files"]]
            mtimes = {f["path"]: f.get("mtime_ns") for f in entry["files"]}
        else:
            scanned = self.scan(source)
            chosen = select_paths(sorted(scanned), self.selection["allow_patterns"], self.selection["ignore_patterns"])
            if not chosen:
                raise NotFoundError(f"The source {source} has no files to adopt (after allow/ignore patterns).",
                                    fix="Check source, allow_patterns and ignore_patterns.")
            files, mtimes = [], {}
            for rel in chosen:
                full = self.source_file(source, rel)
                size = os.path.getsize(full)
                files.append(FileSpec(path=rel, size=size, sha256=file_digests(full, size)["sha256"]))
                mtimes[rel] = scanned[rel][1]
        version = files_digest(files)
        target = Target(revision=version, requested_revision=None, files=files, local_path=self.version_dir(version),
                        disk_path=self.paths.models_dir,
                        extra=dict(self.selection, source={"path": source}))
        target.extra["_mtimes"] = mtimes
        stage = self.staging(version)
        same = entry is not None and entry.get("revision") == version and os.path.isdir(entry.get("local_path") or "")
        if same:
            bad = {p.path for p in self.quick_check(entry)}
            target.pending = [s.path for s in files if s.path in bad]
        else:
            target.pending = [s.path for s in files if not stage.verified(s)]
        staged = target.size_bytes - sum(s.size for s in files if s.path in set(target.pending))
        target.staged_bytes = staged
        target.fetch_bytes = target.size_bytes - staged
        if self._linkable(source):
            target.fetch_bytes = 0  # hard links take no space
        return target

    def _linkable(self, source: str) -> bool:
        if self.request.adopt_mode == "copy":
            return False
        if self.permissions:
            # a hard link shares the source's inode: its owner and mode would change the source's too
            if self.request.adopt_mode == "hardlink":
                raise ValidationError("adopt_mode hardlink cannot give the model its own owner, group or mode: a hard "
                                      "link shares them with the source file.",
                                      fix="Use adopt_mode copy (or auto, which copies when owner/group/mode are set), "
                                          "or set them on the source and leave them out of the task.")
            return False
        try:
            probe = self.paths.models_dir
            while not os.path.exists(probe):
                probe = os.path.dirname(probe)
            same_fs = os.stat(source).st_dev == os.stat(probe).st_dev
        except OSError:
            same_fs = False
        if self.request.adopt_mode == "hardlink" and not same_fs:
            raise ValidationError(f"adopt_mode hardlink needs the source {source} on the same filesystem as "
                                  f"{self.paths.models_dir}.", fix="Use adopt_mode copy (or auto).")
        return same_fs

    # -- changes -------------------------------------------------------------------------------------
    def _bring(self, stage: StagingArea, source: str, spec: FileSpec, link: bool, progress) -> None:
        """Copy or hard-link one file into the staging tree, verified against ``spec``."""
        src = self.source_file(source, spec.path)  # resolved again at use: the source may have changed
        mode = stat.S_IMODE(os.stat(src).st_mode) & 0o644  # never more readable than the source file
        partial = stage.partial_path(spec.path)
        os.makedirs(os.path.dirname(partial), mode=0o750, exist_ok=True)
        if os.path.lexists(partial):
            os.unlink(partial)
        why = None
        for _attempt in range(2):
            h = Hasher(spec.size)
            try:
                if link:
                    try:
                        os.link(src, partial)
                        h.feed_file(partial, progress=progress)
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK) or self.request.adopt_mode == "hardlink":
                            raise
                        link = False
                if not link:
                    with open(src, "rb") as fin, open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                                              | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "wb") as fout:
                        while True:
                            data = fin.read(CHUNK)
                            if not data:
                                break
                            fout.write(data)
                            h.update(data)
                            progress.add(len(data))
                        fout.flush()
                        os.fsync(fout.fileno())
            except OSError as exc:
                if is_disk_full(exc):
                    raise disk_full(exc, self.paths.models_dir) from None
                raise ProviderError(f"Cannot read {src} or write {partial}: {exc.strerror or exc}.",
                                    fix="Check the permissions of the source directory and models_dir.") from None
            size = os.path.getsize(partial)
            why = mismatch(spec, h.digests(), size)
            if why is None:
                stage.place(partial, spec, h.digests(), chmod=not link, mode=mode)
                return
            os.unlink(partial)
        raise integrity_error(self.model_id, spec.path, f"{why}; the source changed while it was adopted")

    def install(self, target: Target, progress, entry: dict | None = None) -> dict:
        source = target.extra["source"]["path"]
        link = self._linkable(source)
        final = target.local_path
        stage = self.staging(target.revision)
        same = bool(entry and entry.get("revision") == target.revision and entry.get("local_path") == final)
        bad = {p.path for p in self.quick_check(entry)} if same else set()
        if not same and os.path.isdir(final):
            stage.adopt_tree(final)
        todo = [s for s in target.files if (s.path in bad if same else not stage.verified(s))]
        stage.ensure()
        progress.set_total(target.size_bytes, target.size_bytes - sum(s.size for s in todo),
                           f"adopting {len(todo)} file(s) from {source}")
        for spec in todo:
            self._bring(stage, source, spec, link, progress)
        if same:
            for spec in todo:
                stage.move_to(spec.path, final, self.permissions)
            stage.discard()
        else:
            stage.commit(final, self.permissions)
        return self._fields(target)

    def _fields(self, target: Target) -> dict:
        mtimes = target.extra.get("_mtimes", {})
        files = []
        for spec in target.files:
            rec = spec.record()
            rec["mtime_ns"] = mtimes.get(spec.path)
            files.append(rec)
        extra = {k: v for k, v in target.extra.items() if not k.startswith("_")}
        return dict(extra, revision=target.revision, requested_revision=None, local_path=target.local_path,
                    files=files, capabilities_detected=self.detect_capabilities(target.local_path))

    def repair(self, entry: dict, problems: list, progress) -> dict:
        source = self._source_for(entry)
        bad = {p.path for p in problems}
        specs = [FileSpec.from_record(f) for f in entry["files"] if f["path"] in bad or "." in bad]
        for spec in specs:
            src = self.source_file(source, spec.path)
            try:
                ok = os.path.getsize(src) == spec.size and file_digests(src, spec.size)["sha256"] == spec.sha256
            except OSError:
                ok = False
            if not ok:
                raise ProviderError(
                    f"Cannot repair {spec.path} of {self.model_id}: the source {source} no longer has the recorded content.",
                    fix="Restore the source directory, or adopt it as it is now with state: latest.")
        stage = self.staging(entry["revision"])
        stage.ensure()
        link = self._linkable(source)
        progress.set_total(sum(s.size for s in specs), 0, f"repairing {len(specs)} file(s) of {self.model_id}")
        os.makedirs(self.model_dir(entry["local_path"]), mode=0o755, exist_ok=True)
        for spec in specs:
            self._bring(stage, source, spec, link, progress)
            stage.move_to(spec.path, entry["local_path"], self.permissions)
        stage.discard()
        return {"files": entry["files"], "local_path": entry["local_path"], "revision": entry["revision"]}

    def predict_capabilities(self, target: Target) -> dict | None:
        """The source's selected files, linked into a temporary tree shaped like the installed version."""
        source = (target.extra.get("source") or {}).get("path")
        if not source or not os.path.isdir(source):
            return None
        tmp = tempfile.mkdtemp(prefix="venom-check-")
        try:
            for spec in target.files:
                link = os.path.join(tmp, spec.path)
                os.makedirs(os.path.dirname(link), exist_ok=True)
                os.symlink(os.path.join(source, spec.path), link)
            return self.detect_capabilities(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def detect_capabilities(self, local_path: str | None, target: Target | None = None) -> dict:
        if not local_path or not os.path.isdir(local_path):
            return {}
        if os.path.isfile(os.path.join(local_path, "config.json")) or \
                os.path.isfile(os.path.join(local_path, "tokenizer_config.json")):
            return detect_hf_capabilities(local_path)
        ggufs = []
        for root, _dirs, names in os.walk(local_path):
            ggufs += [os.path.join(root, n) for n in names if n.endswith(".gguf")]
        if ggufs:
            return detect_gguf_capabilities(max(ggufs, key=os.path.getsize))
        return detect_hf_capabilities(local_path)
