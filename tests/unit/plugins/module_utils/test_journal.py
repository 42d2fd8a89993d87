# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.timeutil import parse_iso


def test_lifecycle_fields(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "org/m", provider="huggingface", message="resolving", bytes_total=1000)
    rec = j.get(op.id)
    assert rec["status"] == "in_progress" and rec["type"] == "install" and rec["model"] == "org/m"
    assert "finished_at" not in rec and "duration_seconds" not in rec, "absent, not null, while it runs"
    assert rec["error"] is None and rec["progress"] == 0.0
    op.update(bytes_done=250, force=True)
    rec = j.get(op.id)
    assert rec["bytes_done"] == 250 and rec["progress"] == 25.0
    op.complete("installed")
    rec = j.get(op.id)
    assert rec["status"] == "completed" and rec["progress"] == 100.0 and rec["bytes_done"] == 1000
    assert parse_iso(rec["finished_at"]) >= parse_iso(rec["started_at"])
    assert rec["duration_seconds"] >= 0


def test_failure_records_error(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("remove", "x")
    op.fail("disk on fire", message="removal failed")
    rec = j.get(op.id)
    assert rec["status"] == "failed" and rec["error"] == "disk on fire" and "duration_seconds" in rec


def test_progress_is_rate_limited_but_forced_writes_land(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "x", bytes_total=100)
    op.update(bytes_done=10, force=True)
    op.update(bytes_done=20)  # within the interval: not written yet
    assert j.get(op.id)["bytes_done"] == 10
    time.sleep(0.6)
    op.update(bytes_done=30)
    assert j.get(op.id)["bytes_done"] == 30


_RUNNER = r"""
import sys, time
sys.path[:0] = sys.argv[2:]
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
op = Journal(sys.argv[1]).start("install", "slow/model", bytes_total=100)
print(op.id, flush=True)
for i in range(100):
    op.update(bytes_done=i + 1, force=True)
    time.sleep(0.05)
time.sleep(60)
"""


def test_another_process_sees_progress_and_an_interrupted_operation(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, str(tmp_path)] + sys.path, stdout=subprocess.PIPE, text=True)
    op_id = proc.stdout.readline().strip()
    j = Journal(str(tmp_path))
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(seen) < 3:
        rec = j.get(op_id)
        assert rec["status"] == "in_progress" and "finished_at" not in rec
        seen.add(rec["bytes_done"])
        time.sleep(0.2)
    assert len(seen) >= 3, f"progress should move while the download runs, saw {seen}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rec = j.get(op_id)
    assert rec["status"] == "failed" and rec["interrupted"] is True
    assert "interrupted" in rec["error"] and str(proc.pid) in rec["error"]
    assert j.in_progress() == []


def test_history_is_bounded_and_newest_first(tmp_path):
    j = Journal(str(tmp_path), history_limit=5)
    ids = []
    for i in range(12):
        op = j.start("verify", f"m{i}")
        op.complete()
        ids.append(op.id)
    running = j.start("install", "still-running")
    recs = j.list()
    assert [r["id"] for r in recs[:1]] == [running.id]
    kept = [r["id"] for r in recs if r["status"] == "completed"]
    assert len(kept) == 5 and kept == list(reversed(ids))[:5]
    assert [r["id"] for r in j.list(limit=2)] == [running.id, ids[-1]]
    assert j.list(status="in_progress")[0]["id"] == running.id
    assert j.list(model="m11")[0]["id"] == ids[-1]


def test_bad_and_unknown_ids(tmp_path):
    j = Journal(str(tmp_path))
    with pytest.raises(ValidationError):
        j.get("../../etc/passwd")
    with pytest.raises(NotFoundError, match="rotated"):
        j.get("0" * 8 + "-0000-0000-0000-" + "0" * 12)


def test_journal_files_are_valid_json(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "x")
    with open(j.path_of(op.id), encoding="utf-8") as fh:
        assert json.load(fh)["id"] == op.id
