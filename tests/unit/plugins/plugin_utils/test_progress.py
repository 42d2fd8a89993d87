# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The progress lines of venom_model's action plugin: journal reading, operation choice, rate, ETA."""
from __future__ import annotations

import subprocess

from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.plugin_utils.progress import (
    ProgressTracker, fmt_duration, journal_command, parse_records, pick_operation)


def test_journal_command_prints_only_running_records(tmp_path):
    journal = Journal(str(tmp_path / "my models"))  # a space: the command quotes the path
    done = journal.start("install", "org/done", provider="huggingface", bytes_total=10)
    done.complete("ok")
    running = journal.start("install", "org/model", provider="huggingface", bytes_total=1000)
    running.update(bytes_done=250, force=True)
    out = subprocess.run(["sh", "-c", journal_command(str(tmp_path / "my models"))], capture_output=True, text=True,
                         check=True).stdout
    recs = parse_records(out)
    assert [r["id"] for r in recs] == [running.id]
    assert recs[0]["bytes_done"] == 250 and recs[0]["progress"] == 25.0


def test_journal_command_without_a_journal_prints_nothing(tmp_path):
    proc = subprocess.run(["sh", "-c", journal_command(str(tmp_path / "none"))], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and parse_records(proc.stdout) == []


def test_journal_command_expands_home():
    assert journal_command("~/models").startswith('for f in "$HOME"/')


def test_parse_records_skips_half_written_and_finished():
    out = '{"id": "a", "status": "in_progress"}\n\x1e\n{"id": "b", "sta\n\x1e\n{"id": "c", "status": "completed"}\n\x1e\n'
    assert [r["id"] for r in parse_records(out)] == ["a"]


def test_pick_operation_matches_the_tasks_model():
    recs = [{"id": "1", "model": "Org/Model", "provider": "huggingface", "started_at": "2026-01-01T00:00:00.000Z"},
            {"id": "2", "model": "org/model", "provider": "huggingface", "started_at": "2026-01-01T00:00:05.000Z"},
            {"id": "3", "model": "org/other", "provider": "huggingface", "started_at": "2026-01-01T00:00:09.000Z"},
            {"id": "4", "model": "llama3:latest", "provider": "ollama", "started_at": "2026-01-01T00:00:09.000Z"}]
    assert pick_operation(recs, "org/model", "huggingface")["id"] == "2"
    assert pick_operation(recs, "org/model", "local") is None
    assert pick_operation(recs, "llama3", "ollama")["id"] == "4"
    assert pick_operation(recs, "llama3:8b", "ollama") is None


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_and_eta_from_samples():
    clock = Clock()
    tracker = ProgressTracker(clock)
    rec = {"id": "op", "model": "org/m", "type": "install", "bytes_done": 0, "bytes_total": 20_000_000}
    tracker.add(rec)
    assert tracker.line(rec, "h1") == "venom_model [h1] org/m: install 0.0% 0 B / 20.00 MB, rate measuring"
    clock.now += 10
    rec = dict(rec, bytes_done=5_000_000, progress=25.0)
    tracker.add(rec)
    assert tracker.rate() == 500_000
    assert tracker.line(rec, "h1") == "venom_model [h1] org/m: install 25.0% 5.00 MB / 20.00 MB, 500.00 kB/s, ETA 30s"
    clock.now += 10  # stalled
    tracker.add(rec)
    clock.now += 31  # the window forgets the moving part: stalled
    tracker.add(rec)
    assert tracker.line(rec, "h1").endswith("0 B/s, ETA unknown (stalled)")


def test_a_new_operation_restarts_the_rate():
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.add({"id": "a", "bytes_done": 0})
    clock.now += 1
    tracker.add({"id": "a", "bytes_done": 1000})
    tracker.add({"id": "b", "bytes_done": 0})
    assert tracker.rate() is None


def test_fmt_duration():
    assert [fmt_duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]
