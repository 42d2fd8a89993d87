# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure logic of the Ollama provider: error mapping, layer files, partial download records."""
from __future__ import annotations

import hashlib
import json

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import IntegrityError, NotFoundError, ProviderError
from ansible_collections.venom.models.plugins.module_utils.models.ollama import (
    OllamaProvider, blob_file_name, layer_files, partial_bytes)
from ansible_collections.venom.models.plugins.module_utils.models.ollama_api import pull_error
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths

D1, D2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.mark.parametrize("error, cls, fix_word", [
    ("pull model manifest: file does not exist", NotFoundError, "name and tag"),
    ("insecure protocol http", ProviderError, "insecure: true"),
    ('pull model manifest: Get "https://r:5000/v2/x": http: server gave HTTP response to HTTPS client', ProviderError, "insecure"),
    ("digest mismatch, file must be downloaded again: want sha256:1, got sha256:2", IntegrityError, "again"),
    ("max retries exceeded: unexpected EOF", ProviderError, "resume"),
    ("something new", ProviderError, "journalctl"),
])
def test_pull_errors_name_the_cause_and_the_fix(error, cls, fix_word):
    err = pull_error("m:latest", error, "registry.ollama.ai")
    assert isinstance(err, cls) and error.split(":")[0] in str(err) and fix_word in err.fix


def test_layer_files_include_config_once_and_reject_bad_digests():
    doc = {"config": {"digest": D2, "size": 5}, "layers": [{"digest": D1, "size": 10}, {"digest": D1, "size": 10}]}
    assert [(f.path, f.size, f.sha256) for f in layer_files(doc)] == [
        ("blobs/sha256-" + "a" * 64, 10, "a" * 64), ("blobs/sha256-" + "b" * 64, 5, "b" * 64)]
    with pytest.raises(ProviderError):
        blob_file_name("sha256:../../etc/passwd")


def test_partial_bytes_sums_the_part_records(tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for n, done in ((0, 100), (1, 50)):
        (blobs / f"sha256-{'a' * 64}-partial-{n}").write_text(json.dumps({"N": n, "Offset": 0, "Size": 200, "Completed": done}))
    (blobs / f"sha256-{'a' * 64}-partial").write_bytes(b"\0" * 400)
    (blobs / f"sha256-{'b' * 64}-partial-0").write_text("not json")
    assert partial_bytes(str(tmp_path), "a" * 64) == 150
    assert partial_bytes(str(tmp_path), "b" * 64) == 0
    assert partial_bytes(str(tmp_path), "c" * 64) == 0


class _Server:
    """What verify asks the Ollama server: only whether it lists the model."""

    def __init__(self, listed=True):
        self.listed = listed

    def find(self, name):
        return {"model": name, "digest": "d"} if self.listed else None


def _verify_store(tmp_path, blobs, listed=True):
    """A store holding ``blobs`` ({recorded digest hex: bytes on disk}); verify's problems."""
    (tmp_path / "store" / "blobs").mkdir(parents=True)
    files = []
    for digest, data in blobs.items():
        (tmp_path / "store" / "blobs" / f"sha256-{digest}").write_bytes(data)
        files.append({"path": f"blobs/sha256-{digest}", "size": len(data), "sha256": digest})
    prov = OllamaProvider(ModelRequest(name="llama3:8b", models_dir=str(tmp_path)), StatePaths(str(tmp_path)),
                          models_path=str(tmp_path / "store"), client=_Server(listed))
    return prov.verify({"files": files}, None)


def test_verify_compares_each_blob_with_its_digest(tmp_path):
    good, bad = b"weights", b"WEIGHTS"   # same size, different content
    digest = hashlib.sha256(good).hexdigest()
    assert _verify_store(tmp_path / "ok", {digest: good}) == []
    problems = _verify_store(tmp_path / "bad", {digest: bad})
    assert [(p.kind, p.expected, p.actual) for p in problems] == [("digest", digest, hashlib.sha256(bad).hexdigest())]


def test_verify_reports_a_model_the_server_no_longer_lists(tmp_path):
    problems = _verify_store(tmp_path, {}, listed=False)
    assert [(p.path, p.kind) for p in problems] == [("llama3:8b", "missing")]
