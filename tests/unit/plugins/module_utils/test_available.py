# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the available subset and of the runtimes facts (no server involved)."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.models import available as A
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
