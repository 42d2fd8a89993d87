# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Progress lines of a running ``venom_model`` task, from the host's operations journal.

The ``venom_model`` action plugin runs the module in the background and reads, every few seconds,
the journal records (``<models_dir>/.venom/operations/*.json``) that are still running. This module
is the controller-side logic, plain Python: the shell command that prints those records
(``journal_command``), picking the operation of the task's model (``pick_operation``), and the
rate and ETA from successive samples (``ProgressTracker``) for a line such as::

    venom_model [gpu-1] org/model: install 45.2% 1.23 GB / 2.72 GB, 12.30 MB/s, ETA 2m01s
"""
from __future__ import annotations

import json
import shlex
import time

from ansible_collections.venom.models.plugins.module_utils.store.journal import RUNNING_STATUSES
from ansible_collections.venom.models.plugins.module_utils.store.quota import fmt_bytes
from ansible_collections.venom.models.plugins.module_utils.store.validation import model_key

RECORD_SEPARATOR = "\x1e"
RATE_WINDOW = 30.0  # seconds of samples the rate is computed over


def journal_command(models_dir: str) -> str:
    """A POSIX shell command printing each running operation record of ``models_dir``'s journal,
    each followed by a record separator line (finished records are skipped without being read
    whole: a journal keeps up to 200 of them)."""
    ops = models_dir.rstrip("/") + "/.venom/operations"
    quoted = shlex.quote(ops)
    if ops.startswith("~/"):  # the module expands "~" on the host: let the shell do the same
        quoted = '"$HOME"/' + shlex.quote(ops[2:])
    return (f"for f in {quoted}/*.json; do [ -f \"$f\" ] || continue; "
            "if grep -q '\"status\": *\"\\(in_progress\\|pending\\)\"' \"$f\"; then "
            f"cat \"$f\"; printf '\\n{RECORD_SEPARATOR}\\n'; fi; done; true")


def parse_records(stdout: str) -> list:
    """The records ``journal_command`` printed (unreadable ones, mid-write, are left out)."""
    out = []
    for chunk in stdout.split(RECORD_SEPARATOR):
        chunk = chunk.strip()
        if not chunk:
            continue
        try:
            rec = json.loads(chunk)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("status") in RUNNING_STATUSES:
            out.append(rec)
    return out


def _same_model(recorded: str | None, name: str, provider: str) -> bool:
    """The journal's (canonical) model name is the task's: the same under the provider's naming
    rule (``model_key``: ``llama3`` is ``llama3:latest`` for Ollama), ignoring case."""
    if not recorded:
        return False
    return model_key(recorded, provider).lower() == model_key(name, provider).lower()


def pick_operation(records: list, name: str, provider: str) -> dict | None:
    """The running operation of the task's model (the newest if several)."""
    mine = [r for r in records if _same_model(r.get("model"), name, provider)
            and (r.get("provider") or provider) == provider]
    mine.sort(key=lambda r: r.get("started_at") or "", reverse=True)
    return mine[0] if mine else None


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressTracker:
    """Samples of one operation's bytes over time; the line to print."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.samples: list = []  # (time, bytes_done)
        self.op_id = None

    def add(self, rec: dict) -> None:
        if rec.get("id") != self.op_id:  # another operation (a retry, the next step): start over
            self.op_id, self.samples = rec.get("id"), []
        now = self.clock()
        self.samples.append((now, int(rec.get("bytes_done") or 0)))
        recent = [s for s in self.samples if now - s[0] <= RATE_WINDOW]
        self.samples = recent if len(recent) >= 2 else self.samples[-2:]  # polls sparser than the window

    def rate(self) -> float | None:
        """Bytes per second over the window; None before two samples."""
        if len(self.samples) < 2 or self.samples[-1][0] <= self.samples[0][0]:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return max(0.0, (b1 - b0) / (t1 - t0))

    def line(self, rec: dict, host: str) -> str:
        done, total = int(rec.get("bytes_done") or 0), rec.get("bytes_total")
        head = f"venom_model [{host}] {rec.get('model')}: {rec.get('type') or 'operation'}"
        rate = self.rate()
        parts = []
        if total:
            parts.append(f"{float(rec.get('progress') or 100.0 * done / total):.1f}% "
                         f"{fmt_bytes(done)} / {fmt_bytes(total)}")
        else:
            parts.append(f"{fmt_bytes(done)} done")
        if rate is None:
            parts.append("rate measuring")
        else:
            parts.append(f"{fmt_bytes(rate)}/s")
            if total and rate > 0:
                parts.append(f"ETA {fmt_duration(max(0, int(total) - done) / rate)}")
            elif total:
                parts.append("ETA unknown (stalled)")
        return f"{head} {', '.join(parts)}"
