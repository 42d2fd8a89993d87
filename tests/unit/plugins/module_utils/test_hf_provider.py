# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hugging Face provider's pure logic: error mapping, endpoint checks, redaction, resumed writes."""
from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf
from ansible_collections.venom.models.plugins.module_utils.errors import (
    IntegrityError, NotFoundError, ProviderError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec, ModelRequest, Progress

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub.utils import hf_raise_for_status  # noqa: E402

try:  # huggingface_hub 2.x talks through httpx2, 1.x through httpx
    import httpx2 as httpx
except ImportError:
    import httpx

TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123456789"


_hf.load_hub()


def _provider(tmp_path, **kw):
    req = ModelRequest(name=kw.pop("name", "org/model"), models_dir=str(tmp_path), **kw)
    return _hf.HuggingFaceProvider(req, StatePaths(str(tmp_path)))


def _hub_error(status: int, code: str | None, url: str = "https://huggingface.co/api/models/org/model/revision/main"):
    """The exception huggingface_hub raises for the Hub's answer (status + X-Error-Code)."""
    headers = {"X-Error-Code": code, "X-Error-Message": code} if code else {}
    response = httpx.Response(status, headers=headers, request=httpx.Request("GET", url))
    try:
        hf_raise_for_status(response)
    except Exception as exc:  # pylint: disable=broad-except
        return exc
    raise AssertionError("no error raised")


def test_redact_and_endpoint():
    assert _hf.redact(f"Bearer {TOKEN} x", TOKEN) == "Bearer ******** x"
    assert _hf.redact("nothing", None) == "nothing"
    assert _hf.validate_endpoint(None) == "https://huggingface.co"
    assert _hf.validate_endpoint("http://mirror:8090/") == "http://mirror:8090"
    for bad in ("ftp://x", "mirror:8090", "http://user:pw@mirror", "http://a b"):
        with pytest.raises(ValidationError):
            _hf.validate_endpoint(bad)


def test_gated_repo_without_and_with_token(tmp_path):
    exc = _hub_error(403, "GatedRepo")
    err = _provider(tmp_path)._translate(exc, "main", "Resolving")  # pylint: disable=protected-access
    assert isinstance(err, ProviderError) and "is gated" in err.msg and "no token was given" in err.msg
    assert "Accept the model's conditions" in err.fix
    err = _provider(tmp_path, token=TOKEN)._translate(exc, "main", "Resolving")  # pylint: disable=protected-access
    assert "has no access" in err.msg and TOKEN not in str(err)


def test_repo_and_revision_not_found(tmp_path, monkeypatch):
    prov = _provider(tmp_path)
    err = prov._translate(_hub_error(401, "RepoNotFound"), "main", "Resolving")  # pylint: disable=protected-access
    assert isinstance(err, NotFoundError) and "was not found" in err.msg and "private or gated" in err.msg
    err = prov._translate(_hub_error(404, "RevisionNotFound"), "v9", "Resolving")  # pylint: disable=protected-access
    assert isinstance(err, NotFoundError) and "revision 'v9' does not exist" in err.msg
    # a mirror that answers RepoNotFound for an unknown revision: probe main to tell them apart
    monkeypatch.setattr(prov, "_exists_at", lambda rev: rev == "main")
    err = prov._translate(_hub_error(401, "RepoNotFound"), "v9", "Resolving")  # pylint: disable=protected-access
    assert "revision 'v9' does not exist" in err.msg and "repository itself exists" in err.msg


def test_http_status_mapping(tmp_path):
    prov = _provider(tmp_path, token=TOKEN)
    err = prov._translate(_hub_error(401, None), "main", "Resolving")  # pylint: disable=protected-access
    assert isinstance(err, (ProviderError, NotFoundError))
    commit = "a" * 40
    err = prov._translate(_hub_error(500, None), commit, "Resolving")  # pylint: disable=protected-access
    assert isinstance(err, NotFoundError) and commit in err.msg
    err = prov._translate(_hub_error(503, None), "main", "Resolving")  # pylint: disable=protected-access
    assert "HTTP 503" in err.msg


def test_network_and_offline_errors(tmp_path):
    prov = _provider(tmp_path, endpoint="http://127.0.0.1:9")
    err = prov._translate(httpx.ConnectError("connection refused"), "main", "Resolving")  # pylint: disable=protected-access
    assert "cannot reach http://127.0.0.1:9" in err.msg and "resumes" in err.msg
    err = prov._translate(hf.errors.OfflineModeIsEnabled("offline"), "main", "Resolving")  # pylint: disable=protected-access
    assert "HF_HUB_OFFLINE" in err.msg
    err = prov._translate(OSError(28, "No space left on device"), "main", "Downloading")  # pylint: disable=protected-access
    assert type(err).__name__ == "QuotaError"


def test_satisfies_compares_revision_and_selection(tmp_path):
    entry = {"status": "installed", "revision": "c" * 40, "requested_revision": "main",
             "allow_patterns": None, "ignore_patterns": None}
    assert _provider(tmp_path).satisfies(entry)
    assert _provider(tmp_path, revision="main").satisfies(entry)
    assert _provider(tmp_path, revision="c" * 40).satisfies(entry)
    assert not _provider(tmp_path, revision="v2").satisfies(entry)
    assert not _provider(tmp_path, allow_patterns=["*.json"]).satisfies(entry)
    assert not _provider(tmp_path).satisfies(dict(entry, status="damaged"))


DATA = bytes(range(256)) * 4096  # 1 MiB


def _spec(lfs=True):
    return FileSpec("w.safetensors", len(DATA), sha256=hashlib.sha256(DATA).hexdigest() if lfs else None,
                    git_oid=None if lfs else hashlib.sha1(b"blob %d\0" % len(DATA) + DATA).hexdigest(), lfs=lfs)


def _download(tmp_path, monkeypatch, fake_get, spec, partial: bytes = b""):
    prov = _provider(tmp_path)
    stage = prov.staging("c" * 40).ensure()
    if partial:
        with open(stage.partial_path(spec.path), "wb") as fh:
            fh.write(partial)
    _hf.load_hub()
    monkeypatch.setattr(_hf, "http_get", fake_get)
    import threading  # pylint: disable=import-outside-toplevel
    progress = Progress()
    digests = prov._download_one(stage, spec, {}, progress, threading.Event(), None)  # pylint: disable=protected-access
    return stage, digests, progress


@pytest.mark.parametrize("lfs", [True, False])
def test_resume_with_range(tmp_path, monkeypatch, lfs):
    calls = []

    def fake_get(url, fileobj, resume_size=0, headers=None, expected_size=None):
        calls.append(resume_size)
        fileobj.write(DATA[resume_size:])  # a server honouring Range sends the rest

    spec = _spec(lfs)
    stage, digests, progress = _download(tmp_path, monkeypatch, fake_get, spec, partial=DATA[:300000])
    assert calls == [300000]
    assert digests["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert progress.transferred == len(DATA) - 300000 and progress.done == len(DATA)
    with open(stage.tree_path(spec.path), "rb") as fh:
        assert fh.read() == DATA
    assert stage.verified(spec)


def test_resume_when_server_ignores_range(tmp_path, monkeypatch):
    def fake_get(url, fileobj, resume_size=0, headers=None, expected_size=None):
        # what http_get does on a 200 to a Range request: rewind, truncate, write everything
        fileobj.seek(max(fileobj.tell() - resume_size, 0))
        fileobj.truncate()
        fileobj.write(DATA)

    stage, digests, _progress = _download(tmp_path, monkeypatch, fake_get, _spec(), partial=DATA[:5000])
    assert digests["sha256"] == hashlib.sha256(DATA).hexdigest()


def test_corrupt_download_retried_once_then_integrity_error(tmp_path, monkeypatch):
    sent = []

    def bad_then_good(url, fileobj, resume_size=0, headers=None, expected_size=None):
        sent.append(1)
        fileobj.write(DATA if len(sent) > 1 else b"x" + DATA[1:])

    _stage, digests, _p = _download(tmp_path, monkeypatch, bad_then_good, _spec())
    assert len(sent) == 2 and digests["sha256"] == hashlib.sha256(DATA).hexdigest()

    def always_bad(url, fileobj, resume_size=0, headers=None, expected_size=None):
        fileobj.write(b"x" + DATA[1:])

    with pytest.raises(IntegrityError) as info:
        _download(tmp_path / "2", monkeypatch, always_bad, _spec())
    assert "after a retry" in info.value.msg
    assert not os.listdir(os.path.join(str(tmp_path / "2"), ".venom", "staging", os.listdir(
        os.path.join(str(tmp_path / "2"), ".venom", "staging"))[0], "c" * 40, "tree"))


def test_partial_longer_than_file_starts_over(tmp_path, monkeypatch):
    calls = []

    def fake_get(url, fileobj, resume_size=0, headers=None, expected_size=None):
        calls.append(resume_size)
        fileobj.write(DATA[resume_size:])

    _download(tmp_path, monkeypatch, fake_get, _spec(), partial=DATA + b"junk")
    assert calls == [0]


@pytest.mark.parametrize("lfs", [True, False])
def test_a_staged_file_of_the_right_size_but_wrong_content_is_not_adopted(tmp_path, lfs):
    """A file found in the staging tree without a record (run killed between move and record) is
    taken only if its digest matches; same size is not enough."""
    good = b"the real weights"
    bad = b"the fake weights"
    assert len(good) == len(bad)
    spec = FileSpec("w.bin", len(good), sha256=hashlib.sha256(good).hexdigest() if lfs else None, lfs=lfs,
                    git_oid=None if lfs else hashlib.sha1(b"blob %d\0" % len(good) + good).hexdigest())
    for data, adopted in ((bad, False), (good, True)):
        stage = _hf.StagingArea(str(tmp_path / ("good" if adopted else "bad"))).ensure()
        with open(stage.tree_path("w.bin"), "wb") as fh:
            fh.write(data)
        _hf.HuggingFaceProvider._adopt_unrecorded(stage, [spec])   # pylint: disable=protected-access
        assert stage.verified(spec) is adopted
        assert ("w.bin" in _hf.StagingArea(stage.root).state()) is adopted, "recorded on disk only if it matched"
        assert _hf.StagingArea(stage.root).verified(spec) is adopted
