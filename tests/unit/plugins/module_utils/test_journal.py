# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.store import journal
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.procinfo import process_identity
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


# --- what a record holds, and what readers skip (found by mutation testing, docs/testing.md) ----

def _dead_owner():
    """The identity of a process that no longer runs: this pid, but another start time."""
    return dict(process_identity(), pid_start=-1)


def _write_record(j, name, **rec):
    j.paths.ensure()
    with open(os.path.join(j.dir, name), "w", encoding="utf-8") as fh:
        json.dump(rec, fh)


def test_a_new_record_holds_exactly_the_documented_fields(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "org/m", provider="huggingface", details={"revision": "main"})
    rec = j.get(op.id)
    assert set(rec) == {"id", "type", "model", "provider", "status", "progress", "bytes_done", "bytes_total",
                        "message", "error", "started_at", "host", "owner", "details"}
    assert (rec["provider"], rec["bytes_done"], rec["bytes_total"], rec["message"]) == ("huggingface", 0, None, "")
    assert rec["host"] == socket.gethostname() and rec["details"] == {"revision": "main"}
    assert rec["owner"]["pid"] == os.getpid()
    assert "details" not in j.get(j.start("verify", "org/m").id), "no details given: no field"


def test_an_unknown_operation_type_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(ValidationError) as err:
        Journal(str(tmp_path)).start("download", "org/m")
    assert err.value.msg == "Unknown operation type 'download'."
    assert err.value.fix.startswith("Use one of install, remove, verify,") and "rebuild" in err.value.fix


def test_operation_ids_up_to_64_characters_are_accepted_65_are_not(tmp_path):
    j = Journal(str(tmp_path))
    assert j.path_of("a" * 64) == os.path.join(j.dir, "a" * 64 + ".json")
    for bad in ("a" * 65, "", 5, None, "ABC", "a/b"):
        with pytest.raises(ValidationError) as err:
            j.path_of(bad)
        assert err.value.msg == f"{bad!r} is not an operation id."
        assert "'operation.id'" in err.value.fix


def test_an_unknown_operation_is_reported_naming_it_and_the_directory(tmp_path):
    j = Journal(str(tmp_path))
    with pytest.raises(NotFoundError) as err:
        j.get("abc-123")
    assert err.value.msg == f"There is no operation abc-123 in {j.dir}."


def test_every_secret_is_masked_wherever_it_appears_longest_first(tmp_path):
    # "zzzz" is inside "xzzzzz": masking the shorter first would leave the 'x' and a 'z' in clear
    j = Journal(str(tmp_path), secrets=["zzzz", "xzzzzz", "abc", None, 7])
    j.add_secret("tok-1234")
    details = {"env": ["HF_TOKEN=tok-1234"], "nested": {"key": "zzzz"}}
    op = j.start("install", "org/m", message="token xzzzzz and zzzz", details=details)
    op.fail("failed with xzzzzz")
    text = open(j.path_of(op.id), encoding="utf-8").read()
    rec = j.get(op.id)
    assert rec["message"] == "token ******** and ********" and rec["error"] == "failed with ********"
    assert rec["details"] == {"env": ["HF_TOKEN=********"], "nested": {"key": "********"}}
    assert "zzzz" not in text and "tok-1234" not in text
    assert j.secrets == {"zzzz", "xzzzzz", "tok-1234"}, "shorter values (and non-strings) are no secrets"


def test_a_secret_of_exactly_the_minimum_length_is_masked(tmp_path):
    j = Journal(str(tmp_path), secrets=["abcd", "xyz"])
    op = j.start("install", "m", message="abcd xyz")
    assert j.get(op.id)["message"] == "******** xyz"


def test_without_secrets_records_are_written_as_given(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "m", message="abcd", details={"list": [1, "two"]})
    rec = j.get(op.id)
    assert rec["message"] == "abcd" and rec["details"] == {"list": [1, "two"]}


def test_a_full_disk_skips_the_journal_but_not_the_operation(tmp_path, monkeypatch):
    j = Journal(str(tmp_path))
    op = j.start("install", "m")
    for code in (errno.ENOSPC, errno.EDQUOT):
        def full(*_a, _code=code, **_k):
            raise OSError(_code, os.strerror(_code))
        monkeypatch.setattr(journal, "atomic_write_json", full)
        op.update(bytes_done=5, force=True)
        assert op.record["journal_skipped"] == "disk full"
        op.record.pop("journal_skipped")

    def denied(*_a, **_k):
        raise OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(journal, "atomic_write_json", denied)
    with pytest.raises(OSError):
        op.complete()


def test_state_changes_are_written_durably_progress_is_not(tmp_path, monkeypatch):
    j = Journal(str(tmp_path))
    writes = []
    real = journal.atomic_write_json

    def spy(path, obj, mode=0o644, durable=True):
        writes.append((obj["status"], durable, mode))
        real(path, obj, mode=mode, durable=durable)
    monkeypatch.setattr(journal, "atomic_write_json", spy)
    op = j.start("install", "m", bytes_total=10)
    op.update(bytes_done=5, force=True)
    op.complete()
    assert writes == [("in_progress", True, 0o644), ("in_progress", False, 0o644), ("completed", True, 0o644)]


def test_explicit_progress_wins_over_the_byte_counts(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "m", bytes_total=100)
    op.update(progress=50, bytes_done=10, force=True)
    assert j.get(op.id)["progress"] == 50.0


def test_a_late_update_does_not_reopen_a_finished_operation(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "m")
    op.fail("boom")
    op.update(progress=10, force=True)
    assert j.get(op.id)["status"] == "failed"


def test_an_interrupted_operation_keeps_the_error_it_already_had(tmp_path):
    j = Journal(str(tmp_path))
    _write_record(j, "a.json", id="a", started_at="2026-01-01T00:00:00.000Z", status="in_progress",
                  owner=_dead_owner(), error="mirror unreachable")
    _write_record(j, "b.json", id="b", started_at="2026-01-01T00:00:01.000Z", status="pending")
    a, b = j.get("a"), j.get("b")
    assert a["status"] == "failed" and a["interrupted"] is True and a["error"] == "mirror unreachable"
    assert b["status"] == "failed" and b["error"].startswith("interrupted: the process None that ran"), \
        "a record without an owner is an orphan too"


def test_readers_skip_files_that_are_not_operation_records(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "m")
    valid = dict(id="x", started_at="2026-01-01T00:00:00.000Z", status="completed")
    _write_record(j, ".tmp-x.json", **valid)            # an atomic write in flight
    _write_record(j, "x.json.bak", **valid)              # not a record file
    _write_record(j, "no-id.json", started_at="2026-01-01T00:00:00.000Z", status="completed")
    _write_record(j, "no-start.json", id="y", status="completed")
    with open(os.path.join(j.dir, "list.json"), "w", encoding="utf-8") as fh:
        json.dump(["id", "started_at"], fh)
    assert [r["id"] for r in j.list()] == [op.id]


def test_pruning_keeps_the_most_recently_finished_and_counts_what_it_removed(tmp_path, monkeypatch):
    seconds = iter(range(60))   # a clock that moves one second per reading: no two timestamps tie
    monkeypatch.setattr(journal, "iso", lambda: f"2026-01-01T00:00:{next(seconds):02d}.000Z")
    j = Journal(str(tmp_path), history_limit=100)
    first = j.start("install", "first")
    second = j.start("install", "second")
    failed = j.start("verify", "third")
    second.complete()
    failed.fail("bad")
    first.complete()   # started first, finished last
    _write_record(j, "d.json", id="d", started_at="2020-01-01T00:00:00.000Z", status="in_progress",
                  owner=_dead_owner())   # interrupted long ago: history, ordered by its start
    j.history_limit = 1
    assert j.prune() == 3
    assert [r["id"] for r in j.list()] == [first.id]
    assert j.prune() == 0
