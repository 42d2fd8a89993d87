# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_manifest through ansible-playbook: a damaged manifest is reported, never reset, and rebuilt."""
from __future__ import annotations

from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from tests.lib.ansible_run import run_task


def _seed(tmp_path):
    d = tmp_path / "local" / "m1"
    d.mkdir(parents=True)
    (d / "w").write_bytes(b"abc")
    Manifest(str(tmp_path)).upsert(new_entry("m1", "local", size_bytes=3, local_path=str(d),
                                             files=[{"path": "w", "size": 3}]))


def test_valid_rebuilt_check_real_idempotent(tmp_path):
    _seed(tmp_path)
    args = {"models_dir": str(tmp_path)}
    res = run_task("venom.models.venom_manifest", args)
    assert res.task()["changed"] is False and res.task()["models_count"] == 1
    res = run_task("venom.models.venom_manifest", dict(args, state="rebuilt"))
    assert res.task()["changed"] is False, "a valid manifest is not rebuilt without force"

    (tmp_path / "manifest.json").write_text('{"models": [], "updated_at": "2024-12-17T10:00:00"}')
    res = run_task("venom.models.venom_manifest", args)
    out = res.task()
    assert out["failed"] and "not written by venom.models" in out["msg"] and out["valid"] is False

    seq = []
    for check in (True, False, True, False):
        res = run_task("venom.models.venom_manifest", dict(args, state="rebuilt"), check=check, diff=True)
        out = res.task()
        assert not out["failed"], out
        seq.append(out["changed"])
        if out["changed"]:
            assert out["restored"] == ["m1"]
    assert seq == [True, True, False, False], "check mode predicts, then the rebuild sticks"
    assert Manifest(str(tmp_path)).get("m1")["status"] == "installed"
    kept = [p.name for p in tmp_path.iterdir() if p.name.startswith("manifest.json.broken-")]
    assert len(kept) == 1
