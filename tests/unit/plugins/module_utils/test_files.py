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
from ansible_collections.venom.models.plugins.module_utils.models.providers import (
    FileSpec, ModelRequest, Problem, Progress, Provider, files_digest)
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths


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


def test_a_file_record_read_back_is_the_same_record():
    for rec in ({"path": "w.safetensors", "size": 5, "sha256": "a" * 64, "lfs": True},
                {"path": "config.json", "size": 2, "sha256": "b" * 64, "git_oid": "c" * 40},
                {"path": "x", "size": 0, "sha256": None}):
        spec = FileSpec.from_record(rec)
        assert spec.record() == rec
    assert FileSpec.from_record({"path": "y", "size": 1}).lfs is False


def test_hash_problems_names_each_problem_and_counts_every_byte_once(tmp_path):
    (tmp_path / "short").write_bytes(b"ab")
    (tmp_path / "nodigest").write_bytes(b"abc")
    (tmp_path / "changed").write_bytes(b"XYZ")
    (tmp_path / "good").write_bytes(b"good")
    files = [{"path": "gone", "size": 10, "sha256": "0" * 64},
             {"path": "short", "size": 3, "sha256": "1" * 64},
             {"path": "nodigest", "size": 3, "sha256": None},
             {"path": "changed", "size": 3, "sha256": hashlib.sha256(b"xyz").hexdigest()},
             {"path": "good", "size": 4, "sha256": hashlib.sha256(b"good").hexdigest()}]
    from ansible_collections.venom.models.plugins.module_utils.models.providers import Progress  # pylint: disable=import-outside-toplevel
    progress = Progress()
    problems = hash_problems(str(tmp_path), files, progress)
    assert [p.as_dict() for p in problems] == [
        {"path": "gone", "kind": "missing", "expected": None, "actual": None},
        {"path": "short", "kind": "size", "expected": 3, "actual": 2},
        {"path": "nodigest", "kind": "digest", "expected": "a recorded sha256", "actual": None},
        {"path": "changed", "kind": "digest", "expected": hashlib.sha256(b"xyz").hexdigest(),
         "actual": hashlib.sha256(b"XYZ").hexdigest()}]
    assert str(problems[0]) == "gone: missing" and str(problems[1]) == "short: size is 2, expected 3"
    assert progress.done == 10 + 3 + 3 + 4, "a missing or short file counts as checked; one without digest is not read"
    assert progress.transferred == 0, "checking transfers nothing"
    assert [p.kind for p in hash_problems(None, files)] == ["missing"] * 5


def test_the_disk_full_and_integrity_errors_say_what_is_kept_and_what_to_do():
    import errno  # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.models import staging  # pylint: disable=import-outside-toplevel
    exc = OSError(errno.ENOSPC, "No space left on device")
    assert staging.is_disk_full(exc) and staging.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not staging.is_disk_full(OSError(errno.EACCES, "Permission denied")) and not staging.is_disk_full(ValueError())
    err = staging.disk_full(exc, "/srv/models")
    assert err.msg == ("The disk holding /srv/models is full (No space left on device). The partial download is kept "
                       "and resumes on the next run.")
    assert "Free space on that filesystem" in err.fix
    err = staging.integrity_error("org/m", "w.bin", "size 1, expected 2")
    assert err.msg == "The file w.bin of org/m does not match its published digest after a retry (size 1, expected 2)."
    assert "check the mirror" in err.fix


def test_removing_a_link_removes_the_link_only_and_the_models_dir_itself_is_refused(tmp_path):
    base = tmp_path / "models"
    (base / "local" / "v").mkdir(parents=True)
    (base / "local" / "v" / "f").write_text("x")
    os.symlink(str(base / "local" / "v" / "f"), str(base / "local" / "link"))
    assert remove_tree_inside(str(base), str(base / "local" / "link"))
    assert not os.path.lexists(base / "local" / "link") and (base / "local" / "v" / "f").exists()
    (base / "local" / "file").write_text("y")
    assert remove_tree_inside(str(base), str(base / "local" / "file")) and not (base / "local" / "file").exists()
    with pytest.raises(VenomError) as info:
        remove_tree_inside(str(base), str(base) + "/")
    assert "it is the models directory itself" in info.value.msg and "venom_manifest" in info.value.fix
    assert not remove_tree_inside(str(base), "")


def test_taking_a_version_back_replaces_an_empty_tree_and_never_a_full_one(tmp_path):
    stage = StagingArea(str(tmp_path / "staging" / "m" / "c1"))
    final = tmp_path / "final"
    final.mkdir()
    (final / "w").write_text("w")
    stage.ensure()
    stage.adopt_tree(str(final))
    assert not final.exists() and (tmp_path / "staging" / "m" / "c1" / "tree" / "w").exists()
    other = tmp_path / "other"
    other.mkdir()
    stage.adopt_tree(str(other))
    assert other.exists(), "a tree with files is kept; the other directory is left alone"
    fresh = StagingArea(str(tmp_path / "staging" / "m" / "c2"))
    fresh.adopt_tree(str(other))
    assert not other.exists() and os.stat(fresh.root).st_mode & 0o777 == 0o750


def test_a_file_moved_into_place_gets_its_permissions_and_new_directories(tmp_path):
    from ansible_collections.venom.models.plugins.module_utils.store.ownership import Permissions  # pylint: disable=import-outside-toplevel
    stage = StagingArea(str(tmp_path / "s")).ensure()
    os.makedirs(os.path.dirname(stage.tree_path("d/e/f")))
    with open(stage.tree_path("d/e/f"), "w", encoding="utf-8") as fh:
        fh.write("x")
    final = tmp_path / "final"
    final.mkdir()
    umask = os.umask(0)   # even then, the new directories are not writable by others
    try:
        stage.move_to("d/e/f", str(final), Permissions.parse(None, None, "0600", None))
    finally:
        os.umask(umask)
    assert (final / "d" / "e" / "f").read_text() == "x"
    assert os.stat(final / "d" / "e" / "f").st_mode & 0o777 == 0o600
    assert os.stat(final / "d" / "e").st_mode & 0o777 == 0o755, "the file's own directory"


def test_a_git_blob_id_cannot_be_computed_without_the_size_up_front():
    with pytest.raises(ValueError, match="the git blob id needs the size up front"):
        Hasher(git=True)
    assert Hasher().digests() == {"sha256": hashlib.sha256(b"").hexdigest()}, "no git id asked: none given"


def test_a_file_hashed_up_to_a_limit_reads_exactly_that_many_bytes(tmp_path):
    from ansible_collections.venom.models.plugins.module_utils.models.providers import Progress  # pylint: disable=import-outside-toplevel
    data = b"0123456789" * 3
    path = tmp_path / "f"
    path.write_bytes(data)
    for limit in (0, 1, 2, 29, 30, 31):
        progress = Progress()
        h = Hasher(len(data), git=True)
        h.feed_file(str(path), limit=limit, progress=progress)
        kept = data[:limit]
        assert h.length == len(kept) and h.digests()["sha256"] == hashlib.sha256(kept).hexdigest()
        assert progress.done == len(kept) and progress.transferred == 0, "hashing a file transfers nothing"
    h = Hasher(len(data))
    h.feed_file(str(path))
    assert h.length == len(data)


def test_the_digests_of_a_file_take_its_size_from_the_disk_when_not_given(tmp_path):
    data = b"abc" * 100
    path = tmp_path / "f"
    path.write_bytes(data)
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert file_digests(str(path), git=True)["git_oid"] == git
    assert file_digests(str(path), size=len(data), git=True)["git_oid"] == git
    assert file_digests(str(path), size=len(data) + 1, git=True)["git_oid"] != git, "the size given is the one hashed"
    assert file_digests(str(path)) == {"sha256": hashlib.sha256(data).hexdigest()}


def test_a_mismatch_names_what_was_found_and_what_was_expected():
    both = FileSpec("a", 3, sha256="s" * 64, git_oid="g" * 40)
    assert mismatch(both, {"sha256": "s" * 64}, 4) == "size 4, expected 3"
    assert mismatch(both, {"sha256": "t" * 64}, 3) == f"sha256 {'t' * 64}, expected {'s' * 64}"
    assert mismatch(both, {"git_oid": "h" * 40}, 3) == f"git blob id {'h' * 40}, expected {'g' * 40}"
    assert mismatch(both, {}, 3) == "no digest computed"
    assert mismatch(both, {"sha256": "s" * 64}, 3) is None
    assert mismatch(both, {"git_oid": "g" * 40}, 3) is None
    assert mismatch(both, {"sha256": "s" * 64, "git_oid": "g" * 40}, 3) is None
    assert mismatch(FileSpec("b", 3), {}, 3) is None, "nothing published: the size decides"
    assert mismatch(FileSpec("b", 3), {"sha256": "x"}, 2) == "size 2, expected 3"
    assert mismatch(FileSpec("c", 3, sha256="s" * 64), {"git_oid": "g" * 40}, 3) is None
    assert mismatch(FileSpec("c", 3, git_oid="g" * 40), {"sha256": "s" * 64}, 3) is None
    assert mismatch(FileSpec("c", 3, sha256="s" * 64), {"sha256": "s" * 64, "git_oid": "h" * 40}, 3) is None


def test_a_single_pattern_may_be_given_as_a_string_and_a_folder_pattern_takes_what_is_below():
    paths = ["a.json", "dir/b.json", "dir/sub/c.bin", "dirt.bin"]
    assert select_paths(paths, "*.json") == ["a.json", "dir/b.json"]
    assert select_paths(paths, None, "*.json") == ["dir/sub/c.bin", "dirt.bin"]
    assert select_paths(paths, "dir/") == ["dir/b.json", "dir/sub/c.bin"]
    assert select_paths(paths, [], []) == paths
    assert normalized_selection("*.json", "x/") == {"allow_patterns": ["*.json"], "ignore_patterns": ["x/"]}
    assert normalized_selection([], ["b", "a", "b"]) == {"allow_patterns": None, "ignore_patterns": ["a", "b"]}


def test_a_missing_directory_with_no_files_recorded_is_one_missing_problem(tmp_path):
    assert [(p.path, p.kind) for p in stat_problems(None, [])] == [(".", "missing")]
    assert [(p.path, p.kind) for p in stat_problems(str(tmp_path / "nope"), [])] == [(".", "missing")]
    assert [(p.path, p.kind) for p in stat_problems("", [{"path": "a", "size": 1}])] == [("a", "missing")]
    (tmp_path / "a").write_bytes(b"abcd")
    (tmp_path / "b").write_bytes(b"")
    probs = stat_problems(str(tmp_path), [{"path": "a", "size": 3}, {"path": "b", "size": 0}])
    assert [p.as_dict() for p in probs] == [{"path": "a", "kind": "size", "expected": 3, "actual": 4}]
    assert stat_problems(str(tmp_path), []) == []


def test_the_staging_area_is_private_to_the_service_and_its_state_file_too(tmp_path):
    umask = os.umask(0)
    try:
        stage = StagingArea(str(tmp_path / "s")).ensure()
        stage.record(FileSpec("x", 1), {"sha256": "1"})
    finally:
        os.umask(umask)
    for d in (stage.root, stage.tree, stage.partial):
        assert os.stat(d).st_mode & 0o777 == 0o750
    assert os.stat(stage.state_path).st_mode & 0o777 == 0o640
    assert stage.exists() and not StagingArea(str(tmp_path / "t")).exists()
    assert StagingArea(stage.root).state() == {"x": {"size": 1, "sha256": "1"}}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "null", ""])
def test_an_unreadable_or_foreign_state_file_counts_as_nothing_verified(tmp_path, content):
    stage = StagingArea(str(tmp_path / "s")).ensure()
    with open(stage.state_path, "w", encoding="utf-8") as fh:
        fh.write(content)
    assert stage.state() == {}
    stage.record(FileSpec("x", 1), {"sha256": "1"})
    assert StagingArea(stage.root).state() == {"x": {"size": 1, "sha256": "1"}}


def test_a_staged_file_is_verified_only_if_its_record_and_its_size_on_disk_match(tmp_path):
    stage = StagingArea(str(tmp_path / "s")).ensure()
    data = b"weights"
    spec = FileSpec("w.bin", len(data), sha256="s" * 64, git_oid="g" * 40)
    with open(stage.tree_path("w.bin"), "wb") as fh:
        fh.write(data)
    assert not stage.verified(spec), "no record"
    stage.record(spec, {"sha256": "s" * 64, "git_oid": "g" * 40})
    assert stage.verified(spec)
    assert not stage.verified(FileSpec("w.bin", len(data) + 1, sha256="s" * 64, git_oid="g" * 40))
    assert not stage.verified(FileSpec("w.bin", len(data), sha256="t" * 64, git_oid="g" * 40))
    assert not stage.verified(FileSpec("w.bin", len(data), sha256="s" * 64, git_oid="h" * 40))
    assert stage.verified(FileSpec("w.bin", len(data))), "nothing published: the recorded size decides"
    with open(stage.tree_path("w.bin"), "ab") as fh:
        fh.write(b"!")
    assert not stage.verified(spec), "the file on disk grew"
    os.unlink(stage.tree_path("w.bin"))
    assert not stage.verified(spec), "the file is gone"
    stage.record(FileSpec("e", 0), {"sha256": "0"})
    open(stage.tree_path("e"), "wb").close()   # pylint: disable=consider-using-with
    assert stage.verified(FileSpec("e", 0)), "an empty file is a verified file too"


def test_the_length_of_a_partial_download_is_zero_when_there_is_none_or_its_path_escapes(tmp_path):
    stage = StagingArea(str(tmp_path / "s")).ensure()
    assert stage.partial_size("w.bin") == 0
    with open(stage.partial_path("w.bin"), "wb") as fh:
        fh.write(b"12345")
    assert stage.partial_size("w.bin") == 5
    (tmp_path / "s" / "outside").write_bytes(b"xx")
    assert stage.partial_size("../outside") == 0


def test_a_placed_file_gets_the_mode_asked_unless_it_is_a_shared_hard_link(tmp_path):
    stage = StagingArea(str(tmp_path / "s")).ensure()
    for name, kwargs, mode in (("a/b/one", {}, 0o644), ("two", {"mode": 0o600}, 0o600),
                               ("three", {"chmod": False}, 0o640)):
        src = tmp_path / name.replace("/", "_")
        src.write_bytes(b"x")
        os.chmod(src, 0o640)
        stage.place(str(src), FileSpec(name, 1), {"sha256": name}, **kwargs)
        assert os.stat(stage.tree_path(name)).st_mode & 0o777 == mode
        assert not src.exists() and StagingArea(stage.root).state()[name] == {"size": 1, "sha256": name}
    assert os.stat(os.path.dirname(stage.tree_path("a/b/one"))).st_mode & 0o777 == 0o755


def test_a_committed_version_is_readable_by_all_and_the_staging_parents_go_when_empty(tmp_path):
    models = tmp_path / "models"
    stage = StagingArea(str(models / ".venom" / "staging" / "m" / "c1")).ensure()
    other = StagingArea(str(models / ".venom" / "staging" / "m" / "c2")).ensure()
    src = tmp_path / "w"
    src.write_bytes(b"w")
    umask = os.umask(0o077)
    try:
        stage.place(str(src), FileSpec("d/e/w", 1), {"sha256": "1"})
    finally:
        os.umask(umask)
    os.chmod(stage.tree_path("d"), 0o700)
    final = models / "huggingface" / "o" / "n" / "c1"
    stage.commit(str(final))
    for d in (final, final / "d", final / "d" / "e"):
        assert os.stat(d).st_mode & 0o777 == 0o755
    assert not os.path.exists(stage.root) and os.path.isdir(other.root), "the model's other version is kept"
    other.discard()
    assert not (models / ".venom" / "staging" / "m").exists() and (models / ".venom" / "staging").is_dir()


def test_empty_parents_are_removed_up_to_the_stop_and_never_outside_it(tmp_path):
    (tmp_path / "base" / "a" / "b").mkdir(parents=True)
    (tmp_path / "base" / "keep").mkdir()
    (tmp_path / "other" / "x").mkdir(parents=True)
    prune_empty_parents(str(tmp_path / "other" / "x"), stop=str(tmp_path / "base"))
    assert (tmp_path / "other" / "x").is_dir(), "outside the stop: left alone"
    prune_empty_parents(str(tmp_path / "base"), stop=str(tmp_path / "base"))
    assert (tmp_path / "base").is_dir(), "the stop itself is kept"
    prune_empty_parents(str(tmp_path / "base" / "a" / "b"), stop=str(tmp_path / "base"))
    assert not (tmp_path / "base" / "a").exists() and (tmp_path / "base" / "keep").is_dir()
    (tmp_path / "base" / "a" / "b").mkdir(parents=True)
    (tmp_path / "base" / "a" / "f").write_text("f")
    prune_empty_parents(str(tmp_path / "base" / "a" / "b"), stop=str(tmp_path / "base"))
    assert not (tmp_path / "base" / "a" / "b").exists() and (tmp_path / "base" / "a").is_dir(), "stops at a full one"
    (tmp_path / "basement").mkdir()
    prune_empty_parents(str(tmp_path / "basement"), stop=str(tmp_path / "base"))
    assert (tmp_path / "basement").is_dir(), "a sibling sharing the stop's prefix is not below it"


def test_removing_a_path_that_does_not_exist_removes_nothing(tmp_path):
    assert remove_tree_inside(str(tmp_path), str(tmp_path / "nope")) is False
    assert remove_tree_inside(str(tmp_path), None) is False
    os.symlink(str(tmp_path / "nowhere"), str(tmp_path / "dangling"))
    assert remove_tree_inside(str(tmp_path), str(tmp_path / "dangling")) is True
    assert not os.path.lexists(tmp_path / "dangling")


def test_the_directory_a_version_is_committed_into_is_made_readable_by_all_and_writable_by_the_service(tmp_path):
    stage = StagingArea(str(tmp_path / "staging" / "c1")).ensure()
    final = tmp_path / "models" / "huggingface" / "o" / "n" / "c1"
    umask = os.umask(0)
    try:
        stage.commit(str(final))
    finally:
        os.umask(umask)
    assert os.stat(final.parent).st_mode & 0o777 == 0o755
    assert os.stat(final).st_mode & 0o777 == 0o755 and os.listdir(final) == []


def test_a_placed_file_directory_is_not_writable_by_others_whatever_the_umask(tmp_path):
    stage = StagingArea(str(tmp_path / "s")).ensure()
    src = tmp_path / "w"
    src.write_bytes(b"w")
    umask = os.umask(0)
    try:
        stage.place(str(src), FileSpec("d/w", 1), {"sha256": "1"})
    finally:
        os.umask(umask)
    assert os.stat(os.path.dirname(stage.tree_path("d/w"))).st_mode & 0o777 == 0o755
    assert os.stat(stage.tree_path("d/w")).st_mode & 0o777 == 0o644


def test_a_pattern_without_a_trailing_slash_matches_the_name_exactly():
    paths = ["config.json", "config.json.bak", "onnx", "onnx/model.onnx"]
    assert select_paths(paths, "config.json") == ["config.json"]
    assert select_paths(paths, None, ["config.json", "onnx"]) == ["config.json.bak", "onnx/model.onnx"]
    assert select_paths(paths, "onnx/") == ["onnx/model.onnx"]


def test_a_staged_file_with_a_non_ascii_name_stays_verified_under_an_ascii_locale(tmp_path):
    import locale  # pylint: disable=import-outside-toplevel
    stage = StagingArea(str(tmp_path / "s")).ensure()
    spec = FileSpec("modèle/poids.bin", 2, sha256="s" * 64)
    os.makedirs(os.path.dirname(stage.tree_path(spec.path)))
    with open(stage.tree_path(spec.path), "wb") as fh:
        fh.write(b"ab")
    stage.record(spec, {"sha256": "s" * 64})
    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        assert StagingArea(stage.root).verified(spec)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def test_the_staging_layout_on_disk_is_the_documented_one_so_another_version_resumes_it(tmp_path):
    root = tmp_path / "s"
    (root / "partial" / "d").mkdir(parents=True)
    (root / "partial" / "d" / "w.bin").write_bytes(b"1234")
    (root / "tree").mkdir()
    (root / "tree" / "c.json").write_bytes(b"{}")
    (root / "state.json").write_text('{"c.json": {"size": 2, "sha256": "x"}}')
    stage = StagingArea(str(root))
    assert stage.partial_size("d/w.bin") == 4 and stage.partial_path("d/w.bin") == str(root / "partial" / "d" / "w.bin")
    assert stage.verified(FileSpec("c.json", 2, sha256="x")) and stage.tree_path("c.json") == str(root / "tree" / "c.json")
    assert stage.state_path == str(root / "state.json")


def test_a_file_list_digest_is_stable_and_covers_path_size_content_and_git_id():
    files = [{"path": "b", "size": 2, "sha256": "s2", "git_oid": "g2"}, {"path": "a", "size": 1, "sha256": None}]
    # the version id of a local model is this digest: it must not change between releases
    assert files_digest(files) == "af81b3fbe83bf5cc7f245975200ad5d269bddc66283ad024f3cef1edd8b832c8"
    assert files_digest([dict(files[0], git_oid="g3"), files[1]]) != files_digest(files)
    assert files_digest([files[0], dict(files[1], size=3)]) != files_digest(files)
    assert files_digest([files[0], dict(files[1], path="c")]) != files_digest(files)
    assert files_digest([]) == hashlib.sha256().hexdigest()


def test_a_file_of_a_negative_or_absurd_size_is_refused():
    with pytest.raises(ValidationError):
        FileSpec("x", -1)
    with pytest.raises(ValidationError):
        FileSpec("x", "12")
    assert FileSpec("x", 0).record() == {"path": "x", "size": 0, "sha256": None}


def test_progress_hands_totals_messages_and_transferred_bytes_to_its_sink():
    seen = []
    progress = Progress(lambda done, total, message, force: seen.append((done, total, message, force)), total=7.9)
    assert (progress.total, progress.done, progress.transferred, progress.message) == (7, 0, 0, "")
    progress.set_total(100.5, 10.2, "start")
    assert seen[-1] == (10, 100, "start", True) and isinstance(progress.total, int) and isinstance(progress.done, int)
    progress.add(5)
    assert seen[-1] == (15, 100, "start", False) and progress.transferred == 5
    progress.add(5, transferred=False)
    assert seen[-1] == (20, 100, "start", False) and progress.transferred == 5, "read from disk, not transferred"
    progress.note("half way")
    assert seen[-1] == (20, 100, "half way", True)
    progress.set_total(200)
    assert seen[-1] == (0, 200, "half way", True), "no message: the last one stays"
    quiet = Progress()
    quiet.add(3)
    quiet.note("x")
    assert quiet.done == 3 and quiet.transferred == 3 and quiet.message == "x"


def test_a_problem_reads_as_what_is_wrong_with_which_file():
    assert str(Problem("w.bin", "missing", expected=5)) == "w.bin: missing"
    assert str(Problem("w.bin", "size", expected=5, actual=3)) == "w.bin: size is 3, expected 5"
    assert Problem("w.bin", "digest", "a", "b").as_dict() == {"path": "w.bin", "kind": "digest", "expected": "a",
                                                              "actual": "b"}


def test_a_request_never_shows_its_token_and_defaults_to_a_huggingface_model_present():
    req = ModelRequest(name="org/m", token="hf_very_secret_token")
    assert "hf_very_secret_token" not in repr(req)
    assert (req.provider, req.state, req.adopt_mode) == ("huggingface", "present", "auto")
    assert req.force is False and req.validate_certs is True


def test_what_a_provider_does_not_override_is_neutral(tmp_path):

    class Minimal(Provider):
        name = "local"
        left = 0

        def satisfies(self, entry):
            return True

        def quick_check(self, entry):
            return []

        def resolve(self, entry, latest=False):
            return None

        def install(self, target, progress, entry=None):
            return {}

        def verify(self, entry, progress):
            return []

        def repair(self, entry, problems, progress):
            return {}

        def remove(self, entry):
            return []

        def staging_bytes(self):
            return self.left

        def discard_staging(self):
            return False
    models = str(tmp_path / "models")
    prov = Minimal(ModelRequest(name="Org/Model", provider="local", models_dir=models), StatePaths(models))
    assert prov.canonical_name() == "Org/Model" and not prov.permissions
    assert prov.model_dir(None) is None and prov.model_dir("") == ""
    inside = os.path.join(models, "local", "m", "v1")
    assert prov.model_dir(inside) == inside
    with pytest.raises(ValidationError):
        prov.model_dir(os.path.join(models, "huggingface", "m"))
    with pytest.raises(NotImplementedError):
        prov.remove_version(inside)
    assert prov.has_staging() is False
    prov.left = 1
    assert prov.has_staging() is True
    assert prov.unmanaged_entry() is None and prov.detect_capabilities(inside) == {}
    assert prov.predict_capabilities(None) is None and prov.entry_extra() == {}
    assert prov.tls.warnings() == []
