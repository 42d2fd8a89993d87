# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the available subset and of the runtimes facts (no server involved)."""
from __future__ import annotations

import json
import os
import ssl

import pytest

from ansible_collections.venom.models.plugins.module_utils.models import available as A
from ansible_collections.venom.models.plugins.module_utils.models import huggingface as HF
from ansible_collections.venom.models.plugins.module_utils.models.ollama_api import OllamaClient
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec, Target
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.host.facts import DEFAULT_SUBSETS, SUBSETS, resolve_subsets
from ansible_collections.venom.models.plugins.module_utils.runtimes.controller import runtimes_status


def test_installed_marks_match_by_provider_and_case():
    models = [{"name": "Org/Model", "provider": "huggingface", "status": "installed", "revision": "a" * 40},
              {"name": "org/model", "provider": "local", "status": "installed", "revision": "b" * 40},
              {"name": "org/half", "provider": "huggingface", "status": "installing", "revision": None}]
    index = A._installed_index(models, "huggingface")
    assert A._mark({}, index, "org/model") == {"installed": True, "installed_revision": "a" * 40}
    assert A._mark({}, index, "org/half") == {"installed": False, "installed_revision": None}
    assert A._mark({}, index, "org/other") == {"installed": False, "installed_revision": None}


@pytest.mark.parametrize("provider,limit,text", [
    ("local", 5, "cannot list provider 'local'"),
    ("huggingface", 0, "limit must be between 1 and 1000"),
    ("ollama", 1001, "limit must be between 1 and 1000"),
])
def test_bad_queries_are_refused_before_any_request(tmp_path, provider, limit, text):
    with pytest.raises(ValidationError) as err:
        A.available(provider, str(tmp_path), endpoint="http://127.0.0.1:9", limit=limit)
    assert text in str(err.value) and err.value.fix


def test_available_is_not_gathered_by_default_but_runtimes_is():
    assert "available" in SUBSETS and "available" not in DEFAULT_SUBSETS and "runtimes" in DEFAULT_SUBSETS
    assert resolve_subsets([]) == list(DEFAULT_SUBSETS)
    assert resolve_subsets(["all", "!available"]) == list(DEFAULT_SUBSETS)
    assert "available" not in resolve_subsets(["all"]), "facts describe this host: no remote lookup in 'all'"
    assert "available" in resolve_subsets(["available"])


def test_runtimes_status_reads_the_state_venom_runtime_left(tmp_path):
    models_dir = str(tmp_path / "models")
    assert not os.path.exists(models_dir)
    st = runtimes_status(models_dir)
    assert st["vllm"]["configured"] is False and st["ollama"]["configured"] is False
    assert st["vllm"]["port"] == 8000 and st["ollama"]["port"] == 11434 and st["vllm"]["restarts"] is None
    assert not os.path.exists(models_dir), "reading the status creates nothing"

    state_dir = tmp_path / "models" / ".venom" / "runtimes"
    state_dir.mkdir(parents=True)
    (state_dir / "ollama.json").write_text(json.dumps({
        "kind": "venom.models/runtime", "name": "ollama", "mode": "process", "host": "127.0.0.1", "port": 9,
        "activation": {"model": "llama3:latest", "provider": "ollama"}, "restarts": 2}))
    st = runtimes_status(models_dir)["ollama"]
    assert st["configured"] is True and st["mode"] == "process" and st["port"] == 9
    assert st["running"] is False and st["crashed"] is False and st["healthy"] is False
    assert st["model"] == "llama3:latest" and st["restarts"] == 2 and st["url"] == "http://127.0.0.1:9"


# -- capabilities in the listing of a Hugging Face repository (a fixture file list, no server) ------

LISTING = os.path.join(os.path.dirname(__file__), "..", "..", "data", "hf_listing.json")


class _FakeHub:
    """What ``HfApi`` answers for the fixture repository: its commit and its file list (with sizes)."""

    def __init__(self, doc):
        self.doc = doc

    def model_info(self, repo_id, revision=None):
        if repo_id != self.doc["repo"]:
            raise NotFoundError(f"The Hugging Face repository {repo_id} was not found.", fix="Check the name.")
        return type("Info", (), {"sha": self.doc["commit"]})()

    def list_repo_tree(self, repo_id, revision=None, recursive=False):
        for f in self.doc["files"]:
            lfs = type("Lfs", (), {"sha256": f["lfs_sha256"]})() if "lfs_sha256" in f else None
            yield type("File", (), {"path": f["path"], "size": f["size"], "blob_id": f.get("git_oid", "e" * 40),
                                    "lfs": lfs})()


@pytest.fixture
def fixture_hub(monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf  # pylint: disable=import-outside-toplevel
    with open(LISTING, encoding="utf-8") as fh:
        doc = json.load(fh)
    _hf.load_hub()
    hub = _FakeHub(doc)
    monkeypatch.setattr(_hf.HuggingFaceProvider, "api", lambda self: hub)
    monkeypatch.setattr(_hf.HuggingFaceProvider, "_model_info",
                        lambda self, revision: hub.model_info(self.model_id, revision=revision))
    fetched = []
    contents = {f["path"]: f.get("content") for f in doc["files"]}

    def fake_get(url, fh, headers=None, expected_size=None, **_kw):
        path = url.split(f"/resolve/{doc['commit']}/", 1)[1]
        fetched.append(path)
        if contents[path] is None:
            raise AssertionError(f"the listing downloaded {path}, which is not a small file")
        fh.write(contents[path].encode())

    monkeypatch.setattr(_hf, "http_get", fake_get)
    return doc, fetched


def test_a_resolved_repository_lists_its_predicted_capabilities_from_the_small_files(tmp_path, fixture_hub):
    doc, fetched = fixture_hub
    out = A.available("huggingface", str(tmp_path / "models"), endpoint="http://mirror.invalid:8090",
                      names=[doc["repo"], "venom-test/absent"])
    row, missing = out["models"]
    assert row["available"] is True and row["files_count"] == len(doc["files"])
    assert row["size_bytes"] == sum(f["size"] for f in doc["files"])
    caps = row["capabilities"]
    assert row["capabilities_error"] is None
    assert caps["max_context_length"] == 4096 and caps["detected_from"]["max_context_length"].startswith("config.json")
    assert caps["quantization"] == "BF16"
    assert caps["supports_system_role"] is True and "<<SYS>>" in caps["prompt_template"]
    assert sorted(fetched) == ["config.json", "generation_config.json", "tokenizer_config.json"], \
        "only the small files capability detection reads are fetched, never weights, README or tokenizer.json"
    assert missing["available"] is False and missing["capabilities"] is None
    assert not os.path.exists(tmp_path / "models"), "a listing writes nothing under models_dir"


def test_a_small_file_that_cannot_be_read_leaves_the_row_with_an_error(tmp_path, fixture_hub, monkeypatch):
    doc, _fetched = fixture_hub
    from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf  # pylint: disable=import-outside-toplevel

    def refused(url, fh, headers=None, **_kw):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(_hf, "http_get", refused)
    row = A.available("huggingface", str(tmp_path), endpoint="http://mirror.invalid:8090",
                      names=[doc["repo"]])["models"][0]
    assert row["available"] is True and row["capabilities"] is None
    assert "Reading config.json" in row["capabilities_error"] or "cannot reach" in row["capabilities_error"]


# -- the Ollama listing, against a loopback server answering /api/tags ------------------------------

TAGS = {"models": [
    {"name": "llama3:8b", "model": "llama3:8b", "digest": "d1", "size": 4661224676, "modified_at": "2026-11-30T10:00:00Z",
     "details": {"family": "llama", "parameter_size": "8.0B", "quantization_level": "Q4_0", "format": "gguf"}},
    {"model": "Qwen2:0.5b", "digest": "d2", "size": 352, "details": "not a mapping"},
    {"name": "registry.example:5000/team/tiny:latest", "digest": "d3", "size": 7},
    {"name": 42, "digest": "junk"},
    {"name": "bad name with spaces", "digest": "d4", "size": 1},
]}


@pytest.fixture(name="ollama_url")
def fixture_ollama_url():
    from tests.lib.servers import LocalHTTPServer, QuietHandler  # pylint: disable=import-outside-toplevel

    class Handler(QuietHandler):
        def do_GET(self):  # pylint: disable=invalid-name
            body = json.dumps(TAGS if self.path == "/api/tags" else {"error": "not found"}).encode()
            self.send_response(200 if self.path == "/api/tags" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with LocalHTTPServer(Handler) as srv:
        yield srv.url


def test_the_ollama_listing_has_every_model_the_server_has_sorted_with_its_details(tmp_path, ollama_url):
    models = [{"name": "llama3:8b", "provider": "ollama", "status": "installed", "revision": "d0"}]
    out = A.available("ollama", str(tmp_path), models=models, endpoint=ollama_url + "/")
    assert out["endpoint"] == ollama_url and out["provider"] == "ollama" and out["names"] == []
    names = [m["name"] for m in out["models"]]
    assert names == ["bad name with spaces", "llama3:8b", "Qwen2:0.5b", "registry.example:5000/team/tiny:latest"]
    assert out["count"] == 4 and "junk" not in str(out["models"])
    assert "bad name with spaces" in names, "a name Ollama's rule refuses is listed as the server spells it"
    llama = next(m for m in out["models"] if m["name"] == "llama3:8b")
    assert llama == {"name": "llama3:8b", "available": True, "reason": None, "revision": "d1", "size_bytes": 4661224676,
                     "modified_at": "2026-11-30T10:00:00Z", "family": "llama", "parameter_size": "8.0B",
                     "quantization_level": "Q4_0", "format": "gguf", "installed": True, "installed_revision": "d0"}
    qwen = next(m for m in out["models"] if m["name"].lower() == "qwen2:0.5b")
    assert qwen["family"] is None and qwen["installed"] is False and qwen["installed_revision"] is None
    assert next(m for m in out["models"] if "tiny" in m["name"])["name"] == "registry.example:5000/team/tiny:latest"


def test_the_ollama_listing_is_searched_and_limited(tmp_path, ollama_url):
    out = A.available("ollama", str(tmp_path), endpoint=ollama_url, search="QWEN")
    assert [m["name"].lower() for m in out["models"]] == ["qwen2:0.5b"] and out["search"] == "QWEN"
    out = A.available("ollama", str(tmp_path), endpoint=ollama_url, limit=2)
    assert out["count"] == 2 and [m["name"] for m in out["models"]] == ["bad name with spaces", "llama3:8b"]


def test_ollama_names_are_looked_up_and_a_missing_one_says_where_it_was_asked(tmp_path, ollama_url):
    models = [{"name": "nothere:1b", "provider": "ollama", "status": "installed", "revision": "x"}]
    out = A.available("ollama", str(tmp_path), models=models, endpoint=ollama_url,
                      names=["llama3:8b", "nothere:1b", "qwen2:0.5b"], limit=1)
    assert out["names"] == ["llama3:8b", "nothere:1b", "qwen2:0.5b"] and out["count"] == 3, "names ignore limit"
    llama, missing, qwen = out["models"]
    assert llama["available"] is True and llama["revision"] == "d1"
    assert missing == {"name": "nothere:1b", "available": False, "revision": None, "size_bytes": None,
                       "reason": f"the Ollama server at {ollama_url} does not have it (pull it with venom_model)",
                       "installed": True, "installed_revision": "x"}
    assert qwen["available"] is True and qwen["revision"] == "d2"


# -- the Hugging Face search listing (list_models), with a fake HfApi --------------------------------

class _Listing:
    def __init__(self, infos=None, exc=None):
        self.infos, self.exc, self.asked = infos or [], exc, []

    def list_models(self, search=None, limit=None):
        self.asked.append((search, limit))
        if self.exc is not None:
            raise self.exc
        return iter(self.infos)


def _hub_listing(monkeypatch, listing):
    from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf  # pylint: disable=import-outside-toplevel
    seen = []
    monkeypatch.setattr(_hf, "hub_api", lambda url, token, tls: seen.append((url, token)) or listing)
    return seen


def test_the_hub_search_lists_each_model_with_its_facts_and_installed_mark(tmp_path, monkeypatch):
    import datetime  # pylint: disable=import-outside-toplevel
    when = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.timezone.utc)
    infos = [type("I", (), {"id": "Org/Model", "sha": "a" * 40, "pipeline_tag": "text-generation",
                            "library_name": "transformers", "downloads": 5, "likes": 2, "gated": False,
                            "private": False, "last_modified": when})(),
             type("I", (), {"id": "org/other", "created_at": "2026-01-01"})()]
    listing = _Listing(infos)
    seen = _hub_listing(monkeypatch, listing)
    models = [{"name": "org/model", "provider": "huggingface", "status": "installed", "revision": "b" * 40}]
    out = A.available("huggingface", str(tmp_path), models=models, endpoint="http://mirror:8090/", token="hf_secret",
                      search="mod", limit=7)
    assert seen == [("http://mirror:8090", "hf_secret")] and listing.asked == [("mod", 7)]
    assert out["endpoint"] == "http://mirror:8090" and out["count"] == 2
    first, second = out["models"]
    assert first == {"name": "Org/Model", "available": True, "reason": None, "revision": "a" * 40, "capabilities": None,
                     "pipeline_tag": "text-generation", "library_name": "transformers", "downloads": 5, "likes": 2,
                     "gated": False, "private": False, "last_modified": when.isoformat(),
                     "installed": True, "installed_revision": "b" * 40}
    assert second["last_modified"] == "2026-01-01" and second["revision"] is None and second["installed"] is False
    A.available("huggingface", str(tmp_path), search="", limit=3)
    assert listing.asked[-1] == (None, 3) and seen[-1] == ("https://huggingface.co", None)


@pytest.mark.parametrize("status, exc_type, what", [(404, RuntimeError, "HTTP 404"), (405, RuntimeError, "HTTP 405"),
                                                    (501, RuntimeError, "HTTP 501"), (None, ValueError, "no JSON answer")])
def test_a_mirror_that_cannot_search_says_to_give_names(tmp_path, monkeypatch, status, exc_type, what):
    exc = exc_type("Expecting value: line 1")
    exc.response = type("R", (), {"status_code": status})()
    _hub_listing(monkeypatch, _Listing(exc=exc))
    with pytest.raises(A.ProviderError) as info:
        A.available("huggingface", str(tmp_path), endpoint="http://mirror:8090")
    assert f"http://mirror:8090 does not list models ({what} on /api/models)" in info.value.msg
    assert "'names'" in info.value.fix


def test_a_failed_search_names_the_cause_without_the_token(tmp_path, monkeypatch):
    exc = RuntimeError("500 Server Error for Bearer hf_secret\nsecond line")
    exc.response = type("R", (), {"status_code": 500})()
    _hub_listing(monkeypatch, _Listing(exc=exc))
    with pytest.raises(A.ProviderError) as info:
        A.available("huggingface", str(tmp_path), token="hf_secret")
    assert "Listing the models of https://huggingface.co failed (RuntimeError: 500 Server Error for Bearer" \
        in info.value.msg
    assert "hf_secret" not in info.value.msg and "second line" not in info.value.msg
    _hub_listing(monkeypatch, _Listing(exc=RuntimeError()))
    with pytest.raises(A.ProviderError) as info:
        A.available("huggingface", str(tmp_path))
    assert "(RuntimeError: RuntimeError)" in info.value.msg


def test_a_repository_that_is_not_found_is_a_row_saying_why(tmp_path, monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf  # pylint: disable=import-outside-toplevel

    def missing(self, entry, latest=False):
        raise NotFoundError(f"no {self.model_id} at {self.endpoint}", fix="x")
    monkeypatch.setattr(_hf.HuggingFaceProvider, "resolve", missing)
    models = [{"name": "org/gone", "provider": "huggingface", "status": "installed", "revision": "c" * 40}]
    row = A.available("huggingface", str(tmp_path), models=models, endpoint="http://mirror:8090",
                      names=["org/gone"], revision="v2")["models"][0]
    assert row == {"name": "org/gone", "available": False, "reason": "no org/gone at http://mirror:8090", "revision": None,
                   "requested_revision": "v2", "size_bytes": None, "files_count": None, "capabilities": None,
                   "capabilities_error": None, "installed": True, "installed_revision": "c" * 40}
    row = A.available("huggingface", str(tmp_path), names=["org/gone"])["models"][0]
    assert row["requested_revision"] == "main" and row["reason"] == "no org/gone at https://huggingface.co"


def test_an_installed_repository_at_another_commit_has_an_update(tmp_path, fixture_hub):
    doc, _fetched = fixture_hub
    for revision, update in (("0" * 40, True), (doc["commit"], False)):
        models = [{"name": doc["repo"], "provider": "huggingface", "status": "installed", "revision": revision}]
        row = A.available("huggingface", str(tmp_path), models=models, endpoint="http://mirror.invalid:8090",
                          names=[doc["repo"]], revision="main", token="hf_x")["models"][0]
        assert row["update_available"] is update and row["installed_revision"] == revision
        assert row["revision"] == doc["commit"] and row["requested_revision"] == "main" and row["reason"] is None


# -- the settings and texts the listings pass on --------------------------------------------------

def test_a_capabilities_error_never_shows_the_token(tmp_path, fixture_hub, monkeypatch):
    doc, _fetched = fixture_hub

    def refused(self, target):
        raise A.ProviderError("Reading config.json failed: 401 for Authorization: Bearer hf_secret", fix="x")
    monkeypatch.setattr(HF.HuggingFaceProvider, "predict_capabilities", refused)
    row = A.available("huggingface", str(tmp_path), endpoint="http://mirror.invalid:8090", names=[doc["repo"]],
                      token="hf_secret")["models"][0]
    assert row["capabilities"] is None and row["capabilities_error"].startswith("Reading config.json failed: 401")
    assert "hf_secret" not in row["capabilities_error"]


def test_a_resolved_repository_is_read_with_the_tls_settings_given(tmp_path, fixture_hub):
    doc, _fetched = fixture_hub
    tls = Tls(ca_path=str(tmp_path / "missing-ca.pem"))
    row = A.available("huggingface", str(tmp_path), endpoint="http://mirror.invalid:8090", names=[doc["repo"]],
                      tls=tls)["models"][0]
    assert row["capabilities"] is None and "missing-ca.pem does not exist" in row["capabilities_error"]


def test_the_hub_search_uses_the_tls_settings_and_names_a_certificate_failure(tmp_path, monkeypatch):
    cert = ssl.SSLCertVerificationError(1, "handshake")
    cert.verify_message = "self-signed certificate"
    given = []
    listing = _Listing(exc=ConnectionError("connect failed"))
    listing.exc.__cause__ = cert
    monkeypatch.setattr(HF, "hub_api", lambda url, token, tls: given.append(tls) or listing)
    tls = Tls()
    with pytest.raises(A.ProviderError) as info:
        A.available("huggingface", str(tmp_path), endpoint="https://hub.internal", tls=tls)
    assert given == [tls]
    assert info.value.msg.startswith("Listing the models of https://hub.internal: the TLS certificate of "
                                     "https://hub.internal could not be verified")
    assert "self-signed certificate" in info.value.msg and "ca_path" in info.value.fix


def test_a_failed_search_says_what_to_check(tmp_path, monkeypatch):
    exc = RuntimeError("502 Bad Gateway")
    exc.response = type("R", (), {"status_code": 502})()
    _hub_listing(monkeypatch, _Listing(exc=exc))
    with pytest.raises(A.ProviderError) as info:
        A.available("huggingface", str(tmp_path), endpoint="http://mirror:8090")
    assert "(RuntimeError: 502 Bad Gateway)" in info.value.msg
    assert "Check the endpoint" in info.value.fix and "proxy" in info.value.fix


def test_the_ollama_listing_asks_the_local_server_by_default(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(OllamaClient, "tags", lambda self: asked.append((self.endpoint, self.timeout)) or [])
    out = A.available("ollama", str(tmp_path))
    assert out == {"provider": "ollama", "endpoint": "http://127.0.0.1:11434", "search": None, "names": [],
                   "count": 0, "models": []}
    assert asked == [("http://127.0.0.1:11434", 15.0)]
    out = A.available("ollama", str(tmp_path), names=["ghost:1b"], models=None)
    assert out["models"][0]["reason"] == \
        "the Ollama server at http://127.0.0.1:11434 does not have it (pull it with venom_model)"
    assert out["models"][0]["installed"] is False


@pytest.mark.parametrize("limit", [1, 1000])
def test_the_limits_at_both_ends_are_accepted(tmp_path, ollama_url, limit):
    out = A.available("ollama", str(tmp_path), endpoint=ollama_url, limit=limit)
    assert out["count"] == min(limit, 4)


@pytest.mark.parametrize("limit", [2.0, "5", None])
def test_a_limit_that_is_not_a_whole_number_is_refused(tmp_path, limit):
    with pytest.raises(ValidationError, match="limit must be between 1 and 1000"):
        A.available("ollama", str(tmp_path), endpoint="http://127.0.0.1:9", limit=limit)


def test_ollama_names_are_matched_whatever_their_spelling(tmp_path, ollama_url):
    models = [{"name": "registry.ollama.ai/library/llama3:8b", "provider": "ollama", "status": "installed",
               "revision": "d1"},
              {"name": "qwen2:0.5b", "provider": "huggingface", "status": "installed", "revision": "hf"}]
    out = A.available("ollama", str(tmp_path), models=models, endpoint=ollama_url,
                      names=["LLAMA3:8B", "library/qwen2:0.5b"])
    llama, qwen = out["models"]
    assert llama["name"] == "llama3:8b" and llama["available"] is True and llama["installed"] is True
    assert llama["installed_revision"] == "d1"
    assert qwen["available"] is True and qwen["installed"] is False, "another provider's entry is not this model"
    assert out["names"] == ["LLAMA3:8B", "library/qwen2:0.5b"]


def test_the_ollama_search_matches_any_part_of_the_name(tmp_path, ollama_url):
    out = A.available("ollama", str(tmp_path), endpoint=ollama_url, search="Team/")
    assert [m["name"] for m in out["models"]] == ["registry.example:5000/team/tiny:latest"]
    assert A.available("ollama", str(tmp_path), endpoint=ollama_url, search="nothing-like-it")["models"] == []
    assert A.available("ollama", str(tmp_path), endpoint=ollama_url, search="")["count"] == 4


def test_the_ollama_listing_names_each_model_as_venom_model_would(tmp_path, monkeypatch):
    monkeypatch.setattr(OllamaClient, "tags", lambda self: [
        {"name": "registry.ollama.ai/library/mistral", "digest": "d9"},
        {"model": "library/phi3:mini", "digest": "d8"}])
    models = [{"name": "mistral", "provider": "ollama", "status": "installed", "revision": "d9"}]
    out = A.available("ollama", str(tmp_path), models=models, endpoint="http://ollama.lan:11434")
    assert [(m["name"], m["revision"], m["installed"]) for m in out["models"]] == [
        ("mistral:latest", "d9", True), ("phi3:mini", "d8", False)]


def test_a_hub_model_without_any_date_has_none(tmp_path, monkeypatch):
    _hub_listing(monkeypatch, _Listing([type("I", (), {"id": "org/undated"})()]))
    row = A.available("huggingface", str(tmp_path), search="undated")["models"][0]
    assert row["last_modified"] is None and row["pipeline_tag"] is None and row["downloads"] is None


def test_an_ollama_name_asked_in_another_spelling_is_marked_installed(tmp_path, ollama_url):
    models = [{"name": "llama3:8b", "provider": "ollama", "status": "installed", "revision": "d1"}]
    row = A.available("ollama", str(tmp_path), models=models, endpoint=ollama_url,
                      names=["LIBRARY/llama3:8b"])["models"][0]
    assert (row["name"], row["available"], row["installed"]) == ("llama3:8b", True, True)
    assert row["installed_revision"] == "d1"


def test_each_name_is_resolved_as_venom_model_would_with_the_revision_token_and_directory(tmp_path, monkeypatch):
    asked = []

    def resolve(self, entry, latest=False):
        asked.append((self.model_id, self.request.revision, self.request.token, self.request.models_dir,
                      self.paths.models_dir, entry, latest))
        return Target(revision="c" * 40, requested_revision=self.request.revision or "main",
                      files=[FileSpec(path="model.safetensors", size=7)], local_path=None)
    monkeypatch.setattr(HF.HuggingFaceProvider, "resolve", resolve)
    monkeypatch.setattr(HF.HuggingFaceProvider, "predict_capabilities", lambda self, target: {"max_context_length": 9})
    out = A.available("huggingface", str(tmp_path / "models"), endpoint="http://mirror:8090", token="hf_x",
                      names=["org/one", "org/two"], revision="v1.0")
    models_dir = str(tmp_path / "models")
    assert asked == [("org/one", "v1.0", "hf_x", models_dir, models_dir, None, False),
                     ("org/two", "v1.0", "hf_x", models_dir, models_dir, None, False)]
    assert [(m["name"], m["revision"], m["requested_revision"], m["size_bytes"], m["files_count"], m["capabilities"])
            for m in out["models"]] == [("org/one", "c" * 40, "v1.0", 7, 1, {"max_context_length": 9}),
                                        ("org/two", "c" * 40, "v1.0", 7, 1, {"max_context_length": 9})]


def test_the_ollama_endpoint_is_reported_without_its_trailing_slash(tmp_path, monkeypatch):
    monkeypatch.setattr(OllamaClient, "tags", lambda self: [])
    assert A.available("ollama", str(tmp_path), endpoint="http://OLLAMA.BOX/")["endpoint"] == "http://OLLAMA.BOX"
