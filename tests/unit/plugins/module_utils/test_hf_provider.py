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


def test_an_endpoint_must_be_an_http_url_without_credentials_in_its_host():
    assert _hf.validate_endpoint("") == "https://huggingface.co"
    assert _hf.validate_endpoint("https://hub.example//") == "https://hub.example"
    assert _hf.validate_endpoint("http://mirror:8090/hf/a@b") == "http://mirror:8090/hf/a@b", "an @ in the path is fine"
    assert _hf.validate_endpoint("http://mirror:8090/x/y/a@b/") == "http://mirror:8090/x/y/a@b"
    assert _hf.validate_endpoint("http://mirror:8090/HF-PREFIX/") == "http://mirror:8090/HF-PREFIX"
    for bad in (8090, "http://mirror\t:8090", "https://user@hub.example/x", "HTTP://mirror", "http:/mirror"):
        with pytest.raises(ValidationError) as info:
            _hf.validate_endpoint(bad)
        assert f"endpoint {bad!r} is not an http(s) URL without credentials." == info.value.msg
        assert "pass credentials with the token option" in info.value.fix


def test_a_provider_refuses_a_bad_revision_or_endpoint_when_made(tmp_path):
    with pytest.raises(ValidationError):
        _provider(tmp_path, endpoint="ftp://x")
    with pytest.raises(ValidationError):
        _provider(tmp_path, revision="../main")
    assert _provider(tmp_path, revision="v1.0").endpoint == "https://huggingface.co"


def test_an_unknown_error_is_named_by_its_first_line_with_the_token_masked(tmp_path):
    prov = _provider(tmp_path, token=TOKEN)
    err = prov._translate(RuntimeError(f"bad thing with {TOKEN}\nsecond line"), "main", "Resolving x")  # pylint: disable=protected-access
    assert isinstance(err, ProviderError) and err.msg == "Resolving x: RuntimeError: bad thing with ********"
    assert "the download resumes" in err.fix
    err = prov._translate(KeyError(), "main", "Resolving x")  # pylint: disable=protected-access
    assert err.msg == "Resolving x: KeyError: KeyError"
    own = NotFoundError("mine", fix="as it is")
    assert prov._translate(own, "main", "Resolving x") is own  # pylint: disable=protected-access


@pytest.mark.parametrize("exc", [ConnectionError("refused"), TimeoutError("slow"), ConnectionResetError("reset"),
                                 httpx.ReadTimeout("read timed out")])
def test_an_unreachable_endpoint_says_the_download_resumes_and_what_to_check(tmp_path, exc):
    err = _provider(tmp_path, endpoint="http://mirror:8090")._translate(exc, "main", "Listing x")  # pylint: disable=protected-access
    assert err.msg == (f"Listing x: cannot reach http://mirror:8090 ({type(exc).__name__}: {exc}). Anything downloaded "
                       "so far is kept and resumes on the next run.")
    assert "HTTPS_PROXY" in err.fix


def test_only_errors_of_the_network_libraries_count_as_unreachable():
    import requests  # pylint: disable=import-outside-toplevel
    assert _hf._is_network_error(requests.exceptions.ConnectionError("x"))  # pylint: disable=protected-access
    assert _hf._is_network_error(httpx.ConnectError("x"))  # pylint: disable=protected-access
    assert not _hf._is_network_error(ValueError("x"))  # pylint: disable=protected-access
    assert not _hf._is_network_error(OSError(13, "denied"))  # pylint: disable=protected-access
    assert not _hf._is_hf_error(ValueError("x"))  # pylint: disable=protected-access
    assert _hf._is_hf_error(hf.errors.OfflineModeIsEnabled("x"))  # pylint: disable=protected-access
    assert _hf._is_hf_error(_hub_error(503, None))  # pylint: disable=protected-access


def test_a_refused_token_and_a_failing_server_are_told_apart(tmp_path):
    prov = _provider(tmp_path, token=TOKEN)
    commit = "a" * 40
    err = prov._translate(_hub_error(401, None, url="https://huggingface.co/api/whoami-v2"), "main",  # pylint: disable=protected-access
                          "Resolving x")
    assert type(err) is ProviderError and err.msg.startswith(  # pylint: disable=unidiomatic-typecheck
        "Resolving x: https://huggingface.co refused the credentials (HTTP 401: ")
    assert "revoked or expired" in err.fix
    err = prov._translate(_hub_error(500, None), commit, "Resolving x")  # pylint: disable=protected-access
    assert isinstance(err, NotFoundError) and err.msg == (
        f"Resolving x: https://huggingface.co failed with HTTP 500 for commit {commit} of org/model; mirrors such as "
        "olah answer so for a commit they do not have.")
    assert "the full 40 hex characters" in err.fix
    for status, revision in ((499, commit), (500, "main"), (502, None)):
        err = prov._translate(_hub_error(status, None), revision, "Resolving x")  # pylint: disable=protected-access
        assert type(err) is ProviderError, status  # pylint: disable=unidiomatic-typecheck
        assert err.msg.startswith(f"Resolving x: https://huggingface.co answered HTTP {status}: ")
        assert err.fix == "Retry later; if it persists, check the endpoint/mirror's health and logs."
    no_response = _hub_error(503, None)
    no_response.response = None   # an error raised before any answer
    err = prov._translate(no_response, "main", "Resolving x")  # pylint: disable=protected-access
    assert err.msg.startswith("Resolving x: https://huggingface.co answered HTTP None: ")


def test_a_file_listed_but_not_served_names_the_commit_and_the_mirror(tmp_path):
    prov = _provider(tmp_path, endpoint="http://mirror:8090")
    exc = _hub_error(404, "EntryNotFound", url="http://mirror:8090/org/model/resolve/" + "c" * 40 + "/w.bin")
    err = prov._translate(exc, "c" * 40, "Downloading w.bin of org/model")  # pylint: disable=protected-access
    assert type(err) is ProviderError, type(exc)  # pylint: disable=unidiomatic-typecheck
    assert err.msg.startswith(f"Downloading w.bin of org/model: the file is listed at commit {'c' * 40} of org/model "
                              "but http://mirror:8090 does not serve it (")
    assert "Check the mirror's copy" in err.fix


def test_the_messages_of_a_gated_missing_or_offline_repository_name_it_and_the_fix(tmp_path, monkeypatch):
    prov = _provider(tmp_path, endpoint="http://mirror:8090")
    err = prov._translate(_hub_error(403, "GatedRepo"), "main", "Resolving")  # pylint: disable=protected-access
    assert err.msg == ("The Hugging Face repository org/model is gated and no token was given (token option or "
                       "HF_TOKEN).")
    assert "(http://mirror:8090/org/model)" in err.fix
    err = prov._translate(_hub_error(404, "RevisionNotFound"), "v9", "Resolving")  # pylint: disable=protected-access
    assert err.msg == "The revision 'v9' does not exist in org/model at http://mirror:8090."
    assert err.fix == "Give an existing branch, tag or full commit id in revision."
    probes = []
    monkeypatch.setattr(prov, "_exists_at", lambda rev: probes.append(rev) or True)
    for revision in (None, "main"):
        err = prov._translate(_hub_error(401, "RepoNotFound"), revision, "Resolving")  # pylint: disable=protected-access
        assert err.msg.startswith("The Hugging Face repository org/model was not found at http://mirror:8090: it does "
                                  "not exist, or it is private or gated and no token was given")
        assert "with a mirror, check that it serves this repository" in err.fix
    assert probes == [], "the default revision is not probed: it is the one asked"
    err = prov._translate(_hub_error(401, "RepoNotFound"), "v9", "Resolving")  # pylint: disable=protected-access
    assert err.msg == ("The revision 'v9' does not exist in org/model at http://mirror:8090 (the repository itself "
                       "exists).")
    assert err.fix == "Give an existing branch, tag or full commit id in revision." and probes == ["main"]
    probes.clear()
    monkeypatch.setattr(prov, "_exists_at", lambda rev: probes.append(rev) and False)
    err = prov._translate(_hub_error(401, "RepoNotFound"), "v9", "Resolving")  # pylint: disable=protected-access
    assert "was not found" in err.msg and probes == ["main"]
    err = prov._translate(hf.errors.OfflineModeIsEnabled("off"), "main", "Listing x")  # pylint: disable=protected-access
    assert err.msg == "Listing x: HF_HUB_OFFLINE is set on the host, so huggingface_hub makes no request."
    assert "Unset HF_HUB_OFFLINE" in err.fix


def test_a_revision_exists_when_the_hub_answers_for_it(tmp_path, monkeypatch):
    prov = _provider(tmp_path)
    asked = []
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info", lambda self, rev: asked.append(rev) or object())
    assert prov._exists_at("main") is True and asked == ["main"]  # pylint: disable=protected-access

    def missing(self, rev):
        raise _hub_error(404, "RepoNotFound")
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info", missing)
    assert prov._exists_at("main") is False  # pylint: disable=protected-access


def test_the_revision_is_asked_by_its_quoted_name_with_the_token_and_retries(tmp_path, monkeypatch):
    sent = []
    commit = "0123456789abcdef0123456789abcdef01234567"

    def backoff(method, url, headers=None, **kw):
        sent.append((method, url, headers, kw))
        return httpx.Response(200, json={"id": "org/model", "sha": commit}, request=httpx.Request(method, url))
    monkeypatch.setattr(_hf, "http_backoff", backoff)
    monkeypatch.setattr(_hf.HuggingFaceProvider, "api", lambda self: None)
    info = _provider(tmp_path, endpoint="http://mirror:8090", token=TOKEN)._model_info("refs/pr/1")  # pylint: disable=protected-access
    assert info.sha == commit
    method, url, headers, kw = sent[0]
    assert (method, url) == ("GET", "http://mirror:8090/api/models/org/model/revision/refs%2Fpr%2F1")
    assert {k.lower(): v for k, v in headers.items()}["authorization"] == f"Bearer {TOKEN}"
    assert kw == {"max_retries": 2, "base_wait_time": 0.5, "max_wait_time": 2.0}

    def refused(method, url, headers=None, **kw):
        return httpx.Response(404, headers={"X-Error-Code": "RevisionNotFound"}, request=httpx.Request(method, url))
    monkeypatch.setattr(_hf, "http_backoff", refused)
    with pytest.raises(hf.errors.RevisionNotFoundError):
        _provider(tmp_path)._model_info("v9")  # pylint: disable=protected-access


def test_the_hub_api_is_made_once_per_provider_for_its_endpoint_and_token(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(_hf, "hub_api", lambda endpoint, token, tls: made.append((endpoint, token)) or object())
    prov = _provider(tmp_path, endpoint="http://mirror:8090", token=TOKEN)
    assert prov.api() is prov.api() and made == [("http://mirror:8090", TOKEN)]


def test_a_missing_huggingface_hub_is_a_missing_dependency(monkeypatch):
    import sys  # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.errors import MissingDependencyError  # pylint: disable=import-outside-toplevel
    for name in ("HfApi", "hf_errors", "hf_hub_url", "http_get", "build_hf_headers", "disable_progress_bars",
                 "http_backoff", "hf_raise_for_status", "ModelInfo", "HF_IMPORT_ERROR"):
        monkeypatch.setattr(_hf, name, None)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingDependencyError) as info:
        _hf.load_hub()
    assert info.value.msg.startswith("The Python package 'huggingface_hub' is required for provider huggingface but "
                                     "cannot be imported (import of huggingface_hub halted")
    assert _hf.HfApi is None and isinstance(_hf.HF_IMPORT_ERROR, ImportError)
    monkeypatch.delitem(sys.modules, "huggingface_hub")
    with pytest.raises(MissingDependencyError):
        _hf.load_hub()   # the first failure is remembered: not imported again


def test_loading_huggingface_hub_binds_what_the_provider_uses(monkeypatch):
    for name in ("HfApi", "hf_errors", "hf_hub_url", "http_get", "build_hf_headers", "disable_progress_bars",
                 "http_backoff", "hf_raise_for_status", "ModelInfo", "HF_IMPORT_ERROR"):
        monkeypatch.setattr(_hf, name, None)
    _hf.load_hub()
    from huggingface_hub.utils import hf_raise_for_status as raise_for_status  # pylint: disable=import-outside-toplevel
    assert _hf.HfApi is hf.HfApi and _hf.ModelInfo is hf.ModelInfo and _hf.hf_errors is hf.errors
    assert _hf.hf_raise_for_status is raise_for_status and _hf.HF_IMPORT_ERROR is None
    assert all(callable(getattr(_hf, n)) for n in ("hf_hub_url", "http_get", "build_hf_headers",
                                                   "disable_progress_bars", "http_backoff"))
    assert _hf.hf_hub_url("org/m", "a/b.json", revision="c" * 40, endpoint="http://m") == \
        f"http://m/org/m/resolve/{'c' * 40}/a/b.json"


def test_no_directory_no_capabilities(tmp_path):
    prov = _provider(tmp_path)
    assert prov.detect_capabilities(None) == {} and prov.detect_capabilities(str(tmp_path / "nope")) == {}
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 4096}')
    assert prov.detect_capabilities(str(tmp_path / "v"))["max_context_length"] == 4096


def test_an_installed_entry_satisfies_the_revision_it_was_asked_or_resolved_to(tmp_path):
    entry = {"status": "installed", "revision": "c" * 40, "requested_revision": "v1",
             "allow_patterns": None, "ignore_patterns": None}
    assert _provider(tmp_path, revision="v1").satisfies(entry)
    assert _provider(tmp_path, revision="c" * 40).satisfies(dict(entry, requested_revision=None))
    assert not _provider(tmp_path, revision="main").satisfies(entry)
    assert not _provider(tmp_path).satisfies(dict(entry, status=None))


def test_a_certificate_failure_names_the_step_and_the_endpoint(tmp_path):
    import ssl  # pylint: disable=import-outside-toplevel
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_message = "unable to get local issuer certificate"
    err = _provider(tmp_path, endpoint="https://hub.internal")._translate(exc, "main", "Resolving org/model@main")  # pylint: disable=protected-access
    assert err.msg.startswith("Resolving org/model@main: the TLS certificate of https://hub.internal could not be "
                              "verified against the host's default trust store (unable to get local issuer certificate)")


def test_a_full_disk_names_the_models_directory(tmp_path):
    import errno  # pylint: disable=import-outside-toplevel
    err = _provider(tmp_path)._translate(OSError(errno.EDQUOT, "Disk quota exceeded"), "main", "Downloading x")  # pylint: disable=protected-access
    assert type(err).__name__ == "QuotaError"
    assert err.msg.startswith(f"The disk holding {tmp_path} is full (Disk quota exceeded).")


def test_the_hub_api_carries_the_token_and_notes_an_unverified_https_endpoint(monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(_hf, "configure_hub_tls", lambda tls: None)
    tls = Tls(False)
    api = _hf.hub_api("https://hub.internal", TOKEN, tls)
    assert api.endpoint == "https://hub.internal" and api.token == TOKEN
    assert len(tls.warnings()) == 1 and "https://hub.internal" in tls.warnings()[0]
    assert _hf.hub_api("http://mirror:8090", None, Tls()).token is None


def test_a_huggingface_hub_without_a_client_factory_is_refused_as_too_old(monkeypatch):
    from huggingface_hub.utils import _http as hub_http  # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.errors import MissingDependencyError  # pylint: disable=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(_hf, "_HUB_TLS", None)
    monkeypatch.delattr(hub_http, "set_client_factory")
    with pytest.raises(MissingDependencyError) as info:
        _hf.configure_hub_tls(Tls())
    assert info.value.msg == ("The Python package 'huggingface_hub >= 1.0' is required for provider huggingface but "
                              "cannot be imported (huggingface_hub has no set_client_factory).")
    assert _hf._HUB_TLS is None  # pylint: disable=protected-access
