# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The operations journal: every install, remove, verify, update and activation is an operation.

One JSON file per operation under ``<models_dir>/.venom/operations/``, written atomically, so
another process (the facts module, a second playbook) can watch a long download's progress.

Fields: ``id, type, model, provider, status (pending, in_progress, completed, failed), progress
(percent), bytes_done, bytes_total, message, error, started_at`` and, once finished,
``finished_at`` and ``duration_seconds`` (absent, not null, while it runs); plus the process
identity (pid, host) of the run that owns it. An in-progress operation whose process is gone
(killed, crashed, rebooted) is reported as failed with ``interrupted: true``.

History is bounded: when an operation starts, finished operations beyond ``history_limit`` are
removed, oldest first; in-progress operations are never removed.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid

from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_json
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.store.procinfo import is_alive, process_identity
from ansible_collections.venom.models.plugins.module_utils.store.safeio import read_state_file
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso, parse_iso

STATUSES = ("pending", "in_progress", "completed", "failed")
RUNNING_STATUSES = ("pending", "in_progress")  # an operation that has not finished
TYPES = ("install", "remove", "verify", "update", "activate", "deactivate", "start", "stop", "restart", "rebuild")
DEFAULT_HISTORY_LIMIT = 200
PROGRESS_MIN_INTERVAL = 0.5
_ID_CHARS = set("0123456789abcdef-")
MAX_RECORD_BYTES = 4 * 1024 * 1024


MASK = "********"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; such a value is no secret anyway


def redact(text, secrets) -> str:
    """``text`` with every occurrence of every secret masked (longest first, so none leaks in part)."""
    text = str(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_value(value, secrets):
    """``value`` (a JSON-like structure) with ``redact`` applied to every string in it."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, secrets) for v in value]
    return value


class Operation:
    """A running operation; every change is persisted (progress writes are rate-limited)."""

    def __init__(self, journal: "Journal", record: dict):
        self.journal = journal
        self.record = record
        self._last_write = 0.0

    @property
    def id(self) -> str:
        return self.record["id"]

    def _save(self, durable: bool = True) -> None:
        """Persist the record; on a full disk the journal is skipped (best effort), the operation goes on.

        This is the one place a journal record is written: every string in it passes ``redact``
        with all the secrets the journal knows (tokens, API keys, env values of the run).
        """
        self.record = redact_value(self.record, self.journal.secrets)
        try:
            atomic_write_json(self.journal.path_of(self.id), self.record, mode=0o644, durable=durable)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.record["journal_skipped"] = "disk full"
        self._last_write = time.monotonic()

    def start(self, message: str | None = None) -> "Operation":
        self.record["status"] = "in_progress"
        if message is not None:
            self.record["message"] = message
        self._save()
        return self

    def update(self, progress: float | None = None, bytes_done: int | None = None, bytes_total: int | None = None,
               message: str | None = None, force: bool = False) -> None:
        if bytes_total is not None:
            self.record["bytes_total"] = int(bytes_total)
        if bytes_done is not None:
            self.record["bytes_done"] = int(bytes_done)
        if progress is None and self.record.get("bytes_total"):
            progress = 100.0 * self.record.get("bytes_done", 0) / self.record["bytes_total"]
        if progress is not None:
            self.record["progress"] = round(min(100.0, max(0.0, float(progress))), 2)
        if message is not None:
            self.record["message"] = message
        if self.record["status"] == "pending":
            self.record["status"] = "in_progress"
        if force or time.monotonic() - self._last_write >= PROGRESS_MIN_INTERVAL:
            self._save(durable=False)

    def _finish(self, status: str, message: str | None, error: str | None, result: dict | None) -> None:
        now = iso()
        self.record["status"] = status
        self.record["finished_at"] = now
        self.record["duration_seconds"] = round(
            (parse_iso(now) - parse_iso(self.record["started_at"])).total_seconds(), 3)
        if message is not None:
            self.record["message"] = message
        if error is not None:
            self.record["error"] = error
        if result:
            self.record["result"] = result
        self._save()

    def complete(self, message: str | None = None, result: dict | None = None) -> None:
        if self.record.get("bytes_total") is not None:
            self.record["bytes_done"] = self.record["bytes_total"]
        self.record["progress"] = 100.0
        self._finish("completed", message, None, result)

    def fail(self, error: str, message: str | None = None) -> None:
        self._finish("failed", message, str(error), None)

    def snapshot(self) -> dict:
        return dict(self.record)


class Journal:
    """The journal of one models directory."""

    def __init__(self, models_dir: str | StatePaths | None = None, history_limit: int = DEFAULT_HISTORY_LIMIT,
                 secrets=()):
        """``models_dir``: the directory, or its ``StatePaths``."""
        self.paths = StatePaths.of(models_dir)
        self.dir = self.paths.operations_dir
        self.history_limit = history_limit
        self.secrets: set = set()
        for value in secrets:
            self.add_secret(value)

    def add_secret(self, value) -> None:
        """A value that must never be written to the journal (masked wherever it appears)."""
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            self.secrets.add(value)

    def path_of(self, op_id: str) -> str:
        if not isinstance(op_id, str) or not op_id or not set(op_id) <= _ID_CHARS or len(op_id) > 64:
            raise ValidationError(f"{op_id!r} is not an operation id.",
                                  fix="Use the 'operation.id' a venom.models module returned.")
        return os.path.join(self.dir, f"{op_id}.json")

    def start(self, op_type: str, model: str | None, provider: str | None = None, message: str = "",
              bytes_total: int | None = None, details: dict | None = None) -> Operation:
        """Record a new operation (status in_progress) and prune old history."""
        self.paths.ensure()
        if op_type not in TYPES:
            raise ValidationError(f"Unknown operation type {op_type!r}.", fix=f"Use one of {', '.join(TYPES)}.")
        record = {
            "id": str(uuid.uuid4()), "type": op_type, "model": model, "provider": provider,
            "status": "pending", "progress": 0.0, "bytes_done": 0, "bytes_total": bytes_total,
            "message": message, "error": None, "started_at": iso(), "host": socket.gethostname(),
            "owner": process_identity(),
        }
        if details:
            record["details"] = details
        op = Operation(self, record)
        op.start()
        self.prune()
        return op

    def _read(self, path: str) -> dict | None:
        try:
            rec = json.loads(read_state_file(path, MAX_RECORD_BYTES, "operation record"))
        except (OSError, ValueError, RecursionError, VenomError):
            return None
        return rec if isinstance(rec, dict) and "id" in rec and "started_at" in rec else None

    def _present(self, rec: dict) -> dict:
        """The record as readers see it: an orphaned in-progress operation is reported as failed."""
        if rec.get("status") in RUNNING_STATUSES and not is_alive(rec.get("owner")):
            rec = dict(rec, status="failed", interrupted=True,
                       error=rec.get("error") or (f"interrupted: the process {rec.get('owner', {}).get('pid')} that ran "
                                                  "this operation ended before it finished (killed, crashed or rebooted)"))
        return rec

    def records(self) -> list:
        """Every operation on disk, newest first."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                rec = self._read(os.path.join(self.dir, name))
                if rec is not None:
                    out.append(self._present(rec))
        out.sort(key=lambda r: r["started_at"], reverse=True)
        return out

    def list(self, limit: int | None = None, status: str | None = None, model: str | None = None) -> list:
        recs = [r for r in self.records()
                if (status is None or r.get("status") == status) and (model is None or r.get("model") == model)]
        return recs if limit is None else recs[:max(0, int(limit))]

    def get(self, op_id: str) -> dict:
        rec = self._read(self.path_of(op_id))
        if rec is None:
            raise NotFoundError(f"There is no operation {op_id} in {self.dir}.",
                                fix="It may have been rotated out of the history; list recent ones with "
                                    "venom_model_facts (gather_subset: operations).")
        return self._present(rec)

    def in_progress(self) -> list:
        return [r for r in self.records() if r.get("status") in RUNNING_STATUSES]

    def prune(self) -> int:
        """Remove finished operations beyond the history limit (oldest first). Returns how many."""
        # records() already reports interrupted operations as failed: they are history too.
        finished = sorted((r for r in self.records() if r.get("status") in ("completed", "failed")),
                          key=lambda r: r.get("finished_at") or r["started_at"], reverse=True)
        removed = 0
        for rec in finished[self.history_limit:]:
            try:
                os.unlink(self.path_of(rec["id"]))
                removed += 1
            except FileNotFoundError:
                pass
        return removed
