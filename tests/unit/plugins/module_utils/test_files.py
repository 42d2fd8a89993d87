# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Digests, file selection, checks and the staging area (_files.py)."""
from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.models.staging import (
    Hasher, StagingArea, file_digests, hash_problems, mismatch, normalized_selection, prune_empty_parents,
    remove_tree_inside, select_paths, stat_problems)
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec, files_digest


def test_git_blob_id_matches_git(tmp_path):
    data = b"hello\n" * 1000
    path = tmp_path / "f"
    path.write_bytes(data)
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert file_digests(str(path), git=True) == {"sha256": hashlib.sha256(data).hexdigest(), "git_oid": git}


def test_hasher_prefix_then_rest_equals_whole(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    h = Hasher(len(data), git=True)
    h.feed_file(str(path), limit=1024 * 1024 + 5)
    h.update(data[1024 * 1024 + 5:])
    assert h.digests() == file_digests(str(path), git=True)
    assert h.length == len(data)


def test_mismatch_reasons():
    spec = FileSpec("a", 3, sha256="x" * 64, git_oid=None, lfs=True)
    assert mismatch(spec, {"sha256": "x" * 64}, 3) is None
    assert "size 4" in mismatch(spec, {"sha256": "x" * 64}, 4)
    assert "sha256" in mismatch(spec, {"sha256": "y" * 64}, 3)
    git_spec = FileSpec("b", 3, git_oid="a" * 40)
    assert "git blob id" in mismatch(git_spec, {"sha256": "z", "git_oid": "b" * 40}, 3)
    assert mismatch(git_spec, {"sha256": "z", "git_oid": "a" * 40}, 3) is None


@pytest.mark.parametrize("allow,ignore,expected", [
    (None, None, ["a.json", "dir/b.json", "dir/w.safetensors", "w.bin"]),
    (["*.json"], None, ["a.json", "dir/b.json"]),  # '*' crosses '/' as in snapshot_download
    (["dir/"], None, ["dir/b.json", "dir/w.safetensors"]),
    (None, ["*.bin", "dir/"], ["a.json"]),
    (["*.JSON"], None, []),  # case-sensitive
    (["*.json", "*.safetensors"], ["dir/*.json"], ["a.json", "dir/w.safetensors"]),
])
def test_select_paths(allow, ignore, expected):
    paths = ["a.json", "dir/b.json", "dir/w.safetensors", "w.bin"]
    assert select_paths(paths, allow, ignore) == expected


@given(st.lists(st.from_regex(r"[a-z]{1,4}(/[a-z]{1,4}){0,2}\.(json|bin)", fullmatch=True), unique=True),
       st.lists(st.sampled_from(["*.json", "*.bin", "a*", "*/x*", "b/"]), max_size=3),
       st.lists(st.sampled_from(["*.json", "*.bin", "a*", "*/x*", "b/"]), max_size=3))
def test_select_paths_properties(paths, allow, ignore):
    chosen = select_paths(paths, allow, ignore)
    assert set(chosen) <= set(paths)
    assert select_paths(paths, None, None) == paths
    assert set(select_paths(paths, allow, None)) >= set(chosen)


def test_normalized_selection():
    assert normalized_selection(None, []) == {"allow_patterns": None, "ignore_patterns": None}
    assert normalized_selection(["b", "a", "a"], None)["allow_patterns"] == ["a", "b"]


def test_files_digest_order_independent_and_content_sensitive():
    a = [{"path": "x", "size": 1, "sha256": "1"}, {"path": "y", "size": 2, "sha256": "2"}]
    assert files_digest(a) == files_digest(list(reversed(a)))
    assert files_digest(a) != files_digest([a[0], dict(a[1], sha256="3")])
    assert files_digest([FileSpec("x", 1, "1"), FileSpec("y", 2, "2")]) == files_digest(a)


def test_stat_and_hash_problems(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "d" / "b").write_bytes(b"defg")
    files = [{"path": "a", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()},
             {"path": "d/b", "size": 4, "sha256": hashlib.sha256(b"defg").hexdigest()},
             {"path": "gone", "size": 1, "sha256": "0" * 64}]
    probs = stat_problems(str(tmp_path), files)
    assert [(p.path, p.kind) for p in probs] == [("gone", "missing")]
    (tmp_path / "d" / "b").write_bytes(b"DEFG")
    probs = hash_problems(str(tmp_path), files)
    assert [(p.path, p.kind) for p in probs] == [("d/b", "digest"), ("gone", "missing")]
    (tmp_path / "a").write_bytes(b"abcd")
    assert stat_problems(str(tmp_path), files)[0].kind == "size"
    assert [p.kind for p in stat_problems(str(tmp_path / "nope"), files)] == ["missing"] * 3


def test_staging_area_place_verify_commit(tmp_path):
    models = tmp_path / "models"
    stage = StagingArea(str(models / ".venom" / "staging" / "m" / "c1")).ensure()
    data = b"weights"
    spec = FileSpec("sub/w.bin", len(data), sha256=hashlib.sha256(data).hexdigest(), lfs=True)
    assert not stage.verified(spec)
    part = stage.partial_path(spec.path)
    os.makedirs(os.path.dirname(part))
    with open(part, "wb") as fh:
        fh.write(data)
    stage.place(part, spec, {"sha256": spec.sha256})
    assert stage.verified(spec)
    assert StagingArea(stage.root).verified(spec), "the record survives a new process"
    assert not StagingArea(stage.root).verified(FileSpec("sub/w.bin", len(data), sha256="0" * 64, lfs=True))
    final = models / "huggingface" / "o" / "n" / "c1"
    stage.commit(str(final))
    assert (final / "sub" / "w.bin").read_bytes() == data
    assert not os.path.exists(stage.root) and not (models / ".venom" / "staging" / "m").exists()
    assert (models / ".venom" / "staging").is_dir()
    # a version directory taken back into staging (killed after the rename, before the manifest)
    stage2 = StagingArea(str(models / ".venom" / "staging" / "m" / "c1"))
    stage2.adopt_tree(str(final))
    assert not final.exists() and (tmp_path / "models/.venom/staging/m/c1/tree/sub/w.bin").exists()


def test_staging_refuses_escaping_paths(tmp_path):
    stage = StagingArea(str(tmp_path / "s")).ensure()
    with pytest.raises(ValidationError):
        stage.tree_path("../../etc/passwd")


def test_remove_tree_inside(tmp_path):
    base = tmp_path / "models"
    (base / "huggingface" / "o" / "n" / "c").mkdir(parents=True)
    (base / "huggingface" / "o" / "n" / "c" / "f").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.symlink(str(outside), str(base / "link"))
    with pytest.raises(ValidationError):
        remove_tree_inside(str(base), str(base / "link"))
    assert (outside / "keep").exists()
    with pytest.raises(VenomError):
        remove_tree_inside(str(base), str(base))
    with pytest.raises(ValidationError):
        remove_tree_inside(str(base), str(outside))
    assert remove_tree_inside(str(base), str(base / "huggingface" / "o" / "n" / "c"))
    assert not remove_tree_inside(str(base), str(base / "huggingface" / "o" / "n" / "c"))
    prune_empty_parents(str(base / "huggingface" / "o" / "n"), stop=str(base))
    assert not (base / "huggingface").exists() and base.exists()
