# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_manifest's decisions (store.manifest_state), without Ansible: check, rebuild when needed."""
from __future__ import annotations

import json
import os

from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.manifest_state import ensure_manifest
from tests.unit.plugins.module_utils.test_manifest import _installed


def _store(tmp_path) -> Manifest:
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "good"))
    m.upsert(_installed(tmp_path, "gone"))
    (tmp_path / "local" / "gone" / "w.bin").unlink()
    return m


def test_valid_is_a_check_that_changes_nothing(tmp_path):
    m = _store(tmp_path)
    assert ensure_manifest(m, "valid") == {"changed": False, "valid": True, "warnings": [], "models_count": 2}
    (tmp_path / "manifest.json").write_bytes(b"{garbage")
    res = ensure_manifest(m, "valid")
    assert res["valid"] is False and res["changed"] is False and "models_count" not in res
    assert res["problem"] and (tmp_path / "manifest.json").read_bytes() == b"{garbage"


def test_rebuilt_only_when_needed_or_forced(tmp_path):
    m = _store(tmp_path)
    assert ensure_manifest(m, "rebuilt") == {"changed": False, "valid": True, "warnings": [], "models_count": 2}
    forced = ensure_manifest(m, "rebuilt", force=True, check_mode=True)
    assert forced["changed"] is True and "moved_aside" not in forced
    assert forced["restored"] == ["good"] and forced["damaged"] == ["gone"] and forced["models_count"] == 2
    assert forced["diff"] == {"before": {"valid": True, "models": 2}, "after": {"valid": True, "models": ["gone", "good"]}}
    assert not [n for n in os.listdir(tmp_path) if n.startswith("manifest.json.broken")], "check mode keeps the file"


def test_a_missing_manifest_with_records_is_rebuilt(tmp_path):
    m = _store(tmp_path)
    (tmp_path / "manifest.json").unlink()
    res = ensure_manifest(m, "rebuilt")
    assert res["changed"] is True and res["moved_aside"] is None
    assert {e["name"]: e["status"] for e in m.models()} == {"good": "installed", "gone": "damaged"}
    assert ensure_manifest(m, "rebuilt")["changed"] is False, "the second run changes nothing"


def test_a_broken_manifest_is_rebuilt_and_kept_aside_with_warnings(tmp_path):
    m = _store(tmp_path)
    stray = tmp_path / "huggingface" / "org" / "stray" / ("a" * 40)
    stray.mkdir(parents=True)
    (stray / "model.safetensors").write_bytes(b"x" * 8)
    (tmp_path / "manifest.json").write_bytes(b"{garbage")
    res = ensure_manifest(m, "rebuilt")
    assert res["valid"] is False and res["changed"] is True and res["problem"]
    with open(res["moved_aside"], "rb") as fh:
        assert fh.read() == b"{garbage"
    assert res["unclaimed"] and any("stray" in w and "no manifest entry claims" in w for w in res["warnings"])


def _entry_problem(tmp_path, status="wrong-status"):
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["models"][0]["status"] = status
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    return doc["models"][0]["name"]


def test_an_invalid_entry_is_named_in_the_result(tmp_path):
    m = _store(tmp_path)
    name = _entry_problem(tmp_path)
    res = ensure_manifest(m, "valid")
    assert res == {"changed": False, "valid": False, "warnings": [], "problem": res["problem"], "problem_entry": name}
    assert "unknown status" in res["problem"]
    (tmp_path / "manifest.json").write_text("[]")
    res = ensure_manifest(m, "valid")
    assert res["valid"] is False and "problem_entry" not in res, "a document-level problem names no entry"


def test_a_rebuild_reports_everything_it_found(tmp_path):
    m = _store(tmp_path)
    name = _entry_problem(tmp_path)
    (tmp_path / ".venom" / "records" / "junk.json").write_text("{not json")
    os.unlink(next(str(p) for p in (tmp_path / ".venom" / "records").iterdir() if "good" in p.name))
    stray = tmp_path / "huggingface" / "org" / "stray" / ("a" * 40)
    stray.mkdir(parents=True)
    res = ensure_manifest(m, "rebuilt")
    assert res["changed"] is True and res["valid"] is False and res["problem_entry"] == name
    assert res["restored"] == [] and res["damaged"] == ["gone"] and res["models_count"] == 1
    assert [s["record"].endswith("junk.json") for s in res["skipped"]] == [True]
    assert [(x["name"], x["provider"]) for x in res["lost"]] == [("good", "local")]
    assert [x["path"] for x in res["unclaimed"]] == [str(stray)]
    assert res["warnings"][0] == ("The rebuilt manifest does not list local model good: "
                                  + res["lost"][0]["reason"] + ".")
    assert res["warnings"][1].startswith(str(stray) + " holds model files")
    assert len(res["warnings"]) == 2
    assert res["diff"] == {"before": {"valid": False, "models": None}, "after": {"valid": True, "models": ["gone"]}}
    assert res["moved_aside"] and os.path.exists(res["moved_aside"])
    assert [e["name"] for e in m.models()] == ["gone"]


def test_a_missing_manifest_with_only_damaged_records_is_rebuilt_and_without_records_is_left(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(_installed(tmp_path, "gone"))
    (tmp_path / "local" / "gone" / "w.bin").unlink()
    (tmp_path / "manifest.json").unlink()
    check = ensure_manifest(m, "rebuilt", check_mode=True)
    assert check["changed"] is True and check["damaged"] == ["gone"] and check["restored"] == []
    assert not (tmp_path / "manifest.json").exists() and "moved_aside" not in check
    assert ensure_manifest(m, "rebuilt")["changed"] is True and (tmp_path / "manifest.json").exists()
    empty = Manifest(str(tmp_path / "empty"))
    assert ensure_manifest(empty, "rebuilt") == {"changed": False, "valid": True, "warnings": [], "models_count": 0}
    assert not (tmp_path / "empty" / "manifest.json").exists()


def test_by_default_an_invalid_manifest_is_only_reported(tmp_path):
    m = _store(tmp_path)
    (tmp_path / "manifest.json").write_bytes(b"{garbage")
    res = ensure_manifest(m)
    assert res["valid"] is False and res["changed"] is False and "restored" not in res
    assert (tmp_path / "manifest.json").read_bytes() == b"{garbage"
