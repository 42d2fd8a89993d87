# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.models.discovery import discover
from ansible_collections.venom.models.plugins.module_utils.store.atomic import dir_size
from ansible_collections.venom.models.plugins.module_utils.store.validation import validate_model_name


def _model_dir(path, weights="model.safetensors", size=100):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / weights).write_bytes(b"x" * size)
    return path


def test_discovers_unknown_dirs_gguf_and_hf_cache(tmp_path):
    models_dir = tmp_path / "models"
    known = _model_dir(models_dir / "huggingface" / "org" / "known" / ("a" * 40))
    _model_dir(models_dir / "stray" / "bert")
    _model_dir(models_dir / ".venom" / "staging" / "partial")
    (models_dir / "gguf").mkdir()
    (models_dir / "gguf" / "Llama 3 Q4.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    extra = _model_dir(tmp_path / "app" / "models" / "mine", weights="pytorch_model.bin", size=7)
    cache = tmp_path / "hf"
    blob = cache / "models--BAAI--bge-small" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"w" * 50)
    snap = cache / "models--BAAI--bge-small" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(os.path.relpath(blob, snap))
    found = discover(str(models_dir), [{"local_path": str(known)}], extra_paths=[str(tmp_path / "app")],
                     environ={"HF_HUB_CACHE": str(cache)})
    by_kind = {}
    for item in found:
        by_kind.setdefault(item["kind"], []).append(item)
    dirs = sorted(i["path"] for i in by_kind["model_directory"])
    assert dirs == sorted([str(models_dir / "stray" / "bert"), str(extra)])
    assert by_kind["gguf_file"][0]["adopt_with"]["name"] == "Llama-3-Q4"
    hf = by_kind["huggingface_cache"][0]
    assert hf["repo_id"] == "BAAI/bge-small" and hf["revision"] == "c" * 40 and hf["size_bytes"] == 50
    assert hf["install_with"] == {"provider": "huggingface", "name": "BAAI/bge-small", "revision": "c" * 40}
    for item in found:
        assert validate_model_name(item["adopt_with"]["name"], "local")
        assert "staging" not in item["path"]


def test_nothing_to_find(tmp_path):
    (tmp_path / "models").mkdir()
    env = {"HF_HUB_CACHE": str(tmp_path / "none"), "HOME": str(tmp_path / "home")}
    assert discover(str(tmp_path / "models"), [], environ=env) == []
    assert discover(str(tmp_path / "missing"), [], environ=env) == []


def test_dir_size_counts_links_only_when_asked(tmp_path):
    (tmp_path / "blob").write_bytes(b"b" * 50)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_bytes(b"f" * 7)
    (tree / "link").symlink_to(tmp_path / "blob")
    (tree / "dangling").symlink_to(tmp_path / "gone")
    assert dir_size(str(tree)) == 7  # the store: a link is not a file of the model
    assert dir_size(str(tree), follow_symlinks=True) == 57  # a Hub cache snapshot: links to blobs
