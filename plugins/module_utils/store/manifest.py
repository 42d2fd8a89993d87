# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The manifest ``<models_dir>/manifest.json``: its one reader and writer.

Format::

    {
      "kind": "venom.models/manifest",
      "schema_version": 1,
      "updated_at": "2026-11-22T10:00:00.000Z",
      "models": [
        {"name": "org/model", "provider": "huggingface", "display_name": "model",
         "status": "installed", "size_bytes": 90868376, "size_gb": 0.091,
         "capabilities": {...}, "local_path": "/var/lib/venom/models/huggingface/org/model/<commit>",
         "sha256": "<digest over the file list>", "installed_at": "...", "updated_at": "...",
         "runtime": "vllm", "revision": "<commit>", "requested_revision": "main",
         "files": [{"path": "config.json", "size": 612, "sha256": "...", "git_oid": "..."}],
         "active": false, "active_runtime": null}
      ]
    }

Beside the manifest, each entry is also kept as its own record file in ``.venom/records/``
(written by the same transaction), so a manifest that is lost or damaged can be rebuilt from
what is on disk (``Manifest.rebuild``) instead of being reset.

Every read validates the document; a corrupt or foreign file is never reset silently but raises
``ManifestError`` naming the file, the problem and the way out. Writes happen only inside
``Manifest.transaction()``: under the manifest lock, read → change → validate → atomic write
(temp file, fsync, rename, fsync directory). Code outside ``store/`` changes the manifest only
through the domain operations (``record_install``, ``set_metadata``, ``drop_retained_versions``,
``mark_active``), never by editing the document. Concurrent transactions from any number of
processes never lose an update; a writer killed at any point leaves the old or the new file.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re

from ansible_collections.venom.models.plugins.module_utils.errors import ManifestError, ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_json, dump_json, fsync_dir
from ansible_collections.venom.models.plugins.module_utils.store.locks import DEFAULT_LOCK_TIMEOUT, manifest_lock
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths, keyed_file_name
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso, utcnow
from ansible_collections.venom.models.plugins.module_utils.store.safeio import read_state_file
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    MAX_SIZE_BYTES, PROVIDERS, RUNTIMES, ensure_inside, model_key, validate_instance_name,
    validate_relative_file_path)

KIND = "venom.models/manifest"
SCHEMA_VERSION = 1
STATUSES = ("installed", "damaged")
GB = 10 ** 9
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
_COMMIT_DIR = re.compile(r"^[0-9a-f]{40}$")
_LOCAL_VERSION_DIR = re.compile(r"^[0-9a-f]{12}$")
MAX_JSON_DEPTH = 32  # the manifest nests 4 levels; anything much deeper is refused before it is copied

RECOVERY_HINT = ("Move the file aside and rebuild the manifest from the models on disk with "
                 "'venom.models.venom_manifest' (state: rebuilt), which keeps the old file as "
                 "manifest.json.broken-<time>; see docs/recovery.md.")

_ENTRY_TYPES = {
    "name": (str,),
    "provider": (str,),
    "display_name": (str,),
    "status": (str,),
    "size_bytes": (int,),
    "size_gb": (int, float),
    "capabilities": (dict,),
    "local_path": (str, type(None)),
    "sha256": (str, type(None)),
    "installed_at": (str, type(None)),
    "updated_at": (str, type(None)),
    "runtime": (str, type(None)),
    "revision": (str, type(None)),
    "files": (list,),
    "active": (bool,),
    "active_runtime": (str, type(None)),
    "active_instances": (list,),  # the runtime instances that serve the model (optional)
}
REQUIRED_ENTRY_KEYS = ("name", "provider", "status", "size_bytes", "capabilities", "files")
# which runtime instances serve a model: written by the runtimes only (Manifest.mark_active)
ACTIVE_KEYS = ("active", "active_runtime", "active_instances")
# what Manifest.set_metadata may change: the fields of an entry that need no file transferred
METADATA_KEYS = ("display_name", "runtime", "capabilities", "capability_overrides", "permissions", "requested_revision")


# Host-wide storage settings recorded with the manifest by venom_model (used when a task omits them).
STORAGE_SETTINGS = ("quota_gb", "reserve_gb")


def empty_document() -> dict:
    return {"kind": KIND, "schema_version": SCHEMA_VERSION, "updated_at": None, "models": []}


def size_gb(size_bytes: int) -> float:
    """Decimal gigabytes (10^9 bytes), rounded to 3 places, as the manifest's ``size_gb``."""
    return round(size_bytes / GB, 3)


def new_entry(name: str, provider: str, **fields) -> dict:
    """A manifest entry with every field present and defaults filled in."""
    entry = {
        "name": name, "provider": provider, "display_name": name.rsplit("/", 1)[-1],
        "status": "installed", "size_bytes": 0, "capabilities": {}, "local_path": None, "sha256": None,
        "installed_at": None, "updated_at": None, "runtime": None, "revision": None, "files": [],
        "active": False, "active_runtime": None,
    }
    entry.update(fields)
    entry["size_gb"] = size_gb(entry["size_bytes"])
    return entry


def validate_document(doc, path: str = "manifest", models_dir: str | None = None) -> dict:
    """Check a manifest document; raise ManifestError naming the first problem found.

    With ``models_dir``, every path the document holds (``local_path``, ``retained_versions``,
    ``files[].path``) must also lie inside ``<models_dir>/<provider>/`` and no model's directory
    may contain another's; the error names the offending entry (``details['entry']``).
    """
    def bad(problem: str, fix: str = RECOVERY_HINT, entry=None):
        details = {"path": path}
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            details["entry"] = entry["name"]
        raise ManifestError(f"The manifest {path} is invalid: {problem}.", fix=fix, **details)

    if not isinstance(doc, dict):
        bad(f"the top level is a JSON {type(doc).__name__}, not an object")
    if doc.get("kind") != KIND or "schema_version" not in doc:
        if "models" in doc and "schema_version" not in doc:
            bad("it has no 'kind'/'schema_version' fields, so it was not written by venom.models "
                "(perhaps by the Venom application or by hand)",
                fix="Keep that file elsewhere and point models_dir at a directory venom.models owns, or "
                    + RECOVERY_HINT[0].lower() + RECOVERY_HINT[1:])
        bad(f"'kind' is {_short_repr(doc.get('kind'))}, expected {KIND!r}; this is not a venom.models manifest")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        bad(f"'schema_version' is {_short_repr(version)}, not an integer")
    if version > SCHEMA_VERSION:
        bad(f"it has schema version {version}, newer than this collection understands ({SCHEMA_VERSION})",
            fix="Upgrade the venom.models collection on the controller; do not edit the file.")
    if version < 1:
        bad(f"'schema_version' {version} is not valid")
    models = doc.get("models")
    if not isinstance(models, list):
        bad("'models' is not a list")
    if doc.get("updated_at") is not None and not isinstance(doc.get("updated_at"), str):
        bad("'updated_at' is not a string")
    settings = doc.get("settings", {})
    if not isinstance(settings, dict):
        bad("'settings' is not an object")
    for key, value in settings.items():
        if key not in STORAGE_SETTINGS or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            bad(f"settings.{key} = {value!r} is not one of {', '.join(STORAGE_SETTINGS)} with a number >= 0")
    seen = set()
    dirs = []  # (real directory, entry name) of every model version, to refuse nesting
    for idx, entry in enumerate(models):
        where = f"models[{idx}]"
        if not isinstance(entry, dict):
            bad(f"{where} is not an object")
        label = f"{where} ({_short_repr(entry.get('name', '?'))})"
        for key in REQUIRED_ENTRY_KEYS:
            if key not in entry:
                bad(f"{label} has no '{key}'", entry=entry)
        for key, types in _ENTRY_TYPES.items():
            if key in entry and (not isinstance(entry[key], types)
                                 or (isinstance(entry[key], bool) and bool not in types)):
                bad(f"{label} field '{key}' has type {type(entry[key]).__name__}", entry=entry)
        label = f"{where} ({entry['name']!r})"
        if entry["provider"] not in PROVIDERS:
            bad(f"{label} has unknown provider {_short_repr(entry['provider'])}", entry=entry)
        if entry["status"] not in STATUSES:
            bad(f"{label} has unknown status {_short_repr(entry['status'])}", entry=entry)
        if entry.get("runtime") is not None and entry["runtime"] not in RUNTIMES:
            bad(f"{label} has unknown runtime {_short_repr(entry['runtime'])}", entry=entry)
        if not 0 <= entry["size_bytes"] <= MAX_SIZE_BYTES:
            bad(f"{label} has a size of {entry['size_bytes']} bytes, outside 0..{MAX_SIZE_BYTES}", entry=entry)
        if "size_gb" in entry and not math.isfinite(entry["size_gb"]):
            bad(f"{label} has a size_gb that is not a finite number", entry=entry)
        for fidx, item in enumerate(entry["files"]):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("size"), int) \
                    or isinstance(item.get("size"), bool):
                bad(f"{label} files[{fidx}] needs a string 'path' and an integer 'size'", entry=entry)
            if not 0 <= item["size"] <= MAX_SIZE_BYTES:
                bad(f"{label} files[{fidx}] has a size of {item['size']} bytes, outside 0..{MAX_SIZE_BYTES}", entry=entry)
            try:
                validate_relative_file_path(item["path"])
            except ValidationError as exc:
                bad(f"{label} files[{fidx}]: {exc.msg}", entry=entry)
            for key in ("sha256", "git_oid"):
                if item.get(key) is not None and not isinstance(item[key], str):
                    bad(f"{label} files[{fidx}] field '{key}' is not a string", entry=entry)
        retained = entry.get("retained_versions")
        if retained is not None and (not isinstance(retained, list)
                                     or not all(isinstance(v, dict) for v in retained)):
            bad(f"{label} field 'retained_versions' is not a list of objects", entry=entry)
        for key in ("source", "capability_overrides", "detected_capabilities"):
            if entry.get(key) is not None and not isinstance(entry[key], dict):
                bad(f"{label} field '{key}' is not an object", entry=entry)
        if isinstance(entry.get("source"), dict) and not isinstance(entry["source"].get("path", ""), str):
            bad(f"{label} field 'source.path' is not a string", entry=entry)
        if models_dir is not None:
            versions = [("local_path", entry.get("local_path"))] + \
                [(f"retained_versions[{i}].local_path", v.get("local_path")) for i, v in enumerate(retained or [])]
            for field, value in versions:
                if value is None:
                    continue
                try:
                    dirs.append((model_path_inside(models_dir, entry["provider"], value), entry["name"]))
                except ValidationError as exc:
                    bad(f"{label} field '{field}': {exc.msg}",
                        fix="Every model directory lies inside models_dir; remove this entry (or correct its path) "
                            "and " + RECOVERY_HINT[0].lower() + RECOVERY_HINT[1:], entry=entry)
        key = (entry["provider"], entry["name"])
        if key in seen:
            bad(f"the model {entry['name']!r} ({entry['provider']}) appears twice", entry=entry)
        seen.add(key)
    nested = nested_dirs(dirs)
    if nested:
        inner, outer = nested
        bad(f"the directory of {inner[1]!r} ({inner[0]}) lies inside the directory of {outer[1]!r} ({outer[0]})",
            fix="No model's directory may contain another's; remove one of the two entries and "
                + RECOVERY_HINT[0].lower() + RECOVERY_HINT[1:], entry={"name": inner[1]})
    return doc


def parse_json(raw: bytes, path: str):
    """Decode a state file; every way it can be malformed is a ManifestError naming the file."""
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        if _depth(doc) > MAX_JSON_DEPTH:
            raise RecursionError
        return doc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"The file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}).",
                            fix=RECOVERY_HINT, path=path) from None
    except RecursionError:
        raise ManifestError(f"The file {path} nests JSON too deeply to be a venom.models file.",
                            fix=RECOVERY_HINT, path=path) from None
    except ValueError as exc:
        raise ManifestError(f"The file {path} is not valid JSON: {exc}.", fix=RECOVERY_HINT, path=path) from None


def _depth(value) -> int:
    """How deeply ``value`` nests lists and objects (iterative: no recursion limit of its own)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _short_repr(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def model_path_inside(models_dir: str, provider: str, path) -> str:
    """``path`` if it is an absolute, normalised path strictly inside ``<models_dir>/<provider>/``.

    Checked on the text (every read of the manifest) and, when the path exists, again after
    resolving symlinks (``ensure_inside``), so a planted link cannot take a root run elsewhere.
    """
    base = os.path.join(os.path.normpath(os.path.abspath(models_dir)), provider)
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > 4096:
        raise ValidationError(f"the model path {_short_repr(path)} is not a path",
                              fix="Rebuild the manifest with venom_manifest (state: rebuilt).")
    if not os.path.isabs(path) or os.path.normpath(path) != path or not path.startswith(base + os.sep):
        raise ValidationError(f"the model path {_short_repr(path)} is not inside {base}",
                              fix="Rebuild the manifest with venom_manifest (state: rebuilt).")
    if os.path.lexists(path):
        ensure_inside(base, path)
    return path


def nested_dirs(dirs: list) -> tuple | None:
    """The first pair ((inner, name), (outer, name)) of different models where one directory holds (or is) the other."""
    for path, name in dirs:
        for other, other_name in dirs:
            if other_name != name and (other == path or other.startswith(path + os.sep)):
                return (other, other_name), (path, name)
    return None


class Manifest:
    """The manifest of one models directory."""

    def __init__(self, models_dir: str | StatePaths | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        """``models_dir``: the directory, or its ``StatePaths``."""
        self.paths = StatePaths.of(models_dir)
        self.path = self.paths.manifest
        self.lock_timeout = lock_timeout

    # -- reading -------------------------------------------------------------------------------
    def load(self) -> dict:
        """The validated document; an empty one if the file does not exist yet.

        The file is opened without following a symlink; as root it must belong to root and not be
        writable by group or others (``safeio``). Every path it holds must lie inside models_dir.
        """
        try:
            self.paths.check()
            raw = read_state_file(self.path, MAX_MANIFEST_BYTES, "manifest")
        except FileNotFoundError:
            return empty_document()
        except IsADirectoryError:
            raise ManifestError(f"The manifest path {self.path} is a directory.",
                                fix="Remove or rename that directory.", path=self.path) from None
        except PermissionError as exc:
            raise ManifestError(f"The manifest {self.path} cannot be read: {exc.strerror}.",
                                fix="Run the task with become: true, or fix the file's permissions.",
                                path=self.path) from None
        except ValidationError as exc:
            raise ManifestError(exc.msg, fix=exc.fix, **exc.details) from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"The manifest {self.path} is larger than {MAX_MANIFEST_BYTES} bytes.",
                                fix=RECOVERY_HINT, path=self.path)
        if not raw.strip():
            raise ManifestError(f"The manifest {self.path} is empty (0 bytes of JSON).", fix=RECOVERY_HINT, path=self.path)
        return validate_document(parse_json(raw, self.path), self.path, self.paths.models_dir)

    def models(self) -> list:
        return self.load()["models"]

    def get(self, name: str, provider: str | None = None) -> dict | None:
        return find_entry(self.load(), name, provider)

    def settings(self) -> dict:
        """The host's storage settings recorded with the manifest (``quota_gb``, ``reserve_gb``)."""
        return dict(self.load().get("settings") or {})

    def record_settings(self, values: dict) -> bool:
        """Record the settings given (None: left as recorded). Returns whether the manifest changed."""
        given = {k: float(v) for k, v in values.items() if v is not None}
        if all(self.settings().get(k) == v for k, v in given.items()):
            return False
        with self.transaction() as doc:
            doc["settings"] = dict(doc.get("settings") or {}, **given)
        return True

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """Yield the document for changes; on normal exit validate and write it if it changed.

        The manifest lock is held for the whole block: keep it short (no downloads inside).
        """
        self.paths.ensure()
        with manifest_lock(self.paths, timeout=self.lock_timeout):
            doc = self.load()
            before = dump_json(doc)
            work = copy.deepcopy(doc)
            yield work
            if dump_json(work) != before:
                work["updated_at"] = iso()
                validate_document(work, self.path, self.paths.models_dir)
                self._sync_records(doc, work)
                atomic_write_json(self.path, work, mode=0o644)

    # -- records: one file per entry, for recovery ----------------------------------------------
    def _record_path(self, entry: dict) -> str:
        return os.path.join(self.paths.records_dir,
                            keyed_file_name("model", f"{entry['provider']}:{entry['name']}", ".json"))

    def _sync_records(self, before: dict, after: dict) -> None:
        old = {self._record_path(e): e for e in before["models"]}
        new = {self._record_path(e): e for e in after["models"]}
        for path, entry in new.items():
            if old.get(path) != entry or not os.path.exists(path):
                atomic_write_json(path, entry, mode=0o644, durable=False)
        for path in set(old) - set(new):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        fsync_dir(self.paths.records_dir)

    def check(self) -> dict:
        """``{"valid": bool, "error": str|None, "models": int|None, "entry": str|None}`` without raising.

        ``entry`` names the model whose entry makes the manifest invalid, when one does.
        """
        try:
            doc = self.load()
        except ManifestError as exc:
            return {"valid": False, "error": str(exc), "models": None, "entry": exc.details.get("entry")}
        return {"valid": True, "error": None, "models": len(doc["models"]), "entry": None}

    def plan_rebuild(self) -> dict:
        """What ``rebuild`` would restore, from the records and the files on disk (reads only)."""
        restored, damaged, skipped = [], [], []
        try:
            names = sorted(os.listdir(self.paths.records_dir))
        except FileNotFoundError:
            names = []
        seen = set()
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(self.paths.records_dir, name)
            try:
                entry = parse_json(read_state_file(path, MAX_MANIFEST_BYTES, "record"), path)
                probe = empty_document()
                probe["models"] = [entry]
                validate_document(probe, path, self.paths.models_dir)
            except (OSError, VenomError) as exc:
                skipped.append({"record": path, "reason": str(exc)})
                continue
            key = (entry["provider"], entry["name"])
            if key in seen:
                skipped.append({"record": path, "reason": "duplicate record"})
                continue
            seen.add(key)
            problem = _files_problem(entry)
            if problem:
                entry = dict(entry, status="damaged", damage=problem)
                damaged.append(entry)
            else:
                restored.append(entry)
        kept = restored + damaged
        return {"restored": restored, "damaged": damaged, "skipped": skipped,
                "lost": self._lost_entries(seen), "unclaimed": self._unclaimed_dirs(kept)}

    def _lost_entries(self, restored_keys: set) -> list:
        """Entries of the current manifest (read leniently, even if invalid) that no valid record restores."""
        try:
            doc = parse_json(read_state_file(self.path, MAX_MANIFEST_BYTES, "manifest"), self.path)
        except (OSError, VenomError):
            return []
        models = doc.get("models") if isinstance(doc, dict) else None
        lost = []
        for item in models if isinstance(models, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                    or not isinstance(item.get("provider"), str):
                continue
            if (item["provider"], item["name"]) not in restored_keys:
                lost.append({"name": item["name"], "provider": item["provider"],
                             "reason": "no valid record in .venom/records (missing or refused, see skipped); "
                                       "its files, if any, are listed in unclaimed"})
        return lost

    def _unclaimed_dirs(self, entries: list) -> list:
        """Version directories under models_dir (huggingface/<org>/<name>/<commit>, local/.../<id12>) no entry claims."""
        claimed = {os.path.realpath(p) for e in entries for p in [e.get("local_path")] +
                   [v.get("local_path") for v in e.get("retained_versions") or []] if p}
        out = []
        for provider, depth, pattern in (("huggingface", 3, _COMMIT_DIR), ("local", 4, _LOCAL_VERSION_DIR)):
            base = self.paths.provider_dir(provider)
            for root, dirs, _files in os.walk(base):
                level = os.path.relpath(root, base).count(os.sep) + (root != base)
                if os.path.realpath(root) in claimed or (level and pattern.match(os.path.basename(root))):
                    if os.path.realpath(root) not in claimed and level >= 2:
                        rel = os.path.relpath(os.path.dirname(root), base).replace(os.sep, "/")
                        out.append({"path": root, "provider": provider, "name": rel,
                                    "revision": os.path.basename(root) if provider == "huggingface" else None})
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d))) if level < depth else []
        return out

    def rebuild(self) -> dict:
        """Rebuild the manifest from the records and the files on disk.

        An existing manifest file (valid or not) is kept as ``manifest.json.broken-<time>``; an
        entry whose files are missing or have changed size is restored with status ``damaged``
        (``venom_model`` with ``state: verified`` repairs it). Returns the plan it applied plus
        ``moved_aside`` (the kept file or None).
        """
        self.paths.ensure()
        with manifest_lock(self.paths, timeout=self.lock_timeout):
            report = self.plan_rebuild()
            try:
                settings = self.settings()  # kept when the damaged file still says them
            except ManifestError:
                settings = {}
            doc = empty_document()
            doc["models"] = report["restored"] + report["damaged"]
            if settings:
                doc["settings"] = settings
            doc["updated_at"] = iso()
            validate_document(doc, self.path, self.paths.models_dir)   # before the old file moves: a refusal keeps it
            moved = None
            if os.path.lexists(self.path):
                moved = f"{self.path}.broken-{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}"
                os.replace(self.path, moved)
            atomic_write_json(self.path, doc, mode=0o644)
        report["moved_aside"] = moved
        return report

    def upsert(self, entry: dict) -> tuple[dict | None, dict]:
        """Insert or replace one entry (matched by provider and name) as given. Returns (before, after).

        A plain put, for tools and tests; the modules change the manifest through the domain
        operations below, which keep what other writers own (the runtimes' marks).
        """
        with self.transaction() as doc:
            entry = dict(entry, updated_at=iso(), size_gb=size_gb(entry["size_bytes"]))
            before = _put(doc, entry)
        return before, entry

    # -- domain operations: every change the modules make -----------------------------------------
    def record_install(self, entry: dict) -> dict:
        """Record the entry of a model version just installed, updated, synced, repaired or found in
        a runtime's store: it replaces the model's entry (matched by provider and name) or is added.

        Which runtime instances serve the model is theirs to record (``mark_active``): the marks of
        the entry in the manifest (``active``, ``active_runtime``, ``active_instances``) are kept,
        whatever ``entry`` says; a new entry is served by no instance yet. Returns the entry written.
        """
        entry = copy.deepcopy(entry)
        with self.transaction() as doc:
            current = find_entry(doc, entry["name"], entry["provider"])
            unmarked = {"active": False, "active_runtime": None}
            for key in ACTIVE_KEYS:
                if current is not None and key in current:
                    entry[key] = copy.deepcopy(current[key])
                elif key in unmarked:
                    entry[key] = unmarked[key]
                else:
                    entry.pop(key, None)
            _put(doc, entry)
        return copy.deepcopy(entry)

    def set_metadata(self, name: str, provider: str, changes: dict) -> dict:
        """Change the fields of an entry that need no file transferred (``METADATA_KEYS``: display
        name, runtime, capabilities and their overrides, permissions, requested revision).
        Returns the entry after the change. Another key is refused (ValueError), so is a model the
        manifest does not list (ManifestError)."""
        unknown = sorted(set(changes) - set(METADATA_KEYS))
        if unknown:
            raise ValueError(f"set_metadata cannot change {', '.join(unknown)}; only {', '.join(METADATA_KEYS)}")
        return self._change_entry(name, provider, lambda entry: entry.update(copy.deepcopy(changes)))

    def drop_retained_versions(self, name: str, provider: str) -> dict:
        """Forget the old versions an entry kept for a runtime (``retained_versions``), once their
        directories are removed; the installed version and the runtimes' marks stay. Returns the
        entry after the change (ManifestError for a model the manifest does not list)."""
        return self._change_entry(name, provider, lambda entry: entry.pop("retained_versions", None))

    def mark_active(self, instance: str, name: str, provider: str) -> bool:
        """Record that runtime instance ``instance`` serves model ``name`` of ``provider`` and no
        other: ``active_instances`` of each entry lists the instances that serve it, ``active`` is
        true while one does and ``active_runtime`` is the first of them. Other instances' marks are
        kept. Returns whether the manifest changed."""
        validate_instance_name(instance)
        changed = False
        with self.transaction() as doc:
            served = find_entry(doc, name, provider)  # the one naming rule (model_key)
            for entry in doc["models"]:
                is_it = entry is served
                had = active_instances(entry)
                now = (had if instance in had else had + [instance]) if is_it else [n for n in had if n != instance]
                if now != had or ("active_instances" not in entry and now):
                    entry["active_instances"] = now
                    entry["active"], entry["active_runtime"] = bool(now), (now[0] if now else None)
                    changed = True
        return changed

    def served_by(self, instance: str) -> dict | None:
        """The entry of the model runtime instance ``instance`` is marked to serve (None: none)."""
        for entry in self.load()["models"]:
            if instance in active_instances(entry):
                return entry
        return None

    def _change_entry(self, name: str, provider: str, change) -> dict:
        """Apply ``change(entry)`` to the model's entry under the lock and stamp it; the entry after."""
        with self.transaction() as doc:
            entry = find_entry(doc, name, provider)
            if entry is None:
                raise ManifestError(f"The manifest {self.path} has no entry for the {provider} model {name}.",
                                    fix="Install it first (venom.models.venom_model, state: present).",
                                    path=self.path)
            change(entry)
            entry["updated_at"] = iso()
            after = copy.deepcopy(entry)
        return after

    def remove(self, name: str, provider: str | None = None) -> dict | None:
        """Remove one entry; return it (None if it was not there)."""
        with self.transaction() as doc:
            entry = find_entry(doc, name, provider)
            if entry is not None:
                doc["models"].remove(entry)
        return entry


def _put(doc: dict, entry: dict) -> dict | None:
    """Put ``entry`` in place of the model's entry in ``doc``, or add it; the entry it replaced (or None)."""
    before = find_entry(doc, entry["name"], entry["provider"])
    if before is None:
        doc["models"].append(entry)
    else:
        doc["models"][doc["models"].index(before)] = entry
    return before


def active_instances(entry: dict) -> list:
    """The instances that serve a manifest entry (entries written before instances: ``active_runtime``)."""
    if isinstance(entry.get("active_instances"), list):
        return list(entry["active_instances"])
    return [entry["active_runtime"]] if entry.get("active") and entry.get("active_runtime") else []


def find_entry(doc: dict, name: str, provider: str | None = None) -> dict | None:
    """The entry named ``name`` (and of ``provider`` if given), under its provider's naming rule
    (``model_key``: an Ollama name in any spelling of the same model)."""
    for entry in doc["models"]:
        if provider is not None and entry["provider"] != provider:
            continue
        if entry["name"] == name or model_key(entry["name"], entry["provider"]) == model_key(name, entry["provider"]):
            return entry
    return None


def used_bytes(doc: dict, exclude: tuple | None = None) -> int:
    """Bytes the manifest's models take, optionally leaving out (provider, name)."""
    return sum(e["size_bytes"] for e in doc["models"] if (e["provider"], e["name"]) != exclude)


def _files_problem(entry: dict) -> str | None:
    """Why an entry's files on disk no longer match it (cheap: existence and sizes), or None."""
    base = entry.get("local_path")
    if not base or entry["provider"] == "ollama":
        return None
    if not os.path.isdir(base):
        return f"its directory {base} is missing"
    for item in entry["files"]:
        path = os.path.join(base, item["path"])
        try:
            size = os.path.getsize(path)
        except OSError:
            return f"the file {item['path']} is missing"
        if size != item["size"]:
            return f"the file {item['path']} has {size} bytes, expected {item['size']}"
    return None
