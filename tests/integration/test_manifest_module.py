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


def test_valid_names_an_entry_whose_path_leaves_models_dir(tmp_path):
    """Issue 13 finding 1: local_path /etc made a 'valid' manifest; the next present 'repaired' into /etc."""
    _seed(tmp_path)
    import json  # pylint: disable=import-outside-toplevel
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["models"].append(dict(doc["models"][0], name="evil", local_path="/etc"))
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    out = run_task("venom.models.venom_manifest", {"models_dir": str(tmp_path)}).task()
    assert out["failed"] and out["valid"] is False and out["problem_entry"] == "evil", out
    assert "'local_path'" in out["msg"] and "not inside" in out["msg"]
    src = tmp_path.parent / (tmp_path.name + "-src")
    src.mkdir()
    (src / "w").write_bytes(b"abc")
    out = run_task("venom.models.venom_model", {"name": "evil", "provider": "local", "source": str(src),
                                                "models_dir": str(tmp_path)}).task()
    assert out["failed"] and "/etc" in out["msg"], out


def test_rebuild_reports_what_it_could_not_restore(tmp_path):
    """Issue 13 finding 9: a model whose record is missing was dropped by a forced rebuild without a word."""
    _seed(tmp_path)
    d = tmp_path / "local" / "m2" / "0123456789ab"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"x" * 10)
    Manifest(str(tmp_path)).upsert(new_entry("m2", "local", size_bytes=12, local_path=str(d),
                                             files=[{"path": "config.json", "size": 2},
                                                    {"path": "model.safetensors", "size": 10}]))
    records = tmp_path / ".venom" / "records"
    [rec] = [p for p in records.iterdir() if "m2" in p.name]
    rec.unlink()
    out = run_task("venom.models.venom_manifest", {"models_dir": str(tmp_path), "state": "rebuilt", "force": True}).task()
    assert not out["failed"] and out["changed"], out
    assert out["restored"] == ["m1"]
    assert [(x["name"], x["provider"]) for x in out["lost"]] == [("m2", "local")]
    assert [x["path"] for x in out["unclaimed"]] == [str(d)]
    assert any("m2" in w for w in out.get("warnings", []))
    facts = run_task("venom.models.venom_model_facts", {"models_dir": str(tmp_path),
                                                        "gather_subset": ["discovered"]}).task()
    found = [x["path"] for x in facts["ansible_facts"]["venom_discovered"]]
    assert str(d) in found, facts
