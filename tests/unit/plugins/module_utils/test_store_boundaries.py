# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The store at its boundaries: quota exactly full, a lock that must not wait, journals of long
operations, manifest entries the reader must refuse (found by mutation testing, docs/testing.md)."""
from __future__ import annotations

import datetime
import fcntl
import json
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import LockTimeout, ManifestError, QuotaError
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.locks import FileLock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from ansible_collections.venom.models.plugins.module_utils.store.quota import plan, require_fit
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
