# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The manifest ``<models_dir>/manifest.json``: its one reader and writer.

Format (the source documents' format, extended)::

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
(temp file, fsync, rename, fsync directory). Concurrent transactions from any number of
processes never lose an update; a writer killed at any point leaves the old or the new file.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os

from ansible_collections.venom.models.plugins.module_utils.errors import ManifestError
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_json, dump_json, fsync_dir
from ansible_collections.venom.models.plugins.module_utils.store.locks import DEFAULT_LOCK_TIMEOUT, manifest_lock
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths, keyed_file_name
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso, utcnow
from ansible_collections.venom.models.plugins.module_utils.store.validation import PROVIDERS, RUNTIMES

KIND = "venom.models/manifest"
SCHEMA_VERSION = 1
STATUSES = ("installed", "damaged")
GB = 10 ** 9
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

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


def empty_document() -> dict:
    return {"kind": KIND, "schema_version": SCHEMA_VERSION, "updated_at": None, "models": []}


def size_gb(size_bytes: int) -> float:
    """Decimal gigabytes (10^9 bytes), rounded to 3 places, as the source documents' ``size_gb``."""
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


def validate_document(doc, path: str = "manifest") -> dict:
    """Check a manifest document; raise ManifestError naming the first problem found."""
    def bad(problem: str, fix: str = RECOVERY_HINT):
        raise ManifestError(f"The manifest {path} is invalid: {problem}.", fix=fix, path=path)

    if not isinstance(doc, dict):
        bad(f"the top level is a JSON {type(doc).__name__}, not an object")
    if doc.get("kind") != KIND or "schema_version" not in doc:
        if "models" in doc and "schema_version" not in doc:
            bad("it has no 'kind'/'schema_version' fields, so it was not written by venom.models "
                "(perhaps by the Venom application or by hand)",
                fix="Keep that file elsewhere and point models_dir at a directory venom.models owns, or "
                    + RECOVERY_HINT[0].lower() + RECOVERY_HINT[1:])
        bad(f"'kind' is {doc.get('kind')!r}, expected {KIND!r}; this is not a venom.models manifest")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        bad(f"'schema_version' is {version!r}, not an integer")
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
    seen = set()
    for idx, entry in enumerate(models):
        where = f"models[{idx}]"
        if not isinstance(entry, dict):
            bad(f"{where} is not an object")
        for key in REQUIRED_ENTRY_KEYS:
            if key not in entry:
                bad(f"{where} ({entry.get('name', '?')}) has no '{key}'")
        for key, types in _ENTRY_TYPES.items():
            if key in entry and (not isinstance(entry[key], types)
                                 or (isinstance(entry[key], bool) and bool not in types)):
                bad(f"{where} ({entry.get('name', '?')}) field '{key}' has type {type(entry[key]).__name__}")
        if entry["provider"] not in PROVIDERS:
            bad(f"{where} ({entry['name']}) has unknown provider {entry['provider']!r}")
        if entry["status"] not in STATUSES:
            bad(f"{where} ({entry['name']}) has unknown status {entry['status']!r}")
        if entry.get("runtime") is not None and entry["runtime"] not in RUNTIMES:
            bad(f"{where} ({entry['name']}) has unknown runtime {entry['runtime']!r}")
        if entry["size_bytes"] < 0:
            bad(f"{where} ({entry['name']}) has a negative size")
        for fidx, item in enumerate(entry["files"]):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("size"), int):
                bad(f"{where} ({entry['name']}) files[{fidx}] needs a string 'path' and an integer 'size'")
        key = (entry["provider"], entry["name"])
        if key in seen:
            bad(f"the model {entry['name']!r} ({entry['provider']}) appears twice")
        seen.add(key)
    return doc


class Manifest:
    """The manifest of one models directory."""

    def __init__(self, models_dir: str | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.paths = StatePaths(models_dir)
        self.path = self.paths.manifest
        self.lock_timeout = lock_timeout

    # -- reading -------------------------------------------------------------------------------
    def load(self) -> dict:
        """The validated document; an empty one if the file does not exist yet."""
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            return empty_document()
        except IsADirectoryError:
            raise ManifestError(f"The manifest path {self.path} is a directory.",
                                fix="Remove or rename that directory.", path=self.path) from None
        except PermissionError as exc:
            raise ManifestError(f"The manifest {self.path} cannot be read: {exc.strerror}.",
                                fix="Run the task with become: true, or fix the file's permissions.",
                                path=self.path) from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"The manifest {self.path} is larger than {MAX_MANIFEST_BYTES} bytes.",
                                fix=RECOVERY_HINT, path=self.path)
        if not raw.strip():
            raise ManifestError(f"The manifest {self.path} is empty (0 bytes of JSON).", fix=RECOVERY_HINT, path=self.path)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ManifestError(f"The manifest {self.path} is not UTF-8 text ({exc.reason} at byte {exc.start}).",
                                fix=RECOVERY_HINT, path=self.path) from None
        except ValueError as exc:
            raise ManifestError(f"The manifest {self.path} is not valid JSON: {exc}.",
                                fix=RECOVERY_HINT, path=self.path) from None
        return validate_document(doc, self.path)

    def models(self) -> list:
        return self.load()["models"]

    def get(self, name: str, provider: str | None = None) -> dict | None:
        return find_entry(self.load(), name, provider)

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """Yield the document for changes; on normal exit validate and write it if it changed.

        The manifest lock is held for the whole block: keep it short (no downloads inside).
        """
        self.paths.ensure()
        with manifest_lock(self.paths.models_dir, timeout=self.lock_timeout):
            doc = self.load()
            before = dump_json(doc)
            work = copy.deepcopy(doc)
            yield work
            if dump_json(work) != before:
                work["updated_at"] = iso()
                validate_document(work, self.path)
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
        """``{"valid": bool, "error": str|None, "models": int|None}`` without raising."""
        try:
            doc = self.load()
        except ManifestError as exc:
            return {"valid": False, "error": str(exc), "models": None}
        return {"valid": True, "error": None, "models": len(doc["models"])}

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
                with open(path, encoding="utf-8") as fh:
                    entry = json.load(fh)
                probe = empty_document()
                probe["models"] = [entry]
                validate_document(probe, path)
            except (OSError, ValueError, ManifestError) as exc:
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
        return {"restored": restored, "damaged": damaged, "skipped": skipped}

    def rebuild(self) -> dict:
        """Rebuild the manifest from the records and the files on disk.

        An existing manifest file (valid or not) is kept as ``manifest.json.broken-<time>``; an
        entry whose files are missing or have changed size is restored with status ``damaged``
        (``venom_model`` with ``state: verified`` repairs it). Returns the plan it applied plus
        ``moved_aside`` (the kept file or None).
        """
        self.paths.ensure()
        with manifest_lock(self.paths.models_dir, timeout=self.lock_timeout):
            report = self.plan_rebuild()
            moved = None
            if os.path.lexists(self.path):
                moved = f"{self.path}.broken-{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}"
                os.replace(self.path, moved)
            doc = empty_document()
            doc["models"] = report["restored"] + report["damaged"]
            doc["updated_at"] = iso()
            validate_document(doc, self.path)
            atomic_write_json(self.path, doc, mode=0o644)
        report["moved_aside"] = moved
        return report

    def upsert(self, entry: dict) -> tuple[dict | None, dict]:
        """Insert or replace one entry (matched by provider and name). Returns (before, after)."""
        with self.transaction() as doc:
            before = find_entry(doc, entry["name"], entry["provider"])
            entry = dict(entry, updated_at=iso(), size_gb=size_gb(entry["size_bytes"]))
            if before is None:
                doc["models"].append(entry)
            else:
                doc["models"][doc["models"].index(before)] = entry
        return before, entry

    def remove(self, name: str, provider: str | None = None) -> dict | None:
        """Remove one entry; return it (None if it was not there)."""
        with self.transaction() as doc:
            entry = find_entry(doc, name, provider)
            if entry is not None:
                doc["models"].remove(entry)
        return entry


def find_entry(doc: dict, name: str, provider: str | None = None) -> dict | None:
    """The entry named ``name`` (and of ``provider`` if given). Ollama names match case-insensitively."""
    for entry in doc["models"]:
        if provider is not None and entry["provider"] != provider:
            continue
        if entry["name"] == name or (entry["provider"] == "ollama" and entry["name"].lower() == name.lower()):
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
