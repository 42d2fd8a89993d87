# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The store at its boundaries: quota exactly full, a lock that must not wait, journals of long
operations, manifest entries the reader must refuse (found by mutation testing, docs/testing.md)."""
from __future__ import annotations

import datetime
import fcntl
import os
import json
import socket
import stat
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import (
    LockTimeout, ManifestError, QuotaError, ValidationError, VenomError)
from ansible_collections.venom.models.plugins.module_utils.store import locks as locks_module
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.locks import FileLock, manifest_lock, model_lock, runtime_lock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from ansible_collections.venom.models.plugins.module_utils.store.quota import fmt_bytes, free_bytes, plan, require_fit
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    MAX_PATH_LENGTH, safe_join, validate_non_negative, validate_relative_file_path, validate_revision)
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso, utcnow

GB = 10 ** 9


# --- quota and disk: the limit itself is allowed, one byte past it is not ---------------------

def test_a_plan_that_exactly_fills_the_quota_fits(tmp_path):
    models = [{"name": "a/one", "size_bytes": 30 * GB}]
    rep = plan(models, 20 * GB, quota_gb=50, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)
    assert rep["fits_quota"] and rep["fits"]
    assert rep["quota_free_after_bytes"] == 0
    require_fit(rep, "b/two", models)   # does not raise


def test_one_byte_over_the_quota_is_refused(tmp_path):
    models = [{"name": "a/one", "size_bytes": 30 * GB}]
    rep = plan(models, 20 * GB + 1, quota_gb=50, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)
    assert not rep["fits_quota"] and not rep["fits"]
    assert rep["quota_free_after_bytes"] == -1
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "b/two", models)
    assert "raise quota_gb to at least 50.00" in err.value.fix


def test_a_download_that_leaves_exactly_the_reserve_fits(tmp_path):
    rep = plan([], 8 * GB, quota_gb=50, reserve_gb=2, path=str(tmp_path), disk_free=10 * GB)
    assert rep["fits_disk"] and rep["fits"] and rep["disk_free_after_bytes"] == 2 * GB
    rep = plan([], 8 * GB + 1, quota_gb=50, reserve_gb=2, path=str(tmp_path), disk_free=10 * GB)
    assert not rep["fits_disk"] and not rep["fits"]
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "m", [])
    assert "Free at least 1 B" in err.value.fix


def test_a_zero_quota_holds_nothing_but_an_empty_plan(tmp_path):
    assert plan([], 0, quota_gb=0, reserve_gb=0, path=str(tmp_path), disk_free=0)["fits"]
    assert not plan([], 1, quota_gb=0, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)["fits_quota"]


def test_replaced_bytes_are_freed_after_the_switch_not_before(tmp_path):
    models = [{"name": "m", "size_bytes": 20 * GB}]
    rep = plan(models, 30 * GB, quota_gb=50, reserve_gb=0, path=str(tmp_path), replaced_bytes=20 * GB,
               disk_free=40 * GB)
    assert rep["fits_quota"], "old (20) + new (30) exactly fill the quota while both exist"
    assert rep["used_after_bytes"] == 30 * GB and rep["quota_free_after_bytes"] == 20 * GB
    assert rep["disk_free_after_bytes"] == 30 * GB


def test_models_without_a_size_count_as_zero(tmp_path):
    rep = plan([{"name": "x", "size_bytes": None}, {"name": "y"}], GB, quota_gb=1, reserve_gb=0, path=str(tmp_path),
               disk_free=10 ** 15)
    assert rep["used_bytes"] == 0 and rep["fits_quota"]


# --- locks: timeout 0 means "try once" ---------------------------------------------------------

def test_a_lock_with_timeout_zero_fails_at_once_when_held(tmp_path):
    path = tmp_path / "locks" / "x.lock"
    path.parent.mkdir()
    with open(path, "w", encoding="utf-8") as held:
        held.write(json.dumps({"pid": 4242, "purpose": "other run"}))
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)   # another open file: flock excludes it like another process
        start = time.monotonic()
        with pytest.raises(LockTimeout) as err:
            FileLock(str(path), timeout=0, poll_interval=0.5).acquire()
        assert time.monotonic() - start < 0.4, "timeout 0 tries once and does not poll"
        assert "Timed out after 0s" in err.value.msg and "pid 4242" in err.value.msg


def test_a_free_lock_with_timeout_zero_is_taken(tmp_path):
    lock = FileLock(str(tmp_path / "locks" / "x.lock"), timeout=0, purpose="quick", operation_id="op-1")
    with lock:
        assert lock.locked
        info = json.loads(open(lock.path, encoding="utf-8").read())
        assert info["purpose"] == "quick" and info["operation_id"] == "op-1" and info["pid"] > 0
    assert not lock.locked


# --- journal: durations of long operations -----------------------------------------------------

@pytest.mark.parametrize("age", [datetime.timedelta(days=1, hours=2, seconds=5.5),
                                 datetime.timedelta(days=3),
                                 datetime.timedelta(seconds=86399)])
def test_duration_counts_whole_days(tmp_path, age):
    j = Journal(str(tmp_path))
    op = j.start("install", "org/m")
    op.record["started_at"] = iso(utcnow() - age)
    op.complete("done")
    got = j.get(op.id)["duration_seconds"]
    assert age.total_seconds() <= got < age.total_seconds() + 5


def test_a_failed_operation_has_its_duration_too(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "org/m")
    op.record["started_at"] = iso(utcnow() - datetime.timedelta(days=2))
    op.fail("boom")
    rec = j.get(op.id)
    assert rec["status"] == "failed" and 2 * 86400 <= rec["duration_seconds"] < 2 * 86400 + 5


# --- manifest: the reader refuses what it does not know ----------------------------------------

def _write_manifest(tmp_path, **overrides):
    m = Manifest(str(tmp_path))
    m.upsert(new_entry("org/m", "local", size_bytes=1, files=[{"path": "f", "size": 1}]))
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["models"][0].update(overrides)
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    return m


@pytest.mark.parametrize("field, value", [("status", "half-installed"), ("provider", "ftp"), ("runtime", "llamacpp"),
                                          ("size_bytes", -1)])
def test_the_reader_refuses_an_entry_it_does_not_know(tmp_path, field, value):
    m = _write_manifest(tmp_path, **{field: value})
    with pytest.raises(ManifestError) as err:
        m.load()
    assert "org/m" in err.value.msg and "models[0]" in err.value.msg


@pytest.mark.parametrize("field, value", [("status", "damaged"), ("runtime", None), ("size_bytes", 0)])
def test_the_reader_accepts_known_values_at_the_edge(tmp_path, field, value):
    m = _write_manifest(tmp_path, **{field: value})
    assert m.load()["models"][0][field] == value


# --- what a lock says about itself and its holder ----------------------------------------------

def test_model_and_runtime_locks_carry_their_name_purpose_timeout_and_operation(tmp_path):
    m = model_lock(str(tmp_path), "huggingface", "org/a", timeout=7, operation_id="op-9")
    assert os.path.basename(m.path).startswith("model-huggingface_org_a-") and m.path.endswith(".lock")
    assert (m.timeout, m.purpose, m.operation_id) == (7, "huggingface model org/a", "op-9")
    assert model_lock(str(tmp_path), "ollama", "x", purpose="repair").purpose == "repair"
    r = runtime_lock(str(tmp_path), "vllm", timeout=0, operation_id="op-8")
    assert os.path.basename(r.path).startswith("runtime-vllm-") and r.path.endswith(".lock")
    assert (r.timeout, r.purpose, r.operation_id) == (0, "runtime vllm", "op-8")
    assert runtime_lock(str(tmp_path), "vllm", purpose="restart").purpose == "restart"


def test_a_lock_file_that_says_nothing_useful_has_no_holder(tmp_path):
    lock = FileLock(str(tmp_path / "x.lock"))
    assert lock.holder() is None, "no file"
    for text in ("", "null", "[1, 2]", "{not json"):
        (tmp_path / "x.lock").write_text(text)
        assert lock.holder() is None, text


def test_a_timeout_without_a_readable_holder_still_explains_itself(tmp_path):
    path = tmp_path / "x.lock"
    with open(path, "w", encoding="utf-8") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)   # holder wrote nothing (yet)
        with pytest.raises(LockTimeout) as err:
            FileLock(str(path), timeout=0).acquire()
    assert err.value.msg.endswith(f"waiting for the lock {path}.") and err.value.details["holder"] == {}


def test_a_timeout_names_every_known_fact_of_the_holder(tmp_path):
    path = tmp_path / "x.lock"
    who = {"pid": 11, "host": "gpu-7", "operation_id": "op-5", "purpose": "install", "since": "2026-01-01T00:00:00Z"}
    with open(path, "w", encoding="utf-8") as held:
        held.write(json.dumps(who))
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LockTimeout) as err:
            FileLock(str(path), timeout=0).acquire()
    assert err.value.msg.endswith("held by pid 11, host gpu-7, operation_id op-5, purpose install, "
                                  "since 2026-01-01T00:00:00Z.")
    assert err.value.details["holder"] == who


# --- quota: what the numbers and the refusal say -----------------------------------------------

@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1.00 kB"), (999_999, "1000.00 kB"),
                                     (10 ** 6, "1.00 MB"), (10 ** 9 - 1, "1000.00 MB"), (10 ** 9, "1.00 GB"),
                                     (10 ** 12, "1.00 TB"), (-2500, "-2.50 kB")])
def test_sizes_are_shown_in_decimal_units_switching_at_each_power_of_1000(n, text):
    assert fmt_bytes(n) == text


@pytest.mark.parametrize("field", ["quota_gb", "reserve_gb"])
def test_a_negative_limit_is_refused_naming_the_option(tmp_path, field):
    limits = {"quota_gb": 1, "reserve_gb": 1, field: -0.5}
    with pytest.raises(ValidationError) as err:
        plan([], 0, path=str(tmp_path), disk_free=0, **limits)
    assert field in str(err.value)


def test_without_a_measured_free_space_the_filesystem_is_asked(tmp_path):
    rep = plan([], 0, quota_gb=1, reserve_gb=0, path=str(tmp_path / "not" / "yet"))
    assert abs(rep["disk_free_bytes"] - free_bytes(str(tmp_path))) < 64 * 1024 * 1024


def test_the_quota_refusal_lists_the_three_largest_models_largest_first(tmp_path):
    models = [{"name": f"m{i}", "size_bytes": s and s * GB} for i, s in enumerate((1, 9, 3, 7, None))]
    rep = plan(models, 40 * GB, quota_gb=50, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "new", models)
    assert "(largest: m1 (9.00 GB), m3 (7.00 GB), m2 (3.00 GB)) or raise quota_gb to at least 60.00" in err.value.fix
    assert "has 30.00 GB left (20.00 GB used by 5 model(s))" in err.value.msg
    assert err.value.details["fits_quota"] is False and err.value.details["planned_bytes"] == 40 * GB


def test_an_overfull_quota_shows_nothing_left_not_a_negative_amount(tmp_path):
    models = [{"name": "m", "size_bytes": 60 * GB}]
    rep = plan(models, GB, quota_gb=50, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "new", models)
    assert "has 0 B left" in err.value.msg


def test_with_no_models_the_only_fix_is_a_larger_quota(tmp_path):
    rep = plan([], 2 * GB, quota_gb=1, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "new", [])
    assert err.value.fix == "raise quota_gb to at least 2.00."


def test_the_disk_refusal_carries_the_plan(tmp_path):
    rep = plan([], 5 * GB, quota_gb=50, reserve_gb=1, path=str(tmp_path), disk_free=5 * GB)
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "m", [])
    assert err.value.details["fits_disk"] is False and err.value.details["disk_free_bytes"] == 5 * GB
    assert "plus the 1.00 GB reserve (6.00 GB)" in err.value.msg


# --- manifest: check and rebuild report what they found ----------------------------------------

def _with_files(tmp_path, name):
    d = tmp_path / "local" / name
    d.mkdir(parents=True)
    (d / "w.bin").write_bytes(b"weights")
    return new_entry(name, "local", size_bytes=7, local_path=str(d), files=[{"path": "w.bin", "size": 7}])


def test_check_reports_validity_error_and_model_count(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_with_files(tmp_path, "a"))
    m.upsert(_with_files(tmp_path, "b"))
    assert m.check() == {"valid": True, "error": None, "models": 2, "entry": None}
    (tmp_path / "manifest.json").write_text("[]")
    res = m.check()
    assert res["valid"] is False and res["models"] is None and "not an object" in res["error"]


def test_rebuild_skips_every_bad_or_duplicate_record_and_reads_on(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_with_files(tmp_path, "a"))
    m.upsert(_with_files(tmp_path, "z"))
    records = tmp_path / ".venom" / "records"
    first = sorted(records.iterdir())[0]
    (records / "aaa-broken.json").write_text("{bad")
    (records / "aab-unknown.json").write_text(json.dumps(dict(json.loads(first.read_text()), status="weird")))
    (records / "zzz-copy.json").write_text(first.read_text())
    (records / ".hidden.json").write_text("{bad")
    (records / "notes.txt").write_text("not a record")
    plan_ = m.plan_rebuild()
    assert sorted(e["name"] for e in plan_["restored"]) == ["a", "z"], "a bad record does not stop the scan"
    reasons = {os.path.basename(s["record"]): s["reason"] for s in plan_["skipped"]}
    assert set(reasons) == {"aaa-broken.json", "aab-unknown.json", "zzz-copy.json"}
    assert reasons["zzz-copy.json"] == "duplicate record"
    assert "unknown status 'weird'" in reasons["aab-unknown.json"] and "aab-unknown.json" in reasons["aab-unknown.json"]


def test_rebuild_of_an_empty_directory_restores_nothing(tmp_path):
    assert Manifest(str(tmp_path)).plan_rebuild() == {"restored": [], "damaged": [], "skipped": [], "lost": [], "unclaimed": []}


# --- validation: every limit at the limit and one past it ----------------------------------------

def test_a_revision_at_the_length_limit_is_accepted_one_past_is_refused():
    assert validate_revision("r" * 256) == "r" * 256
    with pytest.raises(ValidationError) as err:
        validate_revision("r" * 257)
    assert "revision" in err.value.msg and "257 characters, at most 256" in err.value.msg


@pytest.mark.parametrize("rev, why", [("a//b", "not a valid git reference"), ("main/", "not a valid git reference"),
                                      ("a..b", "not a valid git reference"), ("/main", "not a valid git reference"),
                                      ("-x", "characters that git references do not allow"),
                                      ("x.lock", "characters that git references do not allow")])
def test_a_bad_revision_is_refused_naming_it_and_the_fix(rev, why):
    with pytest.raises(ValidationError) as err:
        validate_revision(rev)
    assert err.value.msg.startswith(f"revision {rev!r} ") and why in err.value.msg
    assert err.value.fix == "Give a branch, a tag or a 40-character commit id."


def test_a_file_path_at_the_length_limits_is_accepted_one_past_is_refused():
    longest = ("d" * 200 + "/") * 20 + "d" * (MAX_PATH_LENGTH - 201 * 20)
    assert len(longest) == MAX_PATH_LENGTH and validate_relative_file_path(longest) == longest
    for bad, why in ((longest + "x", f"longer than {MAX_PATH_LENGTH} characters"),
                     ("d" * 256, "component longer than 255 bytes"),
                     ("é" * 128, "component longer than 255 bytes")):   # 256 bytes in UTF-8
        with pytest.raises(ValidationError) as err:
            validate_relative_file_path(bad)
        assert why in err.value.msg and err.value.msg.startswith("file path ")
        assert err.value.fix == "Exclude it with ignore_patterns."
    assert validate_relative_file_path("é" * 127 + "e") == "é" * 127 + "e"   # 255 bytes


@pytest.mark.parametrize("path, ok", [("a b.bin", True), ("a\x1f.bin", False), ("a\x7f.bin", False),
                                      ("a\x80.bin", True), ("a~.bin", True), ("a\\b.bin", False)])
def test_file_paths_refuse_control_characters_and_backslashes_only(path, ok):
    if ok:
        assert validate_relative_file_path(path) == path
    else:
        with pytest.raises(ValidationError) as err:
            validate_relative_file_path(path)
        assert "control character or a backslash" in err.value.msg


@pytest.mark.parametrize("path", ["", None, 3])
def test_an_empty_or_missing_file_path_is_refused_as_such(path):
    with pytest.raises(ValidationError) as err:
        validate_relative_file_path(path)
    assert err.value.msg == f"file path {path!r} is empty or not a string."
    assert err.value.fix == "Report the repository to its owner."


@pytest.mark.parametrize("part", ["", "/etc", "a\x00b", None])
def test_safe_join_refuses_parts_that_are_not_relative_names(tmp_path, part):
    with pytest.raises(ValidationError) as err:
        safe_join(str(tmp_path), "ok", part)
    assert err.value.msg == f"Refusing to build a path from {part!r} under {str(tmp_path)!r}."
    assert err.value.fix == "Path parts must be non-empty relative strings."


def test_safe_join_names_where_a_symlink_leads(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "out").symlink_to(tmp_path)
    with pytest.raises(ValidationError) as err:
        safe_join(str(tmp_path / "base"), "out", "x")
    assert f"resolves to {str(tmp_path / 'x')!r}, outside {str(tmp_path / 'base')!r}" in err.value.msg
    assert "symbolic link" in err.value.fix
    assert safe_join(str(tmp_path / "base"), "in", "x") == str(tmp_path / "base" / "in" / "x")


@pytest.mark.parametrize("value", [True, "1", None, float("nan"), -1e-9])
def test_a_limit_that_is_not_a_number_of_zero_or_more_is_refused(value):
    with pytest.raises(ValidationError) as err:
        validate_non_negative(value, "reserve_gb")
    assert err.value.msg == f"reserve_gb must be a number >= 0, got {value!r}."
    assert err.value.fix == "Set reserve_gb to 0 or more."


@pytest.mark.parametrize("value", [0, 0.0, 1, 10 ** 6])
def test_zero_and_large_limits_are_accepted(value):
    assert validate_non_negative(value, "quota_gb") == float(value)


# --- journal: what a reader sees of an operation ----------------------------------------------

def test_messages_results_and_totals_are_recorded_at_each_step(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "org/m", message="resolving")
    op.start("starting again")
    assert j.get(op.id)["message"] == "starting again"
    op.update(bytes_total=3000, bytes_done=1000, message="downloading", force=True)
    rec = j.get(op.id)
    assert (rec["bytes_total"], rec["bytes_done"], rec["progress"], rec["message"]) == (3000, 1000, 33.33, "downloading")
    op.update(force=True)
    assert j.get(op.id)["message"] == "downloading", "no message given: the last one stays"
    assert oct(os.stat(j.path_of(op.id)).st_mode & 0o777) == "0o644", "readable by the facts module"
    op.complete("installed", result={"size": 3000})
    rec = j.get(op.id)
    assert rec["message"] == "installed" and rec["result"] == {"size": 3000} and rec["bytes_done"] == 3000
    assert j.in_progress() == []


def test_a_completion_without_message_keeps_the_last_one(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("verify", "org/m", message="hashing")
    op.complete()
    rec = j.get(op.id)
    assert rec["message"] == "hashing" and "result" not in rec
    op2 = j.start("verify", "org/m", message="hashing")
    op2.fail("bad disk", message="verify failed")
    assert j.get(op2.id)["message"] == "verify failed"


@pytest.mark.parametrize("done, total, progress", [(0, 7, 0.0), (1, 3, 33.33), (7, 7, 100.0), (9, 7, 100.0)])
def test_progress_is_a_percentage_clamped_and_rounded(tmp_path, done, total, progress):
    j = Journal(str(tmp_path))
    op = j.start("install", "m", bytes_total=total)
    op.update(bytes_done=done, force=True)
    assert j.get(op.id)["progress"] == progress


def test_explicit_progress_is_clamped_too(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "m")
    for given_, stored in ((-5, 0.0), (0.5, 0.5), (12.345, 12.35), (250, 100.0)):
        op.update(progress=given_, force=True)
        assert j.get(op.id)["progress"] == stored


def test_durations_keep_milliseconds(tmp_path):
    j = Journal(str(tmp_path))
    op = j.start("install", "m")
    op.record["started_at"] = iso(utcnow() - datetime.timedelta(seconds=2, milliseconds=345))
    op.complete()
    got = j.get(op.id)["duration_seconds"]
    assert 2.345 <= got < 7 and round(got, 3) == got, "seconds with the milliseconds of the timestamps"


def test_in_progress_lists_running_operations_and_list_limits(tmp_path):
    j = Journal(str(tmp_path))
    running = j.start("install", "a")
    done = j.start("remove", "b")
    done.complete()
    assert [r["id"] for r in j.in_progress()] == [running.id]
    assert j.list(limit=0) == []
    assert len(j.list(limit=1)) == 1 and len(j.list()) == 2
    assert [r["id"] for r in j.list(status="completed")] == [done.id]
    assert [r["id"] for r in j.list(model="a")] == [running.id]


def test_a_new_lock_is_not_held_and_a_taken_one_says_who_and_since_when(tmp_path):
    lock = manifest_lock(str(tmp_path), timeout=3)
    assert not lock.locked
    assert lock.path == str(tmp_path / ".venom" / "locks" / "manifest.lock")
    assert (lock.timeout, lock.purpose) == (3, "manifest update")
    os.umask(old := os.umask(0))
    with lock:
        info = lock.holder()
        assert info["purpose"] == "manifest update" and info["since"].endswith("Z")
        assert os.stat(lock.path).st_mode & 0o777 == 0o640 & ~old
    with pytest.raises(VenomError) as err, FileLock(lock.path) as again:
        again.acquire()
    assert err.value.fix == "This is a bug in venom.models; please report it."


def test_a_model_without_a_size_is_listed_as_zero_bytes(tmp_path):
    models = [{"name": "nosize", "size_bytes": None}]
    rep = plan(models, 2 * GB, quota_gb=1, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "new", models)
    assert "(largest: nosize (0 B))" in err.value.fix


# --- locks: the second round of survivors (docs/testing.md, third round) -----------------------

def test_a_lock_records_its_host_and_an_empty_purpose_when_none_is_given(tmp_path):
    lock = FileLock(str(tmp_path / "locks" / "x.lock"))
    with lock:
        info = lock.holder()
    assert info["host"] == socket.gethostname() and info["purpose"] == "" and info["operation_id"] is None


def test_a_waiter_polls_every_50_ms_by_default(tmp_path, monkeypatch):
    path = tmp_path / "x.lock"
    naps = []
    monkeypatch.setattr(locks_module.time, "sleep", naps.append)
    with open(path, "w", encoding="utf-8") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LockTimeout):
            FileLock(str(path), timeout=0.2).acquire()
    assert naps and set(naps) == {0.05}


def test_a_timeout_of_zero_never_sleeps_even_on_a_clock_that_has_not_moved(tmp_path, monkeypatch):
    path = tmp_path / "x.lock"
    clock = [1000.0]
    naps = []

    def nap(seconds):
        naps.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(locks_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(locks_module.time, "sleep", nap)
    with open(path, "w", encoding="utf-8") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LockTimeout):
            FileLock(str(path), timeout=0).acquire()
        assert naps == [], "the deadline is reached the moment it is set"
        with pytest.raises(LockTimeout):
            FileLock(str(path), timeout=0.5, poll_interval=0.25).acquire()
    assert naps == [0.25, 0.25], "a 0.5 s wait on a clock moved only by the waits ends exactly at 0.5 s"


def test_the_locks_directory_is_created_private_to_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        with FileLock(str(tmp_path / ".venom" / "locks" / "x.lock")) as lock:
            assert stat.S_IMODE(os.stat(os.path.dirname(lock.path)).st_mode) == 0o750
            assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_lock_file_or_locks_directory_replaced_by_a_link_is_refused_by_name(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".venom").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / ".venom" / "locks")
    with pytest.raises(ValidationError) as err:
        FileLock(str(tmp_path / ".venom" / "locks" / "x.lock")).acquire()
    assert err.value.msg.startswith("The state directory ") and "symbolic link" in err.value.msg
    (tmp_path / "locks").mkdir()
    os.symlink(tmp_path / "elsewhere" / "target", tmp_path / "locks" / "y.lock")
    with pytest.raises(ValidationError) as err:
        FileLock(str(tmp_path / "locks" / "y.lock")).acquire()
    assert err.value.msg.startswith("The lock file ") and "symbolic link" in err.value.msg
    assert not (tmp_path / "elsewhere" / "target").exists()


def _flock_that_lets_the_holder_release_first(monkeypatch, path, replace):
    """The previous holder releases (removes its file; a third process may create a new one) between
    our open and our flock: the file we lock is then no longer the lock."""
    real = fcntl.flock
    raced = []

    def flock(fd, op):
        if not raced and op & fcntl.LOCK_EX:
            raced.append(fd)
            os.unlink(path)
            if replace:
                with open(path, "w", encoding="utf-8") as new:
                    new.write("{}")
        return real(fd, op)
    monkeypatch.setattr(locks_module.fcntl, "flock", flock)
    return raced


@pytest.mark.parametrize("replace", [False, True], ids=["removed", "replaced"])
def test_a_lock_file_removed_by_its_holder_before_our_flock_is_not_trusted(tmp_path, monkeypatch, replace):
    path = tmp_path / "x.lock"
    path.write_text("{}")
    raced = _flock_that_lets_the_holder_release_first(monkeypatch, path, replace)
    lock = FileLock(str(path), timeout=1)
    with lock:
        assert raced, "the race was played"
        assert lock.locked and os.path.samestat(os.fstat(lock._fd), os.stat(path))   # pylint: disable=protected-access
        assert lock.holder()["pid"] == os.getpid()
    with pytest.raises(OSError):
        os.fstat(raced[0])   # the descriptor of the stale file was closed, not leaked


def test_a_holder_record_is_read_up_to_64_kib_and_not_one_byte_more(tmp_path):
    path = tmp_path / "x.lock"
    lock = FileLock(str(path))
    head = '{"pid": 7, "pad": "'
    for size, readable in ((64 * 1024, True), (64 * 1024 + 1, False)):
        path.write_text(head + "x" * (size - len(head) - 2) + '"}')
        assert path.stat().st_size == size
        assert (lock.holder() is not None) is readable, size


# --- quota: which value a refusal names ---------------------------------------------------------

@pytest.mark.parametrize("field", ["quota_gb", "reserve_gb"])
def test_a_bad_limit_is_refused_naming_the_option_as_a_word(tmp_path, field):
    limits = {"quota_gb": 1, "reserve_gb": 1, field: -0.5}
    with pytest.raises(ValidationError) as err:
        plan([], 0, path=str(tmp_path), disk_free=0, **limits)
    assert err.value.msg.startswith(f"{field} must be")


def test_a_bad_recorded_size_is_refused_naming_the_model_or_the_replaced_version(tmp_path):
    with pytest.raises(ValidationError) as err:
        plan([{"name": "org/m", "size_bytes": -3}], 0, quota_gb=1, reserve_gb=0, path=str(tmp_path), disk_free=0)
    assert "the size of org/m" in err.value.msg
    with pytest.raises(ValidationError) as err:
        plan([], 0, quota_gb=1, reserve_gb=0, path=str(tmp_path), disk_free=0, replaced_bytes="12")
    assert "the size of the replaced version" in err.value.msg


def test_models_without_a_size_are_listed_after_those_with_one_byte(tmp_path):
    models = [{"name": "sizeless", "size_bytes": None}, {"name": "tiny", "size_bytes": 1}]
    rep = plan(models, 2 * GB, quota_gb=1, reserve_gb=0, path=str(tmp_path), disk_free=10 ** 15)
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "new", models)
    assert "(largest: tiny (1 B), sizeless (0 B))" in err.value.fix
