# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hugging Face provider's install, resumption and repair (models/huggingface.py) through the
operation layer, with a Hub in memory (its API answers and ``http_get``): every file verified and
placed, nothing downloaded twice (a staged file, a partial one resumed by Range, a run killed
after the final rename, the installed copy of the same commit), a file selection completed in
place, a repair fetching only the damaged files, the timeout, and a failed file stopping the rest."""
from __future__ import annotations

import hashlib
import os
import threading
import time
import types

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import IntegrityError, ProviderError, VenomError
from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf
from ansible_collections.venom.models.plugins.module_utils.models.operations import ModelOperations
from ansible_collections.venom.models.plugins.module_utils.models.providers import (
    FileSpec, ModelRequest, Problem, Progress, Target)
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths

pytest.importorskip("huggingface_hub")
_hf.load_hub()

COMMIT = "c" * 40
CONFIG = b'{"model_type": "llama", "max_position_embeddings": 2048}\n'
WEIGHTS = bytes(range(256)) * 40   # 10,240 bytes, an LFS file
TOKENIZER = b'{"version": "1.0"}\n'
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "sub/tokenizer.json": TOKENIZER}
LFS = {"model.safetensors"}


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub:
    """What the provider asks the Hub: the commit of a revision, the file tree, and the files
    (``http_get``, honouring ``resume_size`` as a server honouring Range does)."""

    def __init__(self, files):
        self.files = dict(files)
        self.gets: list = []   # (path, resume_size)
        self.requests: list = []   # (url, headers, expected_size)
        self.fail: dict = {}   # path -> exception raised by http_get for it
        self.serve: dict = {}  # path -> bytes served instead of the listed content
        self.ignore_range = False
        self.lock = threading.Lock()

    def items(self):
        for path, data in self.files.items():
            lfs = types.SimpleNamespace(sha256=hashlib.sha256(data).hexdigest()) if path in LFS else None
            yield types.SimpleNamespace(path=path, size=len(data), blob_id=_git_oid(data), lfs=lfs)
        yield types.SimpleNamespace(path="sub")   # a folder: no size, no blob id

    def list_repo_tree(self, repo, revision=None, recursive=False):
        assert repo == "org/model" and revision == COMMIT and recursive
        return list(self.items())

    def http_get(self, url, fileobj, resume_size=0, headers=None, expected_size=None):
        path = url.split(f"/resolve/{COMMIT}/", 1)[1]
        with self.lock:
            self.gets.append((path, resume_size))
            self.requests.append((url, headers, expected_size))
        if path in self.fail:
            raise self.fail[path]
        data = self.serve.get(path, self.files[path])
        if self.ignore_range and resume_size:
            fileobj.seek(max(fileobj.tell() - resume_size, 0))
            fileobj.truncate()
            resume_size = 0
        fileobj.write(data[resume_size:])


@pytest.fixture(name="hub")
def fixture_hub(monkeypatch):
    hub = Hub(FILES)
    monkeypatch.setattr(_hf, "http_get", hub.http_get)
    monkeypatch.setattr(_hf.HuggingFaceProvider, "api", lambda self: hub)
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info",
                        lambda self, revision: types.SimpleNamespace(sha=COMMIT))
    return hub


def _ops(models, check=False, **kw):
    req = ModelRequest(name="org/model", provider="huggingface", models_dir=str(models), **kw)
    return ModelOperations(req, check_mode=check)


def _run(models, check=False, **kw):
    return _ops(models, check, **kw).run()


def _provider(models, **kw):
    req = ModelRequest(name="org/model", provider="huggingface", models_dir=str(models), **kw)
    return _hf.HuggingFaceProvider(req, StatePaths(str(models)).ensure())


def _final(models):
    return os.path.join(str(models), "huggingface", "org", "model", COMMIT)


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def test_an_install_places_every_file_verified_and_records_its_digests(tmp_path, hub):
    models = tmp_path / "models"
    check = _run(models, check=True)
    assert check["plan"]["fetch_bytes"] == sum(len(d) for d in FILES.values())
    assert hub.gets == [("config.json", 0)], "check mode reads the small files only"
    hub.gets.clear()
    out = _run(models)
    assert sorted(p for p, _r in hub.gets) == sorted(FILES) and all(r == 0 for _p, r in hub.gets)
    assert out["bytes_downloaded"] == sum(len(d) for d in FILES.values())
    entry = Manifest(str(models)).get("org/model", "huggingface")
    assert entry["local_path"] == _final(models) and entry["revision"] == COMMIT
    assert entry["requested_revision"] == "main" and entry["source"] == {"endpoint": "https://huggingface.co"}
    records = {f["path"]: f for f in entry["files"]}
    assert set(records) == set(FILES)
    for path, data in FILES.items():
        assert _read(os.path.join(_final(models), path)) == data
        assert records[path]["sha256"] == hashlib.sha256(data).hexdigest(), "every file's sha256, LFS or not"
        assert records[path]["size"] == len(data)
    assert records["model.safetensors"]["lfs"] is True and "git_oid" not in records["model.safetensors"]
    assert records["config.json"]["git_oid"] == _git_oid(CONFIG) and "lfs" not in records["config.json"]
    assert entry["capabilities"]["max_context_length"] == 2048
    assert os.stat(_final(models)).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(_final(models), "sub")).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(_final(models), "config.json")).st_mode & 0o777 == 0o644
    assert not os.listdir(os.path.join(str(models), ".venom", "staging")), "the staging area is gone"
    hub.gets.clear()
    assert _run(models)["changed"] is False and hub.gets == []


def test_a_partial_download_is_resumed_from_its_length(tmp_path, hub):
    models = tmp_path / "models"
    stage = _provider(models).staging(COMMIT).ensure()
    with open(stage.partial_path("model.safetensors"), "wb") as fh:
        fh.write(WEIGHTS[:4000])
    check = _run(models, check=True)
    assert check["plan"]["staged_bytes"] == 4000
    assert check["plan"]["fetch_bytes"] == sum(len(d) for d in FILES.values()) - 4000
    out = _run(models)
    assert ("model.safetensors", 4000) in hub.gets
    assert out["bytes_downloaded"] == sum(len(d) for d in FILES.values()) - 4000
    assert _read(os.path.join(_final(models), "model.safetensors")) == WEIGHTS


def test_a_partial_resumed_from_a_server_that_ignores_range_counts_each_byte_once(tmp_path, hub):
    models = tmp_path / "models"
    hub.ignore_range = True
    prov = _provider(models)
    stage = prov.staging(COMMIT).ensure()
    with open(stage.partial_path("model.safetensors"), "wb") as fh:
        fh.write(WEIGHTS[:4000])
    spec = FileSpec("model.safetensors", len(WEIGHTS), sha256=hashlib.sha256(WEIGHTS).hexdigest(), lfs=True)
    progress = Progress()
    digests = prov._download_one(stage, spec, {}, progress, threading.Event(), None)   # pylint: disable=protected-access
    assert digests == {"sha256": hashlib.sha256(WEIGHTS).hexdigest()}
    assert progress.done == len(WEIGHTS) and progress.transferred == len(WEIGHTS)


def test_a_truncated_write_keeps_and_hashes_exactly_the_bytes_kept(tmp_path):
    path = str(tmp_path / "partial")
    spec = FileSpec("w", 10, git_oid=_git_oid(b"0123456789"))
    progress = Progress()
    with open(path, "ab") as fh:
        writer = _hf._HashingWriter(fh, spec, _hf.Hasher(10, git=True), progress, threading.Event(), None, path)   # pylint: disable=protected-access
        assert writer.write(b"012345") == 6 and writer.tell() == 6
        writer.truncate(4)
        assert writer.hasher.length == 4 and progress.done == 4 and progress.transferred == 6
        assert writer.seek(0, os.SEEK_END) == 4
        writer.write(b"456789")
        writer.flush()
        assert writer.hasher.digests() == {"sha256": hashlib.sha256(b"0123456789").hexdigest(),
                                           "git_oid": _git_oid(b"0123456789")}
        writer.truncate()
        assert writer.hasher.length == 10 and progress.done == 10
        writer.seek(0)
        writer.truncate()
        assert writer.hasher.length == 0 and progress.done == 0
    assert os.path.getsize(path) == 0


def test_a_writer_stops_when_told_or_past_its_deadline(tmp_path):
    path = str(tmp_path / "partial")
    stop = threading.Event()
    with open(path, "ab") as fh:
        writer = _hf._HashingWriter(fh, FileSpec("w", 3), _hf.Hasher(3), Progress(), stop,   # pylint: disable=protected-access
                                    time.monotonic() + 60, path)
        writer.write(b"a")
        late = _hf._HashingWriter(fh, FileSpec("w", 3), _hf.Hasher(3), Progress(), stop,   # pylint: disable=protected-access
                                  time.monotonic() - 1, path)
        with pytest.raises(_hf._Abort, match="timeout"):   # pylint: disable=protected-access
            late.write(b"b")
        stop.set()
        with pytest.raises(_hf._Abort, match="stopped"):   # pylint: disable=protected-access
            writer.write(b"c")
    assert _read(path) == b"a"


def test_files_verified_by_an_interrupted_run_are_not_downloaded_again(tmp_path, hub):
    models = tmp_path / "models"
    prov = _provider(models)
    stage = prov.staging(COMMIT).ensure()
    spec = FileSpec("model.safetensors", len(WEIGHTS), sha256=hashlib.sha256(WEIGHTS).hexdigest(), lfs=True)
    path = stage.partial_path("model.safetensors")
    with open(path, "wb") as fh:
        fh.write(WEIGHTS)
    stage.place(path, spec, {"sha256": spec.sha256})
    check = _run(models, check=True)
    assert check["plan"]["staged_bytes"] == len(WEIGHTS) and check["plan"]["fetch_files"] == 2
    hub.gets.clear()
    _run(models)
    assert sorted(p for p, _r in hub.gets) == ["config.json", "sub/tokenizer.json"]
    assert _read(os.path.join(_final(models), "model.safetensors")) == WEIGHTS


def test_a_run_killed_after_the_final_rename_is_taken_back_without_a_download(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    os.unlink(os.path.join(str(models), "manifest.json"))   # killed before the manifest learnt of it
    hub.gets.clear()
    out = _run(models)
    assert out["action"] == "install" and hub.gets == [], "every file adopted from the renamed tree by its digest"
    assert _read(os.path.join(_final(models), "model.safetensors")) == WEIGHTS


def test_a_taken_back_tree_with_a_damaged_file_downloads_that_file_only(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    os.unlink(os.path.join(str(models), "manifest.json"))
    with open(os.path.join(_final(models), "config.json"), "r+b") as fh:
        fh.write(b"[")
    hub.gets.clear()
    _run(models)
    assert hub.gets == [("config.json", 0)]
    assert _read(os.path.join(_final(models), "config.json")) == CONFIG


def test_a_wider_selection_is_completed_in_place_and_a_narrower_one_removes_files(tmp_path, hub):
    models = tmp_path / "models"
    out = _run(models, allow_patterns=["*.json"])
    assert sorted(os.listdir(_final(models))) == ["config.json", "sub"]
    assert out["model"]["allow_patterns"] == ["*.json"]
    hub.gets.clear()
    check = _run(models, check=True)
    assert check["action"] == "sync" and check["plan"]["fetch_files"] == 1
    assert check["plan"]["fetch_bytes"] == len(WEIGHTS) and check["plan"]["staged_bytes"] == len(CONFIG) + len(TOKENIZER)
    hub.gets.clear()
    out = _run(models)
    assert out["action"] == "sync" and hub.gets == [("model.safetensors", 0)], "the installed files are reused"
    entry = Manifest(str(models)).get("org/model", "huggingface")
    assert sorted(f["path"] for f in entry["files"]) == sorted(FILES) and entry["allow_patterns"] is None
    assert all(f["sha256"] for f in entry["files"])
    hub.gets.clear()
    out = _run(models, ignore_patterns=["sub/"])
    assert out["action"] == "sync" and hub.gets == []
    assert not os.path.exists(os.path.join(_final(models), "sub")), "a removed file's empty directory goes too"
    assert sorted(os.listdir(_final(models))) == ["config.json", "model.safetensors"]


def test_an_installed_file_that_differs_from_the_listing_is_not_reused(tmp_path, hub):
    models = tmp_path / "models"
    _run(models, allow_patterns=["*.json", "*.safetensors"])
    entry = Manifest(str(models)).get("org/model", "huggingface")
    prov = _provider(models)
    target = Target(COMMIT, "main", [FileSpec(p, len(d), sha256=hashlib.sha256(d).hexdigest() if p in LFS else None,
                                              git_oid=None if p in LFS else _git_oid(d), lfs=p in LFS)
                                     for p, d in FILES.items()], _final(models))
    assert prov._reusable(entry, target) == set(FILES)   # pylint: disable=protected-access
    assert prov._reusable(None, target) == set()   # pylint: disable=protected-access
    assert prov._reusable(dict(entry, revision="d" * 40), target) == set()   # pylint: disable=protected-access
    assert prov._reusable(dict(entry, local_path=None), target) == set()   # pylint: disable=protected-access
    changed = [dict(f, sha256="0" * 64) if f["path"] == "model.safetensors" else
               dict(f, git_oid="0" * 40) if f["path"] == "config.json" else dict(f, size=1)
               for f in entry["files"]]
    assert prov._reusable(dict(entry, files=changed), target) == set()   # pylint: disable=protected-access
    no_oid = [{k: v for k, v in f.items() if k != "git_oid"} for f in entry["files"]]
    assert prov._reusable(dict(entry, files=no_oid), target) == set(FILES), "no recorded git id: size decides"
    os.unlink(os.path.join(_final(models), "config.json"))
    with open(os.path.join(_final(models), "sub", "tokenizer.json"), "ab") as fh:
        fh.write(b" ")
    assert prov._reusable(entry, target) == {"model.safetensors"}   # pylint: disable=protected-access


def test_a_repair_downloads_only_the_damaged_file_never_resuming_its_old_partial(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    installed = os.path.join(_final(models), "model.safetensors")
    with open(installed, "r+b") as fh:
        fh.write(b"\xff")
    stage = _provider(models).staging(COMMIT).ensure()
    with open(stage.partial_path("model.safetensors"), "wb") as fh:
        fh.write(b"\xff" * 100)   # a partial of the damaged content must not be resumed
    hub.gets.clear()
    out = _run(models, state="verified")
    assert out["action"] == "repair" and hub.gets == [("model.safetensors", 0)]
    assert _read(installed) == WEIGHTS
    assert out["model"]["files"] == Manifest(str(models)).get("org/model", "huggingface")["files"]
    hub.gets.clear()
    assert _run(models, state="verified")["changed"] is False and hub.gets == []


def test_a_repair_of_a_missing_directory_fetches_every_file(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    entry = Manifest(str(models)).get("org/model", "huggingface")
    import shutil   # pylint: disable=import-outside-toplevel
    shutil.rmtree(_final(models))
    hub.gets.clear()
    fields = _provider(models).repair(entry, [Problem(path=".", kind="missing")], Progress())
    assert sorted(p for p, _r in hub.gets) == sorted(FILES)
    assert fields["local_path"] == _final(models) and fields["revision"] == COMMIT
    assert fields["allow_patterns"] is None and fields["source"] == entry["source"]
    assert [f["sha256"] for f in fields["files"]] == [f["sha256"] for f in entry["files"]]
    for path, data in FILES.items():
        assert _read(os.path.join(_final(models), path)) == data


def test_content_that_does_not_match_its_listing_fails_after_one_retry(tmp_path, hub):
    models = tmp_path / "models"
    hub.serve["config.json"] = b"X" + CONFIG[1:]
    with pytest.raises(IntegrityError) as info:
        _run(models)
    assert "config.json of org/model" in info.value.msg and "git blob id" in info.value.msg
    assert [p for p, _r in hub.gets].count("config.json") == 2
    assert Manifest(str(models)).get("org/model", "huggingface") is None
    assert not os.path.exists(_final(models))


def test_a_size_mismatch_reported_by_http_get_starts_the_file_over_once(tmp_path, hub):
    models = tmp_path / "models"
    prov = _provider(models)
    stage = prov.staging(COMMIT).ensure()
    spec = FileSpec("model.safetensors", len(WEIGHTS), sha256=hashlib.sha256(WEIGHTS).hexdigest(), lfs=True)
    calls = []

    def short_then_whole(url, fileobj, resume_size=0, headers=None, expected_size=None):
        calls.append(resume_size)
        if len(calls) == 1:
            fileobj.write(WEIGHTS[:100])
            raise OSError("Consistency check failed: file should be of size 10240 but has size 100")
        fileobj.write(WEIGHTS[resume_size:])
    hub_get = _hf.http_get
    _hf.http_get = short_then_whole
    try:
        progress = Progress()
        prov._download_one(stage, spec, {}, progress, threading.Event(), None)   # pylint: disable=protected-access
    finally:
        _hf.http_get = hub_get
    assert calls == [0, 0], "the short file is started over, not resumed"
    assert progress.done == len(WEIGHTS) and stage.verified(spec)
    assert progress.transferred == len(WEIGHTS) + 100, "the bytes received and thrown away were transferred too"

    def always_short(url, fileobj, resume_size=0, headers=None, expected_size=None):
        fileobj.write(WEIGHTS[:100])
        raise OSError("Consistency check failed: file should be of size 10240 but has size 100\nmore")
    _hf.http_get = always_short
    try:
        with pytest.raises(IntegrityError) as info:
            prov._download_one(prov.staging("d" * 40).ensure(), spec, {}, Progress(), threading.Event(), None)   # pylint: disable=protected-access
    finally:
        _hf.http_get = hub_get
    assert "(Consistency check failed: file should be of size 10240 but has size 100)" in info.value.msg


def test_a_download_past_the_timeout_keeps_what_it_has_and_says_so(tmp_path, hub, monkeypatch):
    models = tmp_path / "models"
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(_hf, "time", types.SimpleNamespace(monotonic=lambda: clock.now))

    def slow(url, fileobj, resume_size=0, headers=None, expected_size=None):
        fileobj.write(WEIGHTS[:100])
        clock.now += 4.9   # still inside timeout=5
        fileobj.write(WEIGHTS[100:200])
        clock.now += 0.2   # past it
        fileobj.write(WEIGHTS[200:])
    monkeypatch.setattr(_hf, "http_get", slow)
    with pytest.raises(ProviderError) as info:
        _run(models, timeout=5, allow_patterns=["*.safetensors"])
    assert "Downloading org/model took longer than timeout=5s" in info.value.msg
    assert "resumes on the next run" in info.value.msg and "raise timeout" in info.value.fix
    partial = _provider(models).staging(COMMIT).partial_path("model.safetensors")
    assert os.path.getsize(partial) == 200, "what was downloaded is kept"


def test_a_file_that_fails_stops_the_others_and_names_the_file(tmp_path, hub):
    models = tmp_path / "models"
    hub.fail["config.json"] = RuntimeError("boom")
    with pytest.raises(ProviderError) as info:
        _run(models)
    assert "Downloading config.json of org/model: RuntimeError: boom" in info.value.msg
    assert Manifest(str(models)).get("org/model", "huggingface") is None
    hub.fail["config.json"] = ProviderError("already a VenomError", fix="as it is")
    with pytest.raises(ProviderError) as info:
        _run(models)
    assert info.value.msg == "already a VenomError" and info.value.fix == "as it is", "passed on as it is"


def test_download_all_raises_a_venom_error_as_it_is_and_stops_the_others(tmp_path, hub, monkeypatch):
    prov = _provider(tmp_path / "models")
    stage = prov.staging(COMMIT).ensure()
    stops = []

    def one(self, stage, spec, headers, progress, stop, deadline):
        if spec.path == "a":
            raise IntegrityError("bad a", fix="x")
        stops.append(stop.wait(5))
        return {"sha256": "0"}
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_download_one", one)
    with pytest.raises(IntegrityError, match="bad a"):
        prov._download_all(stage, [FileSpec("a", 1), FileSpec("b", 2)], Progress())   # pylint: disable=protected-access
    assert stops == [True], "the other download was told to stop"

    def other(self, stage, spec, headers, progress, stop, deadline):
        raise ConnectionError("refused")
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_download_one", other)
    with pytest.raises(VenomError) as info:
        prov._download_all(stage, [FileSpec("a", 1)], Progress())   # pylint: disable=protected-access
    assert f"cannot reach {_hf.DEFAULT_ENDPOINT}" in info.value.msg and "Downloading org/model" in info.value.msg

    def fine(self, stage, spec, headers, progress, stop, deadline):
        return {"sha256": spec.path}
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_download_one", fine)
    assert prov._download_all(stage, [FileSpec(str(n), n) for n in range(12)], Progress()) == \
        {str(n): {"sha256": str(n)} for n in range(12)}   # pylint: disable=protected-access


def test_check_mode_predicts_the_capabilities_from_the_small_files_only(tmp_path, hub):
    out = _run(tmp_path / "models", check=True)
    assert out["model"]["capabilities"]["max_context_length"] == 2048 and out["plan"]["capabilities_predicted"]
    assert sorted(p for p, _r in hub.gets) == ["config.json"], "never the weights"
    assert not os.path.exists(tmp_path / "models" / "huggingface")


def test_nothing_matching_the_selection_names_the_patterns(tmp_path, hub):
    from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError   # pylint: disable=import-outside-toplevel
    with pytest.raises(NotFoundError) as info:
        _run(tmp_path / "models", allow_patterns=["*.gguf"], ignore_patterns=["x"])
    assert f"No file of org/model@{COMMIT[:12]} matches allow_patterns ['*.gguf']" in info.value.msg
    assert "ignore_patterns ['x'] (3 files in the repository)" in info.value.msg


def test_a_hub_that_returns_no_commit_is_refused(tmp_path, hub, monkeypatch):
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info", lambda self, revision: types.SimpleNamespace(sha=None))
    with pytest.raises(ProviderError) as info:
        _run(tmp_path / "models", revision="v1")
    assert "returned no commit id for org/model@v1" in info.value.msg


def test_the_revision_asked_is_the_recorded_one_when_the_task_gives_none(tmp_path, hub, monkeypatch):
    asked = []
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info",
                        lambda self, revision: asked.append(revision) or types.SimpleNamespace(sha=COMMIT))
    models = tmp_path / "models"
    _run(models, revision="v1")
    entry = Manifest(str(models)).get("org/model", "huggingface")
    assert entry["requested_revision"] == "v1" and asked == ["v1"]
    _provider(models).resolve(entry)
    _provider(models).resolve(dict(entry, requested_revision=None))
    _provider(models).resolve(None)
    assert asked[1:] == ["v1", COMMIT, "main"]


def test_every_file_request_carries_the_token_and_names_the_endpoint_repository_commit_and_file(tmp_path, hub):
    token = "hf_" + "t" * 34
    out = _run(tmp_path / "models", endpoint="http://mirror.example:8090", token=token)
    assert out["changed"]
    urls = sorted(url for url, _h, _s in hub.requests)
    assert urls == sorted(f"http://mirror.example:8090/org/model/resolve/{COMMIT}/{p}" for p in FILES)
    for url, headers, expected in hub.requests:
        assert {k.lower(): v for k, v in headers.items()}["authorization"] == f"Bearer {token}"
        assert expected == len(FILES[url.rsplit(f"{COMMIT}/", 1)[1]])
    entry = Manifest(str(tmp_path / "models")).get("org/model", "huggingface")
    assert entry["source"] == {"endpoint": "http://mirror.example:8090"} and token not in str(entry)


def test_a_partial_as_long_as_the_file_is_verified_without_a_request(tmp_path, hub):
    models = tmp_path / "models"
    prov = _provider(models)
    stage = prov.staging(COMMIT).ensure()
    with open(stage.partial_path("config.json"), "wb") as fh:
        fh.write(CONFIG)
    spec = FileSpec("config.json", len(CONFIG), git_oid=_git_oid(CONFIG))

    def complete(url, fileobj, resume_size=0, headers=None, expected_size=None):
        assert resume_size == expected_size == len(CONFIG)   # http_get then asks nothing
    _hf.http_get, real = complete, _hf.http_get
    try:
        progress = Progress()
        digests = prov._download_one(stage, spec, {}, progress, threading.Event(), None)   # pylint: disable=protected-access
    finally:
        _hf.http_get = real
    assert digests["git_oid"] == _git_oid(CONFIG) and stage.verified(spec)
    assert progress.done == len(CONFIG) and progress.transferred == 0


def test_check_mode_reads_a_capability_file_up_to_the_limit_and_no_larger(tmp_path, hub, monkeypatch):
    limit = 4096   # MAX_CAPABILITY_FILE_BYTES (64 MiB), made small for the test
    monkeypatch.setattr(_hf, "MAX_CAPABILITY_FILE_BYTES", limit)
    hub.files = {"config.json": CONFIG.ljust(limit), "tokenizer_config.json": b"{}".ljust(limit + 1)}
    prov = _provider(tmp_path / "models", token="hf_secret")
    target = Target(COMMIT, "main", [FileSpec(p, len(d)) for p, d in hub.files.items()] +
                    [FileSpec("model.safetensors", 5)], None)
    caps = prov.predict_capabilities(target)
    assert [p for p, _r in hub.gets] == ["config.json"] and caps["max_context_length"] == 2048
    assert {k.lower(): v for k, v in hub.requests[0][1].items()}["authorization"] == "Bearer hf_secret"
    hub.fail["config.json"] = ConnectionError("reset")
    with pytest.raises(ProviderError) as info:
        prov.predict_capabilities(target)
    assert info.value.msg.startswith("Reading config.json of org/model: cannot reach https://huggingface.co")


def test_huggingface_hub_hands_the_download_over_in_chunks_of_a_mebibyte_at_most():
    from huggingface_hub import constants   # pylint: disable=import-outside-toplevel
    before = constants.DOWNLOAD_CHUNK_SIZE
    try:
        for given, after in ((10 * 1024 * 1024, 1024 * 1024), (1024 * 1024 + 1, 1024 * 1024), (4096, 4096)):
            constants.DOWNLOAD_CHUNK_SIZE = given
            _hf._smaller_download_chunks()   # pylint: disable=protected-access
            assert constants.DOWNLOAD_CHUNK_SIZE == after
    finally:
        constants.DOWNLOAD_CHUNK_SIZE = before


def _spec_of(path):
    data = FILES[path]
    return FileSpec(path, len(data), sha256=hashlib.sha256(data).hexdigest() if path in LFS else None,
                    git_oid=None if path in LFS else _git_oid(data), lfs=path in LFS)


def test_a_repair_keeps_the_requested_revision_and_the_file_selection(tmp_path, hub):
    models = tmp_path / "models"
    _run(models, revision="v1", ignore_patterns=["sub/"])
    entry = Manifest(str(models)).get("org/model", "huggingface")
    os.unlink(os.path.join(_final(models), "config.json"))
    hub.gets.clear()
    fields = _provider(models, revision="v1", ignore_patterns=["sub/"]).repair(
        entry, [Problem(path="config.json", kind="missing")], Progress())
    assert hub.gets == [("config.json", 0)]
    assert fields["requested_revision"] == "v1" and fields["revision"] == COMMIT
    assert fields["ignore_patterns"] == ["sub/"] and fields["allow_patterns"] is None
    assert fields["source"] == {"endpoint": "https://huggingface.co"}


def test_a_repair_of_a_missing_directory_never_resumes_an_old_partial(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    entry = Manifest(str(models)).get("org/model", "huggingface")
    import shutil   # pylint: disable=import-outside-toplevel
    shutil.rmtree(_final(models))
    stage = _provider(models).staging(COMMIT).ensure()
    with open(stage.partial_path("model.safetensors"), "wb") as fh:
        fh.write(b"\xff" * 100)
    hub.gets.clear()
    _provider(models).repair(entry, [Problem(path=".", kind="missing")], Progress())
    assert sorted(hub.gets) == sorted((p, 0) for p in FILES), "every file fetched from its start, once"
    assert _read(os.path.join(_final(models), "model.safetensors")) == WEIGHTS


def test_a_repair_reads_and_fetches_only_the_files_named_damaged(tmp_path, hub, monkeypatch):
    models = tmp_path / "models"
    _run(models)
    entry = Manifest(str(models)).get("org/model", "huggingface")
    os.unlink(os.path.join(_final(models), "config.json"))
    hashed = []
    real = _hf.Hasher.feed_file
    monkeypatch.setattr(_hf.Hasher, "feed_file", lambda self, path, *a, **kw: hashed.append(path) or real(
        self, path, *a, **kw))
    hub.gets.clear()
    fields = _provider(models).repair(entry, [Problem(path="config.json", kind="missing")], Progress())
    assert hub.gets == [("config.json", 0)] and hashed == [], "the healthy files are neither read nor fetched"
    assert [f["sha256"] for f in fields["files"]] == [f["sha256"] for f in entry["files"]]
    assert _read(os.path.join(_final(models), "config.json")) == CONFIG


def test_up_to_eight_files_download_at_once_the_largest_first(tmp_path, hub, monkeypatch):
    prov = _provider(tmp_path / "models")
    stage = prov.staging(COMMIT).ensure()
    barrier = threading.Barrier(8, timeout=5)
    lock = threading.Lock()
    started, running = [], {"now": 0, "peak": 0}

    def one(self, stage, spec, headers, progress, stop, deadline):
        with lock:
            started.append(spec.size)
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
            first_eight = len(started) <= 8
        if first_eight:
            barrier.wait()   # all eight run together, or this breaks after 5 s
        with lock:
            running["now"] -= 1
        return {"sha256": spec.path}
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_download_one", one)
    specs = [FileSpec(f"f{n}", n) for n in range(1, 10)]
    out = prov._download_all(stage, specs, Progress())   # pylint: disable=protected-access
    assert set(out) == {s.path for s in specs}
    assert running["peak"] == 8 and started[-1] == 1, "eight at a time; the smallest waits for a free slot"
    assert sorted(started[:8]) == list(range(2, 10))


def test_a_download_without_a_timeout_has_no_time_limit(tmp_path, hub, monkeypatch):
    models = tmp_path / "models"
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(_hf, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    real = hub.http_get

    def slow(url, fileobj, resume_size=0, headers=None, expected_size=None):
        clock.now += 10 ** 6
        real(url, fileobj, resume_size=resume_size, headers=headers, expected_size=expected_size)
    monkeypatch.setattr(_hf, "http_get", slow)
    out = _run(models)
    assert out["changed"] and _read(os.path.join(_final(models), "model.safetensors")) == WEIGHTS


def test_a_timeout_message_shows_a_fractional_timeout_as_given(tmp_path, hub, monkeypatch):
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(_hf, "time", types.SimpleNamespace(monotonic=lambda: clock.now))

    def slow(url, fileobj, resume_size=0, headers=None, expected_size=None):
        clock.now += 3
        fileobj.write(b"x")
    monkeypatch.setattr(_hf, "http_get", slow)
    with pytest.raises(ProviderError) as info:
        _run(tmp_path / "models", timeout=2.5, allow_patterns=["*.safetensors"])
    assert "took longer than timeout=2.5s;" in info.value.msg


def test_the_progress_of_an_install_starts_at_the_bytes_already_staged(tmp_path, hub):
    models = tmp_path / "models"
    prov = _provider(models)
    stage = prov.staging(COMMIT).ensure()
    path = stage.partial_path("config.json")
    with open(path, "wb") as fh:
        fh.write(CONFIG)
    stage.place(path, _spec_of("config.json"), {"sha256": hashlib.sha256(CONFIG).hexdigest()})
    target = prov.resolve(None)
    seen = []
    progress = Progress(lambda done, total, message, force: seen.append((done, total, message)))
    prov.install(target, progress)
    total = sum(len(d) for d in FILES.values())
    assert seen[0] == (len(CONFIG), total, f"downloading 2 file(s) of org/model@{COMMIT[:12]}")
    assert progress.done == total and progress.transferred == total - len(CONFIG)


def test_a_partial_longer_than_its_file_counts_as_its_size_at_most_in_the_plan(tmp_path, hub):
    models = tmp_path / "models"
    prov = _provider(models)
    stage = prov.staging(COMMIT).ensure()
    os.makedirs(os.path.dirname(stage.partial_path("sub/tokenizer.json")))
    with open(stage.partial_path("sub/tokenizer.json"), "wb") as fh:
        fh.write(TOKENIZER + b"junk")
    target = prov.resolve(None)
    assert target.staged_bytes == len(TOKENIZER) and target.pending == sorted(FILES)
    assert target.fetch_bytes == len(CONFIG) + len(WEIGHTS)


def test_a_resolved_file_carries_the_digest_the_hub_publishes_for_it(tmp_path, hub):
    target = _provider(tmp_path / "models", allow_patterns=["*.json", "model.*"]).resolve(None)
    specs = {s.path: s for s in target.files}
    assert specs["model.safetensors"] == FileSpec("model.safetensors", len(WEIGHTS),
                                                  sha256=hashlib.sha256(WEIGHTS).hexdigest(), git_oid=None, lfs=True)
    assert specs["config.json"] == FileSpec("config.json", len(CONFIG), sha256=None, git_oid=_git_oid(CONFIG),
                                            lfs=False)
    assert target.revision == COMMIT and target.requested_revision == "main"
    assert target.local_path == _final(tmp_path / "models") and target.disk_path == str(tmp_path / "models")
    assert target.extra == {"allow_patterns": ["*.json", "model.*"], "ignore_patterns": None,
                            "source": {"endpoint": "https://huggingface.co"}}


def test_a_partial_download_lives_in_a_directory_private_to_the_service(tmp_path, hub):
    prov = _provider(tmp_path / "models")
    stage = prov.staging(COMMIT).ensure()
    umask = os.umask(0)
    try:
        prov._download_one(stage, _spec_of("sub/tokenizer.json"), {}, Progress(), threading.Event(), None)   # pylint: disable=protected-access
    finally:
        os.umask(umask)
    assert os.stat(os.path.join(stage.partial, "sub")).st_mode & 0o777 == 0o750
    assert _read(stage.tree_path("sub/tokenizer.json")) == TOKENIZER


def test_a_hub_error_that_mentions_a_consistency_check_is_not_retried(tmp_path, hub):
    import httpx2 as httpx   # pylint: disable=import-outside-toplevel
    from huggingface_hub import errors as hub_errors   # pylint: disable=import-outside-toplevel
    response = httpx.Response(500, request=httpx.Request("GET", "https://huggingface.co/x"))
    hub.fail["config.json"] = hub_errors.HfHubHTTPError("Consistency check failed upstream", response=response)
    prov = _provider(tmp_path / "models")
    with pytest.raises(VenomError) as info:
        prov._download_one(prov.staging(COMMIT).ensure(), _spec_of("config.json"), {}, Progress(),   # pylint: disable=protected-access
                           threading.Event(), None)
    assert hub.gets == [("config.json", 0)] and "failed with HTTP 500" in info.value.msg


def test_a_huggingface_hub_without_a_chunk_size_setting_is_left_alone(monkeypatch):
    from huggingface_hub import constants   # pylint: disable=import-outside-toplevel
    monkeypatch.delattr(constants, "DOWNLOAD_CHUNK_SIZE")
    _hf._smaller_download_chunks()   # pylint: disable=protected-access
    assert not hasattr(constants, "DOWNLOAD_CHUNK_SIZE")


def test_a_repair_of_a_removed_version_directory_makes_it_readable_by_all_and_writable_by_the_service(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    entry = Manifest(str(models)).get("org/model", "huggingface")
    import shutil   # pylint: disable=import-outside-toplevel
    shutil.rmtree(os.path.join(str(models), "huggingface", "org"))
    umask = os.umask(0)
    try:
        _provider(models).repair(entry, [Problem(path=".", kind="missing")], Progress())
    finally:
        os.umask(umask)
    assert os.stat(_final(models)).st_mode & 0o777 == 0o755
    assert _read(os.path.join(_final(models), "sub", "tokenizer.json")) == TOKENIZER


def test_files_in_the_staging_tree_without_a_record_are_adopted_after_recorded_ones(tmp_path):
    stage = _hf.StagingArea(str(tmp_path / "s")).ensure()
    specs = [_spec_of(p) for p in ("config.json", "model.safetensors", "sub/tokenizer.json")]
    os.makedirs(os.path.dirname(stage.tree_path("sub/tokenizer.json")))
    for spec in specs:
        with open(stage.tree_path(spec.path), "wb") as fh:
            fh.write(FILES[spec.path])
    stage.record(specs[0], {"sha256": hashlib.sha256(CONFIG).hexdigest(), "git_oid": _git_oid(CONFIG)})
    assert stage.verified(specs[0])
    with open(stage.tree_path("sub/tokenizer.json"), "r+b") as fh:
        fh.write(b"X")   # same size, other content: not adopted
    _hf.HuggingFaceProvider._adopt_unrecorded(stage, specs)   # pylint: disable=protected-access
    fresh = _hf.StagingArea(stage.root)
    assert [fresh.verified(s) for s in specs] == [True, True, False]
    assert fresh.state()["model.safetensors"] == {"size": len(WEIGHTS), "sha256": hashlib.sha256(WEIGHTS).hexdigest()}
    os.unlink(stage.tree_path("sub/tokenizer.json"))
    with open(stage.tree_path("sub/tokenizer.json"), "wb") as fh:
        fh.write(TOKENIZER + b" ")   # another size: not even read
    _hf.HuggingFaceProvider._adopt_unrecorded(stage, specs)   # pylint: disable=protected-access
    assert not _hf.StagingArea(stage.root).verified(specs[2])


def test_check_mode_reads_the_capability_files_from_the_endpoint_at_the_commit_into_a_temporary_directory(
        tmp_path, hub, monkeypatch):
    import tempfile   # pylint: disable=import-outside-toplevel
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    written = []
    real = hub.http_get

    def noting(url, fileobj, resume_size=0, headers=None, expected_size=None):
        written.append(fileobj.name)
        real(url, fileobj, resume_size=resume_size, headers=headers, expected_size=expected_size)
    monkeypatch.setattr(_hf, "http_get", noting)
    prov = _provider(tmp_path / "models", endpoint="http://mirror:8090")
    target = Target(COMMIT, "main", [_spec_of(p) for p in FILES], None)
    assert prov.predict_capabilities(target)["max_context_length"] == 2048
    assert hub.requests == [(f"http://mirror:8090/org/model/resolve/{COMMIT}/config.json", hub.requests[0][1],
                             len(CONFIG))]
    assert os.path.basename(os.path.dirname(written[0])).startswith("venom-check-")
    assert os.listdir(scratch) == [], "the temporary directory is removed"


def test_a_temporary_directory_cleaned_away_during_check_mode_fails_with_the_reason_not_the_cleanup(
        tmp_path, hub, monkeypatch):
    import shutil   # pylint: disable=import-outside-toplevel
    real = hub.http_get

    def cleaned(url, fileobj, resume_size=0, headers=None, expected_size=None):
        real(url, fileobj, resume_size=resume_size, headers=headers, expected_size=expected_size)
        shutil.rmtree(os.path.dirname(fileobj.name))   # a tmp cleaner at work
    monkeypatch.setattr(_hf, "http_get", cleaned)
    target = Target(COMMIT, "main", [_spec_of("config.json")], None)
    with pytest.raises(VenomError) as info:
        _provider(tmp_path / "models").predict_capabilities(target)
    assert "is not a directory" in info.value.msg


def test_check_mode_names_the_commit_when_a_mirror_fails_on_a_capability_file(tmp_path, hub):
    import httpx2 as httpx   # pylint: disable=import-outside-toplevel
    from huggingface_hub import errors as hub_errors   # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError   # pylint: disable=import-outside-toplevel
    response = httpx.Response(500, request=httpx.Request("GET", "http://mirror:8090/x"))
    hub.fail["config.json"] = hub_errors.HfHubHTTPError("500 Server Error", response=response)
    target = Target(COMMIT, "main", [_spec_of("config.json")], None)
    with pytest.raises(NotFoundError) as info:
        _provider(tmp_path / "models").predict_capabilities(target)
    assert info.value.msg.startswith(f"Reading config.json of org/model: https://huggingface.co failed with HTTP 500 "
                                     f"for commit {COMMIT} of org/model")


def test_a_file_completing_a_selection_in_place_arrives_with_the_mode_asked(tmp_path, hub, monkeypatch):
    models = tmp_path / "models"
    _run(models, allow_patterns=["*.json"], mode="0600")
    seen = {}
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).startswith(_final(models)):
            seen[os.path.relpath(dst, _final(models))] = os.stat(src).st_mode & 0o777
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    hub.gets.clear()
    out = _run(models, mode="0600")
    assert out["action"] == "sync" and hub.gets == [("model.safetensors", 0)]
    assert seen == {"model.safetensors": 0o600}, "never visible in place with another mode"


def test_a_new_version_directory_appears_with_the_mode_asked(tmp_path, hub, monkeypatch):
    models = tmp_path / "models"
    seen = {}
    real_rename = os.rename

    def rename(src, dst):
        if dst == _final(models):
            for root, dirs, files in os.walk(src):
                for name in dirs + files:
                    full = os.path.join(root, name)
                    seen[os.path.relpath(full, src)] = os.stat(full).st_mode & 0o777
        return real_rename(src, dst)
    monkeypatch.setattr(os, "rename", rename)
    _run(models, mode="0600")
    assert seen == {"config.json": 0o600, "model.safetensors": 0o600, "sub": 0o700, "sub/tokenizer.json": 0o600}


def test_an_installed_copy_of_the_same_commit_elsewhere_is_not_taken_for_the_new_place(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    entry = Manifest(str(models)).get("org/model", "huggingface")
    elsewhere = os.path.join(str(models), "huggingface", "org", "copy")
    os.rename(_final(models), elsewhere)
    prov = _provider(models)
    target = prov.resolve(entry)
    hub.gets.clear()
    fields = prov.install(target, Progress(), entry=dict(entry, local_path=elsewhere))
    assert sorted(p for p, _r in hub.gets) == sorted(FILES), "every file fetched for the version directory"
    assert fields["local_path"] == _final(models)
    for path, data in FILES.items():
        assert _read(os.path.join(_final(models), path)) == data


def test_a_writer_still_writes_at_the_deadline_itself_and_stops_just_after(tmp_path, monkeypatch):
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(_hf, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    path = str(tmp_path / "partial")
    with open(path, "ab") as fh:
        writer = _hf._HashingWriter(fh, FileSpec("w", 3), _hf.Hasher(3), Progress(), threading.Event(),   # pylint: disable=protected-access
                                    1005.0, path)
        clock.now = 1005.0
        assert writer.write(b"a") == 1
        clock.now = 1005.001
        with pytest.raises(_hf._Abort, match="timeout"):   # pylint: disable=protected-access
            writer.write(b"b")
    assert _read(path) == b"a"


def test_a_hub_error_out_of_a_download_thread_names_the_commit_being_downloaded(tmp_path, hub, monkeypatch):
    import httpx2 as httpx   # pylint: disable=import-outside-toplevel
    from huggingface_hub import errors as hub_errors   # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError   # pylint: disable=import-outside-toplevel
    prov = _provider(tmp_path / "models", endpoint="http://mirror:8090")
    stage = prov.staging(COMMIT).ensure()

    def one(self, stage, spec, headers, progress, stop, deadline):
        response = httpx.Response(502, request=httpx.Request("GET", "http://mirror:8090/x"))
        raise hub_errors.HfHubHTTPError("502 Bad Gateway", response=response)
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_download_one", one)
    with pytest.raises(NotFoundError) as info:
        prov._download_all(stage, [FileSpec("a", 1)], Progress())   # pylint: disable=protected-access
    assert info.value.msg.startswith(
        f"Downloading org/model: http://mirror:8090 failed with HTTP 502 for commit {COMMIT}")


def test_bytes_of_a_corrupt_download_thrown_away_count_as_transferred_but_not_as_done(tmp_path, hub):
    hub.serve["config.json"] = b"X" + CONFIG[1:]
    served = []
    real = hub.http_get

    def corrupt_once(url, fileobj, resume_size=0, headers=None, expected_size=None):
        served.append(url)
        if len(served) == 2:
            hub.serve.clear()
        real(url, fileobj, resume_size=resume_size, headers=headers, expected_size=expected_size)
    _hf.http_get, saved = corrupt_once, _hf.http_get
    try:
        prov = _provider(tmp_path / "models")
        stage = prov.staging(COMMIT).ensure()
        progress = Progress()
        prov._download_one(stage, _spec_of("config.json"), {}, progress, threading.Event(), None)   # pylint: disable=protected-access
    finally:
        _hf.http_get = saved
    assert len(served) == 2 and _read(stage.tree_path("config.json")) == CONFIG
    assert progress.done == len(CONFIG) and progress.transferred == 2 * len(CONFIG)


def test_one_installed_file_with_another_git_id_does_not_stop_the_others_being_reused(tmp_path, hub):
    models = tmp_path / "models"
    _run(models)
    entry = Manifest(str(models)).get("org/model", "huggingface")
    target = Target(COMMIT, "main", [_spec_of(p) for p in FILES], _final(models))
    changed = [dict(f, git_oid="0" * 40) if f["path"] == "config.json" else f for f in entry["files"]]
    assert _provider(models)._reusable(dict(entry, files=changed), target) == {   # pylint: disable=protected-access
        "model.safetensors", "sub/tokenizer.json"}
    wrong_size = [dict(f, size=1) if f["path"] == "config.json" else f for f in entry["files"]]
    assert _provider(models)._reusable(dict(entry, files=wrong_size), target) == {   # pylint: disable=protected-access
        "model.safetensors", "sub/tokenizer.json"}


def test_a_mirror_failing_to_list_a_commit_names_that_commit(tmp_path, hub, monkeypatch):
    import httpx2 as httpx   # pylint: disable=import-outside-toplevel
    from huggingface_hub import errors as hub_errors   # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError   # pylint: disable=import-outside-toplevel

    def failing(repo, revision=None, recursive=False):
        response = httpx.Response(500, request=httpx.Request("GET", "http://mirror:8090/api/x"))
        raise hub_errors.HfHubHTTPError("500 Server Error", response=response)
    monkeypatch.setattr(hub, "list_repo_tree", failing)
    with pytest.raises(NotFoundError) as info:
        _provider(tmp_path / "models", endpoint="http://mirror:8090").resolve(None)
    assert info.value.msg.startswith(f"Listing the files of org/model@{COMMIT[:12]}: http://mirror:8090 failed with "
                                     f"HTTP 500 for commit {COMMIT} of org/model")


def test_a_revision_the_hub_does_not_know_is_named_in_the_error(tmp_path, hub, monkeypatch):
    import httpx2 as httpx   # pylint: disable=import-outside-toplevel
    from huggingface_hub.utils import hf_raise_for_status   # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError   # pylint: disable=import-outside-toplevel

    def unknown(self, revision):
        url = f"https://huggingface.co/api/models/org/model/revision/{revision}"
        hf_raise_for_status(httpx.Response(404, headers={"X-Error-Code": "RevisionNotFound"},
                                           request=httpx.Request("GET", url)))
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info", unknown)
    with pytest.raises(NotFoundError) as info:
        _provider(tmp_path / "models", revision="v9").resolve(None)
    assert info.value.msg == "The revision 'v9' does not exist in org/model at https://huggingface.co."


def test_a_folder_listed_before_the_files_does_not_end_the_listing(tmp_path, hub, monkeypatch):
    items = list(hub.items())
    monkeypatch.setattr(hub, "list_repo_tree", lambda repo, revision=None, recursive=False: items[-1:] + items[:-1])
    target = _provider(tmp_path / "models").resolve(None)
    assert sorted(s.path for s in target.files) == sorted(FILES)


def test_a_hub_that_returns_no_commit_is_refused_with_the_fix(tmp_path, hub, monkeypatch):
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info", lambda self, revision: types.SimpleNamespace(sha="v1"))
    with pytest.raises(ProviderError) as info:
        _provider(tmp_path / "models", endpoint="http://mirror:8090").resolve(None)
    assert info.value.msg == "http://mirror:8090 returned no commit id for org/model@main."
    assert info.value.fix == "Check that the endpoint is a Hugging Face Hub API or mirror."


def test_nothing_matching_the_selection_says_how_to_loosen_it(tmp_path, hub):
    from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError   # pylint: disable=import-outside-toplevel
    with pytest.raises(NotFoundError) as info:
        _run(tmp_path / "models", allow_patterns=["*.gguf"])
    assert info.value.fix == "Loosen allow_patterns / ignore_patterns (globs such as '*.safetensors', 'onnx/')."
