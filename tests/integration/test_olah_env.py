# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What huggingface_hub does against the olah mirror: the behaviours the provider relies on.

Each test checks one statement of the tests/lib/olah_env.py docstring against the real server.
"""
from __future__ import annotations

import glob
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.lib.olah_mirror import MINILM

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi, errors, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.file_download import hf_hub_url, http_get  # noqa: E402


def _api(olah):
    return HfApi(endpoint=olah.endpoint)


def test_model_info_resolves_branch_and_commit(olah):
    repo = olah.repos["venom-test/tiny-gemma"]
    api = _api(olah)
    assert api.model_info(repo.name, revision="main").sha == repo.head
    assert api.model_info(repo.name, revision=repo.head).sha == repo.head
    with pytest.raises(errors.RepositoryNotFoundError):
        api.model_info(repo.name)  # olah offline: no revision, no answer


def test_tree_lists_sizes_blob_ids_and_lfs_sha256(olah):
    for name in ("venom-test/tiny-sharded", MINILM):
        repo = olah.repos[name]
        expected = repo.expected()
        tree = [f for f in _api(olah).list_repo_tree(name, revision=repo.head, recursive=True) if hasattr(f, "blob_id")]
        assert {f.path for f in tree} == set(expected)
        for item in tree:
            exp = expected[item.path]
            assert item.size == exp["size"], item.path
            if exp["lfs"]:
                assert item.lfs is not None and item.lfs.sha256 == exp["sha256"], item.path
            else:
                assert item.lfs is None and item.blob_id == exp["git_oid"], item.path


def test_paths_info_matches_tree(olah):
    repo = olah.repos["venom-test/tiny-sharded"]
    infos = _api(olah).get_paths_info(repo.name, ["config.json", "model-00002-of-00003.safetensors", "original/params.json"],
                                      revision=repo.head)
    exp = repo.expected()
    by_path = {i.path: i for i in infos}
    assert by_path["model-00002-of-00003.safetensors"].lfs.sha256 == exp["model-00002-of-00003.safetensors"]["sha256"]
    assert by_path["original/params.json"].blob_id == exp["original/params.json"]["git_oid"]


def test_hf_hub_download_and_snapshot_local_dir(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-sharded"]
    path = hf_hub_download(repo.name, "original/params.json", revision=repo.head, endpoint=olah.endpoint,
                           local_dir=str(tmp_path / "one"))
    with open(path, "rb") as fh:
        assert fh.read() == repo.files["original/params.json"]
    out = snapshot_download(repo.name, revision=repo.head, endpoint=olah.endpoint, local_dir=str(tmp_path / "all"))
    for rel, data in repo.files.items():
        with open(os.path.join(out, rel), "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == hashlib.sha256(data).hexdigest(), rel
    assert os.path.isfile(os.path.join(out, ".cache", "huggingface", "download", "config.json.metadata"))


def test_missing_file_and_repo_errors(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-gemma"]
    with pytest.raises(errors.RemoteEntryNotFoundError):
        hf_hub_download(repo.name, "nope.txt", revision=repo.head, endpoint=olah.endpoint, local_dir=str(tmp_path))
    api = _api(olah)
    with pytest.raises(errors.RepositoryNotFoundError) as info:
        api.model_info("venom-test/does-not-exist", revision="main")
    assert info.value.response.status_code == 401
    with pytest.raises(errors.RepositoryNotFoundError):  # the Hub would say RevisionNotFound
        api.model_info(repo.name, revision="no-such-branch")
    with pytest.raises(errors.RepositoryNotFoundError):  # denied by the mirror's rules: like a private repo
        HfApi(endpoint=olah.endpoint).model_info(olah.denied, revision="main")


def test_hf_hub_download_does_not_resume_and_olah_ignores_range(olah, tmp_path):
    """A killed hf_hub_download leaves a process-unique .incomplete file; olah answers a Range with 200."""
    repo = olah.repos["venom-test/big"]
    big = "model-00002-of-00002.safetensors"
    size = len(repo.files[big])
    local = tmp_path / "dl"
    code = ("from huggingface_hub import hf_hub_download; "
            f"hf_hub_download({repo.name!r}, {big!r}, revision={repo.head!r}, "
            f"endpoint={olah.endpoint!r}, local_dir={str(local)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code])  # pylint: disable=consider-using-with
    pattern = str(local / ".cache" / "huggingface" / "download" / "*.incomplete")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        parts = glob.glob(pattern)
        if parts and os.path.getsize(parts[0]) > 0:
            break
        assert proc.poll() is None, "the download finished before it could be interrupted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    debris = glob.glob(pattern)
    assert len(debris) == 1 and 0 < os.path.getsize(debris[0]) < size
    # a second hf_hub_download starts over in a new temp file and leaves the old one as debris
    subprocess.run([sys.executable, "-c", code], check=True)
    assert glob.glob(pattern) == debris
    with open(local / big, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == repo.expected()[big]["sha256"]

    # http_get with resume_size sends Range; olah answers 200 with everything; http_get starts over
    kept = 1000
    partial = tmp_path / "partial"
    partial.write_bytes(repo.files[big][:kept])
    start = len(olah.log_tail(10 ** 7))
    with open(partial, "ab") as fh:
        http_get(hf_hub_url(repo.name, big, revision=repo.head, endpoint=olah.endpoint), fh,
                 resume_size=kept, expected_size=size)
    assert partial.read_bytes() == repo.files[big]
    time.sleep(0.3)
    new_log = olah.log_tail(10 ** 7)[start:]
    assert f"/resolve/{repo.head}/{big} HTTP/1.1\" 200" in new_log and " 206 " not in new_log
