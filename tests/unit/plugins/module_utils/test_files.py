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
