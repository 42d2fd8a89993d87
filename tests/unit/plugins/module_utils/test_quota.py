# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import QuotaError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.store.quota import fmt_bytes, free_bytes, plan, require_fit

GB = 10 ** 9
MODELS = [{"name": "big/one", "size_bytes": 30 * GB}, {"name": "small/one", "size_bytes": 12 * GB}]


def test_fits(tmp_path):
    rep = plan(MODELS, 5 * GB, quota_gb=50, reserve_gb=2, path=str(tmp_path), disk_free=100 * GB)
    assert rep["fits"] and rep["quota_free_after_bytes"] == 3 * GB and rep["disk_free_after_bytes"] == 95 * GB
    require_fit(rep, "new/model", MODELS)


def test_quota_refusal_says_needed_free_and_what_to_do(tmp_path):
    rep = plan(MODELS, 10 * GB, quota_gb=50, reserve_gb=2, path=str(tmp_path), disk_free=100 * GB)
    assert not rep["fits_quota"]
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "new/model", MODELS)
    msg = str(err.value)
    assert "needs 10.00 GB" in msg and "8.00 GB left" in msg and "Nothing was downloaded" in msg
    assert "big/one (30.00 GB)" in msg and "quota_gb to at least 52.00" in msg


def test_disk_refusal(tmp_path):
    rep = plan([], 10 * GB, quota_gb=50, reserve_gb=2, path=str(tmp_path), disk_free=11 * GB)
    assert rep["fits_quota"] and not rep["fits_disk"]
    with pytest.raises(QuotaError) as err:
        require_fit(rep, "m", [])
    assert "11.00 GB free" in str(err.value) and "Free at least 1.00 GB" in str(err.value)


def test_replacement_counts_during_download(tmp_path):
    models = [{"name": "m", "size_bytes": 40 * GB}]
    rep = plan(models, 20 * GB, quota_gb=50, reserve_gb=0, path=str(tmp_path), replaced_bytes=40 * GB, disk_free=10 ** 15)
    assert not rep["fits_quota"], "old and new revisions coexist until the switch"
    assert rep["used_after_bytes"] == 20 * GB


def test_bad_numbers(tmp_path):
    with pytest.raises(ValidationError):
        plan([], 1, quota_gb=-1, reserve_gb=0, path=str(tmp_path))
    with pytest.raises(ValidationError):
        plan([], 1, quota_gb=float("nan"), reserve_gb=0, path=str(tmp_path))


def test_free_bytes_of_missing_path_uses_parent(tmp_path, monkeypatch):
    # the filesystem's free space moves while other processes write: ask a recorded statvfs
    asked = []

    class Stat:  # pylint: disable=too-few-public-methods
        f_bavail, f_frsize = 1000, 4096

    def statvfs(path):
        asked.append(path)
        return Stat()

    monkeypatch.setattr(os, "statvfs", statvfs)
    assert free_bytes(str(tmp_path / "not" / "yet")) == 4096 * 1000
    assert asked == [str(tmp_path)], "the nearest existing parent is asked"
    assert free_bytes(str(tmp_path)) == 4096 * 1000 and asked[-1] == str(tmp_path)


def test_fmt():
    assert fmt_bytes(0) == "0 B" and fmt_bytes(1500) == "1.50 kB" and fmt_bytes(2 * 10 ** 12) == "2.00 TB"
