# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama provider (models/ollama.py) against a small Ollama server and registry on loopback
(real HTTP, the real client): the quota counts only the layers the store lacks, less what an
interrupted pull kept; a model the server has is recorded without a pull; the pull's progress; a
repair removes the damaged blobs first; removal, the staging debris and the registry's errors."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import types

import pytest

from ansible_collections.venom.models.plugins.module_utils import httpclient
from ansible_collections.venom.models.plugins.module_utils.errors import (
    MissingDependencyError, NotFoundError, ProviderError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.models import ollama as _ollama
from ansible_collections.venom.models.plugins.module_utils.models import ollama_api
from ansible_collections.venom.models.plugins.module_utils.models.ollama import OllamaProvider, registry_manifest
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest, Problem, Progress
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from tests.lib.servers import LocalHTTPServer, QuietHandler

pytest.importorskip("requests")

WEIGHTS = b"W" * 3000
PARAMS = b'{"temperature": 0.5}'
CONFIG = b'{"model_format": "gguf"}'


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


LAYERS = [(WEIGHTS, _ollama.MEDIA_MODEL), (PARAMS, "application/vnd.ollama.image.params")]
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": _ollama.MEDIA_MANIFEST,
                       "config": {"digest": _digest(CONFIG), "size": len(CONFIG)},
                       "layers": [{"digest": _digest(d), "size": len(d), "mediaType": m} for d, m in LAYERS]},
                      sort_keys=True).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
BLOBS = {_digest(d): d for d in (WEIGHTS, PARAMS, CONFIG)}


class Ollama:
    """An Ollama server (``/api/*``) and a registry (``/v2/*``) in one loopback server; ``store`` is
    its OLLAMA_MODELS directory. A pull writes the blobs and the manifest like Ollama does."""

    def __init__(self, store):
        self.store = str(store)
        os.makedirs(os.path.join(self.store, "blobs"), exist_ok=True)
        self.requests: list = []
        self.registry_status = 200
        self.registry_body = MANIFEST
        self.pull_lines = None   # None: the normal stream
        self.lock = threading.Lock()
        owner = self

        class Handler(QuietHandler):
            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else {}

            def _send(self, status, body=b"", ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _answer(self):
                body = self._body() if self.command in ("POST", "DELETE") else None
                with owner.lock:
                    owner.requests.append((self.command, self.path, body))
                path = self.path
                if path == "/v2/library/llama/manifests/8b":
                    return self._send(owner.registry_status, owner.registry_body)
                if path == "/api/tags":
                    return self._send(200, json.dumps({"models": owner.tags()}).encode())
                if path.startswith("/api/blobs/"):
                    digest = path.rsplit("/", 1)[1]
                    return self._send(200 if os.path.exists(owner.blob(digest)) else 404)
                if path == "/api/show":
                    if not owner.tags():
                        return self._send(404, b'{"error": "model not found"}')
                    return self._send(200, json.dumps({"template": "{{ .Prompt }}", "parameters": "num_ctx 4096",
                                                       "model_info": {"general.architecture": "llama",
                                                                      "llama.context_length": 8192}}).encode())
                if path == "/api/delete":
                    if not owner.tags():
                        return self._send(404, b'{"error": "model not found"}')
                    owner.delete()
                    return self._send(200)
                if path == "/api/pull":
                    lines = owner.pull() if owner.pull_lines is None else owner.pull_lines
                    return self._send(200, b"".join(json.dumps(line).encode() + b"\n" for line in lines),
                                      "application/x-ndjson")
                return self._send(404, b'{"error": "not found"}')

            do_GET = do_POST = do_DELETE = do_HEAD = _answer

        self.server = LocalHTTPServer(Handler).start()
        self.url = self.server.url

    def blob(self, digest: str) -> str:
        return os.path.join(self.store, "blobs", digest.replace(":", "-"))

    def manifest_file(self) -> str:
        return os.path.join(self.store, "manifests", "registry.ollama.ai", "library", "llama", "8b")

    def tags(self) -> list:
        if not os.path.exists(self.manifest_file()):
            return []
        size = sum(len(d) for d in BLOBS.values())
        return [{"name": "llama:8b", "model": "llama:8b", "digest": MANIFEST_DIGEST[len("sha256:"):], "size": size}]

    def install(self, blobs=None) -> None:
        for digest, data in (BLOBS if blobs is None else blobs).items():
            with open(self.blob(digest), "wb") as fh:
                fh.write(data)
        os.makedirs(os.path.dirname(self.manifest_file()), exist_ok=True)
        with open(self.manifest_file(), "wb") as fh:
            fh.write(MANIFEST)

    def pull(self) -> list:
        lines = [{"status": "pulling manifest"}]
        for digest, data in BLOBS.items():
            if not os.path.exists(self.blob(digest)):
                lines.append({"status": f"pulling {digest[7:19]}", "digest": digest, "total": len(data), "completed": 0})
                lines.append({"status": f"pulling {digest[7:19]}", "digest": digest, "total": len(data),
                              "completed": len(data)})
        self.install()
        return lines + [{"status": "verifying sha256 digest"}, {"status": "success"}]

    def delete(self) -> None:
        os.unlink(self.manifest_file())
        for digest in BLOBS:
            if os.path.exists(self.blob(digest)):
                os.unlink(self.blob(digest))

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(name="ollama")
def fixture_ollama(tmp_path):
    srv = Ollama(tmp_path / "store")
    yield srv
    srv.stop()


def _provider(tmp_path, ollama, **kw):
    kw.setdefault("models_path", ollama.store)
    req = ModelRequest(name=kw.pop("name", "llama:8b"), provider="ollama", models_dir=str(tmp_path / "models"),
                       endpoint=ollama.url, registry=ollama.url, **kw)
    return OllamaProvider(req, StatePaths(str(tmp_path / "models")))


def test_the_registry_manifest_is_read_from_the_name_or_the_registry_given(ollama):
    data, doc, digest = registry_manifest("llama:8b", ollama.url)
    assert data == MANIFEST and digest == MANIFEST_DIGEST[7:] and len(doc["layers"]) == 2
    host = ollama.url.split("://", 1)[1]
    data, doc, digest = registry_manifest(f"{host}/library/llama:8b", insecure=True)
    assert digest == MANIFEST_DIGEST[7:]
    assert ollama.requests[-1][1] == "/v2/library/llama/manifests/8b"


def test_the_registry_errors_name_the_model_and_the_fix(ollama, tmp_path):
    ollama.registry_status = 404
    with pytest.raises(NotFoundError) as info:
        registry_manifest("llama:8b", ollama.url + "/")
    assert f"The registry {ollama.url} has no model" in info.value.msg and "Nothing was installed" in info.value.msg
    assert "/v2/library/llama/manifests/8b" in info.value.msg
    ollama.registry_status, ollama.registry_body = 500, b'{"errors": "upstream down"}'
    with pytest.raises(ProviderError) as info:
        registry_manifest("llama:8b", ollama.url)
    assert "HTTP 500" in info.value.msg and "without authentication" in info.value.fix
    ollama.registry_status = 200
    for body in (b"not json", b'{"layers": [{"size": 3}]}', b'{"layers": 5}'):
        ollama.registry_body = body
        with pytest.raises(ProviderError) as info:
            registry_manifest("llama:8b", ollama.url)
        assert "is not an Ollama model manifest" in info.value.msg
    ollama.registry_body = json.dumps({"layers": [{"digest": "sha256:" + "a" * 64, "size": -1}]}).encode()
    with pytest.raises(ProviderError) as info:
        registry_manifest("llama:8b", ollama.url)
    assert "is refused" in info.value.msg
    ollama.registry_body = json.dumps({"config": {"digest": "md5:x", "size": 1}}).encode()
    with pytest.raises(ProviderError, match="not a sha256 digest"):
        registry_manifest("llama:8b", ollama.url)
    with pytest.raises(ProviderError) as info:
        registry_manifest("llama:8b", "http://127.0.0.1:9", timeout=2)
    assert "cannot be read from http://127.0.0.1:9/v2/library/llama/manifests/8b" in info.value.msg
    assert "'registry'" in info.value.fix and "insecure: true" in info.value.fix


def test_a_model_not_in_the_store_counts_every_layer_it_lacks_less_what_a_pull_kept(tmp_path, ollama):
    have = {_digest(PARAMS): PARAMS}
    ollama.install(have)
    os.unlink(ollama.manifest_file())
    hexw = _digest(WEIGHTS)[7:]
    with open(os.path.join(ollama.store, "blobs", f"sha256-{hexw}-partial-0"), "w", encoding="utf-8") as fh:
        json.dump({"Completed": 1000}, fh)
    prov = _provider(tmp_path, ollama)
    assert prov.staging_bytes() == 0, "nothing resolved yet: no digest known"
    target = prov.resolve(None)
    assert target.revision == MANIFEST_DIGEST[7:] and target.requested_revision == "8b" and target.local_path is None
    assert sorted(target.pending) == sorted(f"blobs/sha256-{d[7:]}" for d in (_digest(WEIGHTS), _digest(CONFIG)))
    assert target.staged_bytes == 1000 and target.fetch_bytes == len(WEIGHTS) - 1000 + len(CONFIG)
    assert target.disk_path == ollama.store and target.extra["already_present"] is False
    assert target.extra["ollama"] == {"endpoint": ollama.url, "models_path": ollama.store, "registry": ollama.url,
                                      "insecure": False}
    assert prov.staging_bytes() == 1000 and prov.has_staging()
    assert prov.discard_staging() is True and prov.staging_bytes() == 0
    assert not prov.discard_staging()


def test_a_partial_larger_than_its_layer_counts_the_layer_only(tmp_path, ollama):
    hexw = _digest(WEIGHTS)[7:]
    with open(os.path.join(ollama.store, "blobs", f"sha256-{hexw}-partial-0"), "w", encoding="utf-8") as fh:
        json.dump({"Completed": 10 ** 6}, fh)
    target = _provider(tmp_path, ollama).resolve(None)
    assert target.staged_bytes == len(WEIGHTS) and target.fetch_bytes == len(PARAMS) + len(CONFIG)


def test_a_model_the_server_has_is_resolved_from_its_store_without_the_registry(tmp_path, ollama):
    ollama.install()
    prov = _provider(tmp_path, ollama)
    target = prov.resolve(None)
    assert target.extra["already_present"] is True and target.fetch_bytes == 0 and target.pending == []
    assert target.revision == MANIFEST_DIGEST[7:]
    assert not any(r[1].startswith("/v2/") for r in ollama.requests), "the registry is not asked"
    assert prov.predict_capabilities(target)["max_context_length"] == 8192
    ollama.requests.clear()
    latest = prov.resolve(None, latest=True)
    assert any(r[1].startswith("/v2/") for r in ollama.requests), "latest asks the registry"
    assert latest.extra["already_present"] is False and latest.fetch_bytes == 0, "latest pulls (every layer is there)"
    fields = prov.install(target, Progress())
    assert not any(r[1] == "/api/pull" for r in ollama.requests), "nothing pulled"
    assert fields["revision"] == MANIFEST_DIGEST[7:] and fields["requested_revision"] == "8b"
    assert fields["size_bytes"] == sum(len(d) for d in BLOBS.values()) and fields["local_path"] is None
    assert sorted(f["path"] for f in fields["files"]) == sorted(f"blobs/sha256-{d[7:]}" for d in BLOBS)


def test_a_model_the_server_has_but_whose_store_cannot_be_read_is_compared_with_the_registry(tmp_path, ollama):
    ollama.install()
    prov = _provider(tmp_path, ollama, models_path=str(tmp_path / "elsewhere"))
    target = prov.resolve(None)
    assert any(r[1].startswith("/v2/") for r in ollama.requests)
    assert target.extra["already_present"] is True and target.fetch_bytes == 0 and target.staged_bytes == 0
    ollama.registry_body = MANIFEST + b" "   # the registry has another version now
    assert prov.resolve(None).extra["already_present"] is False


def test_an_install_pulls_and_reports_progress_in_bytes(tmp_path, ollama):
    prov = _provider(tmp_path, ollama)
    target = prov.resolve(None)
    assert prov.predict_capabilities(target) is None, "not on the server yet: unknown"
    seen = []
    progress = Progress(lambda done, total, message, force: seen.append((done, total, message)))
    fields = prov.install(target, progress)
    pulls = [r for r in ollama.requests if r[1] == "/api/pull"]
    assert pulls == [("POST", "/api/pull", {"model": "llama:8b", "insecure": False, "stream": True})]
    total = sum(len(d) for d in BLOBS.values())
    assert seen[0] == (0, total, "pulling llama:8b through Ollama")
    assert progress.total == total and progress.done == total and progress.transferred == total
    assert progress.message == "Ollama: success"
    assert fields["capabilities_detected"]["max_context_length"] == 8192
    assert fields["ollama"]["endpoint"] == ollama.url


def test_a_pull_resumed_counts_only_what_this_run_transferred(tmp_path, ollama):
    ollama.install({_digest(PARAMS): PARAMS})
    os.unlink(ollama.manifest_file())
    prov = _provider(tmp_path, ollama)
    target = prov.resolve(None)
    progress = Progress()
    prov.install(target, progress)
    assert progress.transferred == len(WEIGHTS) + len(CONFIG), "a layer the store had is not transferred"
    assert progress.done == progress.total == sum(len(d) for d in BLOBS.values())


def test_a_pull_that_succeeds_but_is_not_listed_is_an_error(tmp_path, ollama):
    prov = _provider(tmp_path, ollama)
    target = prov.resolve(None)
    ollama.pull_lines = [{"status": "success"}]
    with pytest.raises(ProviderError) as info:
        prov.install(target, None)
    assert "reported success for llama:8b but /api/tags does not list it" in info.value.msg
    assert "journalctl -u ollama" in info.value.fix


def test_quick_check_finds_the_missing_model_a_moved_digest_and_damaged_blobs(tmp_path, ollama):
    prov = _provider(tmp_path, ollama)
    assert [(p.path, p.kind) for p in prov.quick_check({})] == [("llama:8b", "missing")]
    ollama.install()
    files = [{"path": f"blobs/sha256-{d[7:]}", "size": len(b)} for d, b in BLOBS.items()]
    entry = {"revision": MANIFEST_DIGEST[7:], "files": files}
    assert prov.quick_check(entry) == []
    assert prov.satisfies(entry) and not prov.satisfies(dict(entry, revision="0" * 64))
    problems = prov.quick_check(dict(entry, revision="0" * 64))
    assert [(p.path, p.kind, p.expected) for p in problems] == [("manifest", "digest", "0" * 64)]
    os.unlink(ollama.blob(_digest(PARAMS)))
    with open(ollama.blob(_digest(CONFIG)), "ab") as fh:
        fh.write(b"x")
    problems = {p.path: p for p in prov.quick_check(entry)}
    assert problems[f"blobs/sha256-{_digest(PARAMS)[7:]}"].kind == "missing"
    assert (problems[f"blobs/sha256-{_digest(CONFIG)[7:]}"].kind, problems[f"blobs/sha256-{_digest(CONFIG)[7:]}"].actual) \
        == ("size", len(CONFIG) + 1)
    unreadable = _provider(tmp_path, ollama, models_path=str(tmp_path / "elsewhere"))
    assert unreadable.quick_check(entry) == [], "a store that cannot be read here: only the server is asked"


def test_verify_needs_the_store_and_reports_each_damaged_blob(tmp_path, ollama):
    ollama.install()
    files = [{"path": f"blobs/sha256-{d[7:]}", "size": len(b), "sha256": d[7:]} for d, b in BLOBS.items()]
    with pytest.raises(ProviderError) as info:
        _provider(tmp_path, ollama, models_path=str(tmp_path / "elsewhere")).verify({"files": files}, None)
    assert "cannot be read here" in info.value.msg and "models_path" in info.value.fix
    prov = _provider(tmp_path, ollama)
    progress = Progress()
    assert prov.verify({"files": files}, progress) == []
    assert progress.total == progress.done == sum(len(b) for b in BLOBS.values())
    assert progress.message == "verifying llama:8b in the Ollama store"
    with open(ollama.blob(_digest(WEIGHTS)), "r+b") as fh:
        fh.write(b"X")
    os.unlink(ollama.blob(_digest(PARAMS)))
    with open(ollama.blob(_digest(CONFIG)), "ab") as fh:
        fh.write(b"x")
    nameless = [dict(f, sha256=None) for f in files]   # an entry without digests: the blob's name is one
    for entry_files in (files, nameless):
        kinds = {p.path.rsplit("-", 1)[1][:8]: p.kind for p in prov.verify({"files": entry_files}, None)}
        assert kinds == {_digest(WEIGHTS)[7:15]: "digest", _digest(PARAMS)[7:15]: "missing",
                         _digest(CONFIG)[7:15]: "size"}


def test_a_repair_removes_the_damaged_blobs_first_then_pulls(tmp_path, ollama):
    ollama.install()
    with open(ollama.blob(_digest(WEIGHTS)), "r+b") as fh:
        fh.write(b"X")
    prov = _provider(tmp_path, ollama)
    bad = f"blobs/sha256-{_digest(WEIGHTS)[7:]}"
    seen = []
    progress = Progress(lambda done, total, message, force: seen.append(message))
    fields = prov.repair({}, [Problem(path=bad, kind="digest"), Problem(path="llama:8b", kind="missing"),
                              Problem(path=f"blobs/sha256-{'f' * 64}", kind="size")], progress)
    assert "pulling llama:8b again to repair it" in seen
    with open(ollama.blob(_digest(WEIGHTS)), "rb") as fh:
        assert fh.read() == WEIGHTS, "the damaged blob went, so the pull fetched it again"
    assert [r[1] for r in ollama.requests].count("/api/pull") == 1 and fields["revision"] == MANIFEST_DIGEST[7:]


def test_a_damaged_blob_that_cannot_be_removed_is_refused_with_become(tmp_path, ollama, monkeypatch):
    prov = _provider(tmp_path, ollama)

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(_ollama.os, "remove", refuse)
    with pytest.raises(ProviderError) as info:
        prov.repair({}, [Problem(path=f"blobs/sha256-{'a' * 64}", kind="size")], None)
    assert "cannot be removed (Permission denied)" in info.value.msg and "become: true" in info.value.fix
    assert "/api/pull" not in [r[1] for r in ollama.requests]


def test_removal_returns_the_blobs_that_went_and_an_unmanaged_model_is_found(tmp_path, ollama):
    prov = _provider(tmp_path, ollama)
    assert prov.unmanaged_entry() is None
    ollama.install()
    entry = prov.unmanaged_entry()
    assert entry["name"] == "llama:8b" and entry["provider"] == "ollama" and entry["revision"] == MANIFEST_DIGEST[7:]
    assert entry["size_bytes"] == sum(len(d) for d in BLOBS.values()) and len(entry["files"]) == 3
    removed = prov.remove(entry)
    assert removed == sorted(ollama.blob(d) for d in BLOBS)
    assert ("DELETE", "/api/delete", {"model": "llama:8b"}) in ollama.requests
    assert prov.remove(entry) == [], "already gone: no error"


def test_an_unmanaged_model_whose_manifest_cannot_be_read_has_no_files(tmp_path, ollama):
    ollama.install()
    prov = _provider(tmp_path, ollama, models_path=str(tmp_path / "elsewhere"))
    entry = prov.unmanaged_entry()
    assert entry["files"] == [] and entry["revision"] == MANIFEST_DIGEST[7:]


def test_the_options_default_to_the_local_server_and_the_name_s_registry(tmp_path):
    req = ModelRequest(name="llama:8b", provider="ollama", models_dir=str(tmp_path))
    prov = OllamaProvider(req, StatePaths(str(tmp_path)))
    assert prov.entry_extra() == {"endpoint": "http://127.0.0.1:11434", "models_path": _ollama.DEFAULT_MODELS_PATH,
                                  "registry": "registry.ollama.ai", "insecure": False}
    assert prov.client.pull_read_timeout == 900.0 and prov.canonical_name() == "llama:8b"
    prov = OllamaProvider(ModelRequest(name="llama:8b", provider="ollama", models_dir=str(tmp_path), timeout=12,
                                       insecure=True), StatePaths(str(tmp_path)), registry="http://mirror:5000")
    assert prov.client.pull_read_timeout == 12 and prov.insecure is True and prov.registry_host() == "http://mirror:5000"


# -- the registry request, the provider's options, the pull's progress, staging and removal --------

def test_the_registry_is_asked_through_the_environment_s_proxy_for_a_v2_manifest(monkeypatch):
    asked = []

    class Proxy(QuietHandler):
        def do_GET(self):  # pylint: disable=invalid-name
            asked.append((self.path, self.headers.get("Accept")))
            self.send_response(200)
            self.send_header("Content-Length", str(len(MANIFEST)))
            self.end_headers()
            self.wfile.write(MANIFEST)

    with LocalHTTPServer(Proxy) as proxy:
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        data, _doc, digest = registry_manifest("registry.invalid/library/llama:8b", insecure=True)
    assert data == MANIFEST and digest == MANIFEST_DIGEST[7:]
    assert asked == [("http://registry.invalid/v2/library/llama/manifests/8b", _ollama.MEDIA_MANIFEST)]


def test_the_registry_of_a_name_is_asked_over_https_unless_insecure(monkeypatch):
    asked = []

    class Session:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        @staticmethod
        def get(url, headers=None, timeout=None, verify=None):
            asked.append((url, timeout, verify))
            return type("Resp", (), {"status_code": 200, "content": MANIFEST})()

    monkeypatch.setattr(httpclient, "retrying_session", lambda **kw: Session())
    registry_manifest("llama:8b")
    registry_manifest("reg.lan:5000/team/llama:8b", timeout=3.0)
    registry_manifest("reg.lan:5000/team/llama:8b", insecure=True)
    assert asked == [("https://registry.ollama.ai/v2/library/llama/manifests/8b", (5.0, 30.0), True),
                     ("https://reg.lan:5000/v2/team/llama/manifests/8b", (3.0, 3.0), True),
                     ("http://reg.lan:5000/v2/team/llama/manifests/8b", (5.0, 30.0), True)]


def test_a_manifest_without_a_config_has_its_layers_only(ollama):
    for config in ({}, {"config": None}, {"config": {"size": 5}}):
        doc = dict({"layers": [{"digest": _digest(WEIGHTS), "size": len(WEIGHTS)}]}, **config)
        ollama.registry_body = json.dumps(doc).encode()
        _data, got, _digest_hex = registry_manifest("llama:8b", ollama.url)
        assert [f.path for f in _ollama.layer_files(got)] == [f"blobs/sha256-{_digest(WEIGHTS)[7:]}"]
    ollama.registry_body = b'{"config": {"digest": "' + _digest(CONFIG).encode() + b'", "size": 2}}'
    assert [f.size for f in _ollama.layer_files(registry_manifest("llama:8b", ollama.url)[1])] == [2]


def test_the_store_and_the_registry_come_from_the_request_unless_given(tmp_path):
    req = ModelRequest(name="llama:8b", provider="ollama", models_dir=str(tmp_path), models_path="/srv/ollama",
                       registry="http://mirror:5000", insecure=True)
    prov = OllamaProvider(req, StatePaths(str(tmp_path)))
    assert (prov.models_path, prov.registry_host(), prov.insecure) == ("/srv/ollama", "http://mirror:5000", True)
    prov = OllamaProvider(req, StatePaths(str(tmp_path)), registry="", insecure=False, models_path="/data/ollama")
    assert (prov.models_path, prov.registry_host(), prov.insecure) == ("/data/ollama", "registry.ollama.ai", False)


def test_without_requests_only_a_provider_given_a_client_works(tmp_path, monkeypatch):
    monkeypatch.setattr(ollama_api, "requests", None)
    req = ModelRequest(name="llama:8b", provider="ollama", models_dir=str(tmp_path))
    with pytest.raises(MissingDependencyError):
        OllamaProvider(req, StatePaths(str(tmp_path)))
    client = object()
    assert OllamaProvider(req, StatePaths(str(tmp_path)), client=client).client is client


class _Client:
    """An Ollama server that lists one model under the spelling it was first pulled with."""

    def __init__(self, listed):
        self.listed = listed

    def find(self, name):   # pylint: disable=unused-argument
        return self.listed


def test_a_model_first_pulled_under_another_spelling_has_its_store_manifest_read(tmp_path):
    store = tmp_path / "store"
    spelled = store / "manifests" / "registry.ollama.ai" / "library" / "Llama" / "8B"
    spelled.parent.mkdir(parents=True)
    spelled.write_bytes(MANIFEST)
    (store / "blobs").mkdir()
    for listed in ({"model": "Llama:8B", "digest": "d", "size": 9}, {"name": "Llama:8B", "digest": "d", "size": 9}):
        prov = OllamaProvider(ModelRequest(name="llama:8b", provider="ollama", models_dir=str(tmp_path)),
                              StatePaths(str(tmp_path)), models_path=str(store), client=_Client(listed))
        entry = prov.unmanaged_entry()
        assert sorted(f["path"] for f in entry["files"]) == sorted(f"blobs/sha256-{d[7:]}" for d in BLOBS)
        assert entry["size_bytes"] == 9
    spelled.write_bytes(b"{broken")
    assert prov.unmanaged_entry()["files"] == [], "a manifest that cannot be read: no files"
    prov.client = _Client({"model": "Llama:8B", "digest": "d"})
    assert prov.unmanaged_entry()["size_bytes"] == 0, "a server that does not say the size"


def test_a_model_that_is_listed_and_matches_needs_no_revision_to_pass_the_quick_check(tmp_path, ollama):
    ollama.install()
    prov = _provider(tmp_path, ollama)
    assert prov.quick_check({"files": []}) == [] and prov.quick_check({"revision": None}) == []
    assert not prov.satisfies({}), "an entry without a revision is not this version"


def test_the_pull_s_progress_counts_every_layer_once_never_backwards_and_only_this_run_s_bytes(tmp_path, ollama):
    ollama.install({_digest(PARAMS): PARAMS})
    os.unlink(ollama.manifest_file())
    hexw = _digest(WEIGHTS)[7:]
    with open(os.path.join(ollama.store, "blobs", f"sha256-{hexw}-partial-0"), "w", encoding="utf-8") as fh:
        json.dump({"Completed": 1000}, fh)
    prov = _provider(tmp_path, ollama)
    target = prov.resolve(None)
    other = "sha256:" + "e" * 64
    ollama.pull_lines = [
        {"status": "pulling manifest"},
        {"status": "pulling w", "digest": _digest(WEIGHTS), "total": len(WEIGHTS), "completed": 1500},
        {"status": "pulling w", "digest": _digest(WEIGHTS), "total": len(WEIGHTS), "completed": 1200},
        {"status": "pulling w", "digest": _digest(WEIGHTS), "total": len(WEIGHTS)},
        {"status": "pulling e", "digest": other, "total": 10, "completed": 10},
        {"status": "pulling p", "digest": _digest(PARAMS), "total": 0},
        {"digest": _digest(CONFIG)},
        {"digest": "sha256:" + "f" * 64, "total": 5},
        {"status": "success"}]
    ollama.install()
    seen = []
    progress = Progress(lambda done, total, message, force: seen.append((done, total, message)))
    prov.install(target, progress)
    full = sum(len(d) for d in BLOBS.values())
    assert seen[0] == (len(PARAMS), full, "pulling llama:8b through Ollama"), "what the store had"
    assert seen[1] == (len(PARAMS), full, "Ollama: pulling manifest")
    assert seen[2] == (len(PARAMS) + 1500, full, "Ollama: pulling w")
    assert seen[3] == seen[4] == seen[2], "a line that counts less moves nothing back"
    assert seen[5] == (len(PARAMS) + 1500 + 10, full + 10, "Ollama: pulling e"), "a layer the manifest did not list"
    assert seen[6] == (len(PARAMS) + 1510, full + 10, "Ollama: pulling p")
    assert seen[7] == (len(PARAMS) + 1510, full + 15, "Ollama: "), "a line without a status, of a layer just begun"
    assert seen[8] == (len(PARAMS) + 1510, full + 15, "Ollama: success") and len(seen) == 9
    assert progress.transferred == 500 + 10


def test_a_provider_that_did_not_resolve_counts_the_target_s_layers(tmp_path, ollama):
    ollama.install({_digest(PARAMS): PARAMS})
    os.unlink(ollama.manifest_file())
    target = _provider(tmp_path, ollama).resolve(None)
    progress = Progress()
    fields = _provider(tmp_path, ollama).install(target, progress)
    full = sum(len(d) for d in BLOBS.values())
    assert progress.total == full and progress.transferred == full - len(PARAMS)
    assert fields["size_bytes"] == full


def test_an_install_whose_store_cannot_be_read_records_the_registry_s_layers(tmp_path, ollama, monkeypatch):
    prov = _provider(tmp_path, ollama, models_path=str(tmp_path / "elsewhere"))
    target = prov.resolve(None)
    monkeypatch.setattr(ollama, "tags", lambda: [{"name": "llama:8b", "digest": "abc"}] if os.path.exists(
        ollama.manifest_file()) else [])
    fields = prov.install(target, None)
    assert sorted(f["path"] for f in fields["files"]) == sorted(f"blobs/sha256-{d[7:]}" for d in BLOBS)
    assert fields["size_bytes"] == sum(len(d) for d in BLOBS.values()), "the server did not say the size"
    assert fields["revision"] == "abc"


def test_a_pull_the_registry_does_not_have_names_the_registry(tmp_path, ollama):
    prov = _provider(tmp_path, ollama)
    target = prov.resolve(None)
    ollama.pull_lines = [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    with pytest.raises(NotFoundError) as info:
        prov.install(target, None)
    assert f"in the registry {ollama.url} " in info.value.msg


def test_verify_reads_the_blobs_without_counting_a_transfer_and_checks_every_one(tmp_path, ollama):
    ollama.install()
    files = [{"path": f"blobs/sha256-{d[7:]}", "size": len(b), "sha256": d[7:]} for d, b in BLOBS.items()]
    with open(ollama.blob(_digest(WEIGHTS)), "ab") as fh:
        fh.write(b"x")
    os.unlink(ollama.blob(_digest(PARAMS)))
    progress = Progress()
    problems = _provider(tmp_path, ollama).verify({"files": files}, progress)
    assert [p.kind for p in problems] == ["size", "missing"], "the config, checked last, is sound"
    assert progress.transferred == 0 and progress.done == len(CONFIG)
    assert _provider(tmp_path, ollama).verify({}, Progress()) == []


def test_removal_without_an_entry_deletes_and_reports_no_paths(tmp_path, ollama):
    ollama.install()
    prov = _provider(tmp_path, ollama)
    assert prov.remove(None) == []
    assert ("DELETE", "/api/delete", {"model": "llama:8b"}) in ollama.requests and ollama.tags() == []


def test_a_removed_model_s_interrupted_downloads_are_known_and_discarded(tmp_path, ollama):
    ollama.install()
    entry = _provider(tmp_path, ollama).unmanaged_entry()
    hexw, hexp = _digest(WEIGHTS)[7:], _digest(PARAMS)[7:]
    blobs = os.path.join(ollama.store, "blobs")
    os.mkdir(os.path.join(blobs, f"sha256-{hexw}-partial"))   # cannot be removed as a file: left, the rest goes
    for name, done in ((f"sha256-{hexw}-partial-0", 700), (f"sha256-{hexp}-partial-1", 20)):
        with open(os.path.join(blobs, name), "w", encoding="utf-8") as fh:
            json.dump({"Completed": done}, fh)
    with open(os.path.join(blobs, f"sha256-{hexp}-partial"), "wb") as fh:
        fh.write(b"\0" * 50)
    with open(os.path.join(blobs, f"sha256-{'9' * 64}-partial-0"), "w", encoding="utf-8") as fh:
        json.dump({"Completed": 5}, fh)
    prov = _provider(tmp_path, ollama)
    prov.remove(entry)
    assert prov.staging_bytes() == 720
    assert prov.discard_staging() is True
    assert set(os.listdir(blobs)) == {f"sha256-{'9' * 64}-partial-0", f"sha256-{hexw}-partial"} | {
        f"sha256-{d[7:]}" for d in BLOBS if os.path.exists(ollama.blob(d))}
    assert prov.staging_bytes() == 0


def test_partial_records_that_say_nothing_count_nothing(tmp_path):
    blobs = tmp_path / "st[or]e" / "blobs"
    blobs.mkdir(parents=True)
    hexd = "a" * 64
    (blobs / f"sha256-{hexd}-partial-0").write_text(json.dumps({"Completed": None}))
    (blobs / f"sha256-{hexd}-partial-1").write_text(json.dumps([1, 2]))
    (blobs / f"sha256-{hexd}-partial-2").write_text(json.dumps({"Completed": 30}))
    assert _ollama.partial_bytes(str(tmp_path / "st[or]e"), hexd) == 30, "a store path with glob characters"


def test_a_repair_removes_only_the_blobs_found_damaged_and_reports_the_pull(tmp_path, ollama):
    ollama.install()
    with open(ollama.blob(_digest(WEIGHTS)), "r+b") as fh:
        fh.write(b"X")
    with open(ollama.blob(_digest(CONFIG)), "ab") as fh:
        fh.write(b"x")
    ollama.pull_lines = [{"status": "pulling w", "digest": _digest(WEIGHTS), "total": len(WEIGHTS),
                          "completed": len(WEIGHTS)}, {"status": "success"}]   # a pull that leaves the store as is
    prov = _provider(tmp_path, ollama)
    progress = Progress()
    blob = "blobs/sha256-{}".format
    prov.repair({}, [Problem(path=blob(_digest(WEIGHTS)[7:]), kind="digest"),
                     Problem(path=blob(_digest(CONFIG)[7:]), kind="size"),
                     Problem(path=blob(_digest(PARAMS)[7:]), kind="extra"),
                     Problem(path="manifest", kind="digest")], progress)
    assert not os.path.exists(ollama.blob(_digest(WEIGHTS))) and not os.path.exists(ollama.blob(_digest(CONFIG)))
    assert os.path.exists(ollama.blob(_digest(PARAMS))), "a blob not found damaged (another model's layer) stays"
    assert os.path.exists(ollama.manifest_file())
    assert progress.message == "Ollama: success" and progress.total == len(WEIGHTS) and progress.transferred == len(
        WEIGHTS), "the repair's pull reports its progress"


def test_the_quick_check_s_problems_say_what_was_expected_and_found(tmp_path, ollama):
    ollama.install()
    with open(ollama.blob(_digest(CONFIG)), "ab") as fh:
        fh.write(b"xy")
    path = f"blobs/sha256-{_digest(CONFIG)[7:]}"
    problems = _provider(tmp_path, ollama).quick_check({"revision": "0" * 64, "files": [{"path": path,
                                                                                        "size": len(CONFIG)}]})
    assert problems == [Problem(path="manifest", kind="digest", expected="0" * 64, actual=MANIFEST_DIGEST[7:]),
                        Problem(path=path, kind="size", expected=len(CONFIG), actual=len(CONFIG) + 2)]


def test_a_store_that_cannot_be_read_has_no_staging_and_nothing_to_discard(tmp_path, ollama):
    prov = _provider(tmp_path, ollama, models_path=str(tmp_path / "elsewhere"))
    prov.resolve(None)
    assert prov.staging_bytes() == 0 and prov.discard_staging() is False


def test_verify_reports_the_sizes_of_a_blob_that_changed_and_checks_entries_without_digests(tmp_path, ollama):
    ollama.install()
    nameless = [{"path": f"blobs/sha256-{d[7:]}", "size": len(b), "sha256": None} for d, b in BLOBS.items()]
    prov = _provider(tmp_path, ollama)
    assert prov.verify({"files": nameless}, None) == [], "the blob's name is its digest"
    with open(ollama.blob(_digest(PARAMS)), "ab") as fh:
        fh.write(b"xyz")
    path = f"blobs/sha256-{_digest(PARAMS)[7:]}"
    assert prov.verify({"files": nameless}, None) == [Problem(path=path, kind="size", expected=len(PARAMS),
                                                              actual=len(PARAMS) + 3)]


def test_the_capabilities_are_asked_of_the_server_for_this_model(tmp_path, ollama):
    ollama.install()
    prov = _provider(tmp_path, ollama)
    assert prov.detect_capabilities(None)["max_context_length"] == 8192
    assert ("POST", "/api/show", {"model": "llama:8b"}) in ollama.requests


def test_a_pull_for_a_plain_http_registry_asks_ollama_to_allow_it(tmp_path, ollama):
    prov = _provider(tmp_path, ollama, insecure=True)
    prov.install(prov.resolve(None), None)
    assert [r[2] for r in ollama.requests if r[1] == "/api/pull"] == [
        {"model": "llama:8b", "insecure": True, "stream": True}]


def test_the_latest_version_is_always_pulled_even_when_the_server_has_that_digest(tmp_path, ollama):
    ollama.install()
    prov = _provider(tmp_path, ollama)
    latest = prov.resolve(None, latest=True)
    assert latest.revision == MANIFEST_DIGEST[7:]
    fields = prov.install(latest, None)
    assert [r[1] for r in ollama.requests].count("/api/pull") == 1 and fields["revision"] == MANIFEST_DIGEST[7:]
    assert ("POST", "/api/show", {"model": "llama:8b"}) in ollama.requests


def test_a_repair_records_the_layers_of_the_store_s_manifest(tmp_path, ollama):
    ollama.install()
    fields = _provider(tmp_path, ollama).repair({}, [], None)
    assert sorted(f["path"] for f in fields["files"]) == sorted(f"blobs/sha256-{d[7:]}" for d in BLOBS)


def test_the_size_the_server_reports_is_recorded_and_an_impossible_one_refused(tmp_path, ollama, monkeypatch):
    ollama.install()
    prov = _provider(tmp_path, ollama)
    monkeypatch.setattr(ollama, "tags", lambda: [{"name": "llama:8b", "digest": "abc", "size": 12345}])
    assert prov.repair({}, [], None)["size_bytes"] == 12345
    monkeypatch.setattr(ollama, "tags", lambda: [{"name": "llama:8b", "digest": "abc", "size": -5}])
    with pytest.raises(ValidationError) as info:
        prov.repair({}, [], None)
    assert info.value.msg.startswith("the size of llama:8b is -5 bytes")


def test_a_directory_without_blobs_is_not_an_ollama_store_to_verify(tmp_path, ollama):
    ollama.install()
    (tmp_path / "not-a-store").mkdir()
    prov = _provider(tmp_path, ollama, models_path=str(tmp_path / "not-a-store"))
    with pytest.raises(ProviderError, match="cannot be read here"):
        prov.verify({"files": [{"path": "blobs/sha256-" + "a" * 64, "size": 1}]}, None)


def test_a_model_the_server_has_resolves_to_its_tag_in_its_store(tmp_path, ollama):
    ollama.install()
    target = _provider(tmp_path, ollama).resolve(None)
    assert (target.requested_revision, target.disk_path, target.staged_bytes) == ("8b", ollama.store, 0)


def test_a_model_that_changed_on_the_server_after_the_check_is_pulled(tmp_path, ollama, monkeypatch):
    ollama.install()
    prov = _provider(tmp_path, ollama)
    target = prov.resolve(None)
    monkeypatch.setattr(ollama, "tags", lambda: [{"name": "llama:8b", "digest": "0" * 64, "size": 1}])
    fields = prov.install(target, Progress())
    assert [r[1] for r in ollama.requests].count("/api/pull") == 1 and fields["revision"] == "0" * 64


def test_an_insecure_provider_reads_the_manifest_of_the_name_s_own_registry_over_http(tmp_path, ollama):
    host = ollama.url.split("://", 1)[1]
    req = ModelRequest(name=f"{host}/library/llama:8b", provider="ollama", models_dir=str(tmp_path / "models"),
                       endpoint=ollama.url, insecure=True)
    prov = OllamaProvider(req, StatePaths(str(tmp_path / "models")), models_path=ollama.store)
    target = prov.resolve(None)
    assert target.revision == MANIFEST_DIGEST[7:] and target.extra["ollama"]["registry"] == host
    assert ("GET", "/v2/library/llama/manifests/8b", None) in ollama.requests


def test_the_registry_is_read_with_the_provider_s_tls_settings(tmp_path, ollama):
    req = ModelRequest(name="llama:8b", provider="ollama", models_dir=str(tmp_path), registry=ollama.url,
                       ca_path=str(tmp_path / "missing-ca.pem"))
    prov = OllamaProvider(req, StatePaths(str(tmp_path)), models_path=ollama.store,
                          client=ollama_api.OllamaClient(ollama.url))
    with pytest.raises(ValidationError, match="missing-ca.pem does not exist"):
        prov.resolve(None)


def test_a_model_not_installed_in_a_store_that_cannot_be_read_counts_every_layer(tmp_path, ollama):
    target = _provider(tmp_path, ollama, models_path=str(tmp_path / "elsewhere")).resolve(None)
    assert target.staged_bytes == 0 and target.fetch_bytes == sum(len(d) for d in BLOBS.values())


def test_a_present_model_s_target_carries_the_server_s_settings(tmp_path, ollama):
    ollama.install()
    target = _provider(tmp_path, ollama).resolve(None)
    assert target.extra["ollama"] == {"endpoint": ollama.url, "models_path": ollama.store, "registry": ollama.url,
                                      "insecure": False}


def test_a_model_asked_in_another_case_is_read_from_the_store_under_ollama_s_spelling(tmp_path, ollama):
    ollama.install()
    entry = _provider(tmp_path, ollama, name="Llama:8B").unmanaged_entry()
    assert sorted(f["path"] for f in entry["files"]) == sorted(f"blobs/sha256-{d[7:]}" for d in BLOBS)


def test_a_request_with_only_a_name_gets_the_defaults(tmp_path):
    prov = OllamaProvider(types.SimpleNamespace(name="llama:8b"), StatePaths(str(tmp_path)))
    assert prov.entry_extra() == {"endpoint": "http://127.0.0.1:11434", "models_path": _ollama.DEFAULT_MODELS_PATH,
                                  "registry": "registry.ollama.ai", "insecure": False}
    assert prov.client.pull_read_timeout == 900.0 and prov.paths.models_dir == str(tmp_path)


def test_without_requests_the_registry_manifest_names_what_it_is_needed_for(monkeypatch):
    monkeypatch.setattr(ollama_api, "requests", None)
    with pytest.raises(MissingDependencyError, match="to read a model's manifest from its registry"):
        registry_manifest("llama:8b")
