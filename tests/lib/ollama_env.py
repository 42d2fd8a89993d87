# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real OCI registry, a blob-storage test double and the Ollama server test double, for tests.

* ``OciRegistry``: Debian's ``docker-registry`` (the distribution registry, real) with its
  ``redirect`` storage middleware pointing at the blob storage test double
  (tests/doubles/ollama/blob_storage_test_double.py), as registry.ollama.ai redirects blob
  downloads to object storage. Faults (throttle, dropped connections, HTTP errors) are set on
  the storage double through ``OciRegistry.set_faults``.
* ``publish_model``: builds a small Ollama-format model (a real GGUF v3 file with metadata and
  tensor data, template, system, params and license layers, config blob) and pushes it with the
  OCI push protocol.
* ``OllamaTestDouble``: starts ``ollama_test_double.py serve`` with ``OLLAMA_HOST`` /
  ``OLLAMA_MODELS`` on a free port.
* pytest fixtures: ``oci_registry`` and ``ollama_models`` (session), ``ollama_double`` (per test).

Ports come from ``VENOM_TEST_OLLAMA_PORTS`` (default 11430-11469) and
``VENOM_TEST_REGISTRY_PORTS`` (default 15000-15019), so parallel users pick their own ranges.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import pytest
import requests

from tests.lib.gguf_writer import build_gguf, typed
from tests.lib.ports import free_port
from tests.lib.servers import stop_process, wait_http

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOUBLES = os.path.join(REPO, "tests", "doubles", "ollama")
OLLAMA_DOUBLE = os.path.join(DOUBLES, "ollama_test_double.py")
STORAGE_DOUBLE = os.path.join(DOUBLES, "blob_storage_test_double.py")
STORAGE_HOST = "127.0.0.2"  # another host name than the registry's, as object storage is
OLLAMA_PORTS = "11430-11469"  # unless VENOM_TEST_OLLAMA_PORTS names others
REGISTRY_PORTS = "15000-15019"  # unless VENOM_TEST_REGISTRY_PORTS names others

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA = {k: f"application/vnd.ollama.image.{k}" for k in ("model", "template", "system", "params", "license", "messages")}


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

class OciRegistry:
    """The real distribution registry plus the blob storage test double it redirects to."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.root = os.path.join(workdir, "storage")
        self.port = 0
        self.storage_port = 0
        self.proc: subprocess.Popen | None = None
        self.storage: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        """host:port as it appears in model names."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage_url(self) -> str:
        return f"http://{STORAGE_HOST}:{self.storage_port}"

    def start(self) -> "OciRegistry":
        exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        if not os.path.exists(exe):
            raise RuntimeError("docker-registry is not installed: run `make system` (or apt-get install docker-registry)")
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port(REGISTRY_PORTS, env="VENOM_TEST_REGISTRY_PORTS", shuffle=True)
        self.storage_port = free_port(REGISTRY_PORTS, STORAGE_HOST, exclude=(self.port,), env="VENOM_TEST_REGISTRY_PORTS",
                                      shuffle=True)
        slog = os.path.join(self.workdir, "storage.log")
        with open(slog, "ab") as out:
            self.storage = subprocess.Popen([sys.executable, STORAGE_DOUBLE, "--root", self.root, "--host", STORAGE_HOST,
                                             "--port", str(self.storage_port)], stdout=out, stderr=out)
        config = os.path.join(self.workdir, "config.yml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {self.root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
middleware:
  storage:
    - name: redirect
      options:
        baseurl: {self.storage_url}/
http:
  addr: {self.host}
""")
        rlog = os.path.join(self.workdir, "registry.log")
        with open(rlog, "ab") as out:
            self.proc = subprocess.Popen([exe, "serve", config], stdout=out, stderr=out)
        wait_http(self.url + "/v2/", 20, self.proc.poll, rlog)
        wait_http(self.storage_url + "/_test/faults", 20, self.storage.poll, slog)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        stop_process(self.storage)

    # ---- OCI push ---------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        return requests.head(f"{self.url}/v2/{repo}/blobs/{digest}", allow_redirects=False, timeout=30).status_code in (200, 307)

    def push_blob(self, repo: str, path: str) -> tuple:
        """Monolithic upload (POST then PUT with ?digest=); returns (digest, size)."""
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest, size = "sha256:" + h.hexdigest(), os.path.getsize(path)
        if self.has_blob(repo, digest):
            return digest, size
        r = requests.post(f"{self.url}/v2/{repo}/blobs/uploads/", timeout=30)
        r.raise_for_status()
        loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = self.url + loc
        with open(path, "rb") as f:
            r = requests.put(loc, params={"digest": digest}, data=f, timeout=300,
                             headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        if r.status_code != 201:
            raise RuntimeError(f"blob upload failed: {r.status_code} {r.text}")
        return digest, size

    def push_manifest(self, repo: str, tag: str, data: bytes) -> str:
        r = requests.put(f"{self.url}/v2/{repo}/manifests/{tag}", data=data, headers={"Content-Type": MEDIA_MANIFEST}, timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"manifest upload failed: {r.status_code} {r.text}")
        return r.headers["Docker-Content-Digest"]

    def delete_manifest(self, repo: str, tag: str) -> None:
        r = requests.head(f"{self.url}/v2/{repo}/manifests/{tag}", headers={"Accept": MEDIA_MANIFEST}, timeout=30)
        r.raise_for_status()
        requests.delete(f"{self.url}/v2/{repo}/manifests/{r.headers['Docker-Content-Digest']}", timeout=30).raise_for_status()

    # ---- faults on the storage test double ---------------------------------------------------

    def set_faults(self, **faults) -> dict:
        r = requests.post(f"{self.storage_url}/_test/faults", json=faults, timeout=10)
        r.raise_for_status()
        return r.json()["faults"]

    def reset_faults(self) -> None:
        requests.post(f"{self.storage_url}/_test/reset", json={}, timeout=10).raise_for_status()

    def storage_requests(self) -> list:
        return requests.get(f"{self.storage_url}/_test/requests", timeout=10).json()["requests"]


# --------------------------------------------------------------------------------------------
# Test models
# --------------------------------------------------------------------------------------------

def write_gguf(path: str, metadata: dict, data_bytes: int, seed: str) -> None:
    """A valid GGUF v3 file: ``metadata`` key/values, one F32 tensor of about ``data_bytes`` bytes."""
    width = 64
    rows = max(1, data_bytes // (4 * width))
    header = build_gguf(typed(metadata), tensors=[("token_embd.weight", (width, rows), 0, 0)])  # 0: F32
    header += b"\0" * (-len(header) % 32)
    block = random.Random(seed).randbytes(1 << 20)
    remaining = width * rows * 4
    with open(path, "wb") as f:
        f.write(header)
        while remaining:
            n = min(remaining, len(block))
            f.write(block[:n])
            remaining -= n


TEMPLATE_CHAT_TOOLS = """{{- if .System }}<|system|>
{{ .System }}</s>
{{ end }}{{- if .Tools }}<|tools|>
{{ range .Tools }}{{ . }}
{{ end }}</s>
{{ end }}{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}</s>
{{ end }}<|assistant|>
"""
TEMPLATE_NO_SYSTEM = """{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}
{{ .Content }}<end_of_turn>
{{ end }}<start_of_turn>model
"""
CHAT_TEMPLATE_JINJA = ("{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
                       "{% endfor %}<|assistant|>\n")


@dataclasses.dataclass
class ModelSpec:
    """An Ollama-format test model: ``repo`` is ``namespace/model``."""

    repo: str
    tag: str = "latest"
    arch: str = "llama"
    file_type: int = 15  # Q4_K_M
    context_length: int = 8192
    embedding_length: int = 64
    size: int = 256 * 1024  # bytes of tensor data in the GGUF model layer
    chat_template: str | None = CHAT_TEMPLATE_JINJA
    template: str | None = TEMPLATE_CHAT_TOOLS
    system: str | None = "You are a helpful test model."
    params: dict | None = dataclasses.field(default_factory=lambda: {"stop": ["</s>", "<|user|>"], "num_ctx": 4096, "temperature": 0.7})
    license: str | None = "Test licence: for venom.models tests only."
    embedding: bool = False
    parameter_size: str = "1M"
    quantization: str = "Q4_K_M"
    extra_kv: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PublishedModel:
    spec: ModelSpec
    name: str  # as users write it: <registry host>/<namespace>/<model>:<tag>
    manifest: bytes
    manifest_digest: str  # sha256 hex of the manifest bytes, as /api/tags reports it
    layers: list  # [{mediaType, digest, size}] including the config blob last
    size: int  # all layers plus config

    @property
    def model_layer(self) -> dict:
        return next(layer for layer in self.layers if layer["mediaType"] == MEDIA["model"])


def publish_model(registry: OciRegistry, spec: ModelSpec, workdir: str) -> PublishedModel:
    """Build the model's blobs in ``workdir`` and push them and the manifest to ``registry``."""
    os.makedirs(workdir, exist_ok=True)
    stem = os.path.join(workdir, spec.repo.replace("/", "_") + "_" + spec.tag)
    meta = {"general.architecture": spec.arch, "general.name": spec.repo.split("/")[-1], "general.file_type": spec.file_type,
            f"{spec.arch}.context_length": spec.context_length, f"{spec.arch}.embedding_length": spec.embedding_length,
            f"{spec.arch}.block_count": 2, "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.tokens": ["<s>", "</s>", "<unk>", "a", "b", "c", "d"]}
    if spec.embedding:
        meta[f"{spec.arch}.pooling_type"] = 1
    if spec.chat_template is not None:
        meta["tokenizer.chat_template"] = spec.chat_template
    meta.update(spec.extra_kv)
    files = [(MEDIA["model"], stem + ".gguf")]
    write_gguf(files[0][1], meta, spec.size, seed=f"{spec.repo}:{spec.tag}")
    for kind, value in (("template", spec.template), ("system", spec.system), ("license", spec.license),
                        ("params", json.dumps(spec.params) if spec.params is not None else None)):
        if value is not None:
            p = f"{stem}.{kind}"
            with open(p, "w", encoding="utf-8") as f:
                f.write(value)
            files.append((MEDIA[kind], p))
    layers = []
    for media, path in files:
        digest, size = registry.push_blob(spec.repo, path)
        layers.append({"mediaType": media, "digest": digest, "size": size})
    config = {"model_format": "gguf", "model_family": spec.arch, "model_families": [spec.arch],
              "model_type": spec.parameter_size, "file_type": spec.quantization, "architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}}
    cpath = stem + ".config.json"
    with open(cpath, "w", encoding="utf-8") as f:
        json.dump(config, f)
    cdigest, csize = registry.push_blob(spec.repo, cpath)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                           "config": {"mediaType": MEDIA_CONFIG, "digest": cdigest, "size": csize},
                           "layers": layers}, indent=2).encode()
    got = registry.push_manifest(spec.repo, spec.tag, manifest)
    digest = hashlib.sha256(manifest).hexdigest()
    assert got == "sha256:" + digest, (got, digest)
    all_layers = layers + [{"mediaType": MEDIA_CONFIG, "digest": cdigest, "size": csize}]
    return PublishedModel(spec=spec, name=f"{registry.host}/{spec.repo}:{spec.tag}", manifest=manifest,
                          manifest_digest=digest, layers=all_layers, size=sum(layer["size"] for layer in all_layers))


def standard_specs() -> dict:
    """The models most tests use, by short key."""
    big_mb = int(os.environ.get("VENOM_TEST_OLLAMA_BIG_MB", "64"))
    return {
        # chat model whose template has a system role and tools
        "chat": ModelSpec("library/tiny-chat"),
        # same weights family, another tag sharing the licence and params blobs
        "chat_v2": ModelSpec("library/tiny-chat", tag="v2", size=200 * 1024, system=None),
        # Gemma-style: no system role in the template, no tools
        "nosys": ModelSpec("venom/tiny-nosys", arch="gemma", context_length=2048, file_type=7, quantization="Q8_0",
                           template=TEMPLATE_NO_SYSTEM, system=None, chat_template=None,
                           params={"stop": ["<end_of_turn>"]}),
        # an embedding model (pooling_type in the GGUF)
        "embed": ModelSpec("library/tiny-embed", arch="bert", context_length=512, file_type=1, quantization="F16",
                           embedding=True, template=None, system=None, chat_template=None, params=None),
        # large enough to watch a pull in progress and to interrupt it
        "big": ModelSpec("library/tiny-big", size=big_mb * 1024 * 1024, system=None),
    }


# --------------------------------------------------------------------------------------------
# The Ollama server test double
# --------------------------------------------------------------------------------------------

class OllamaTestDouble:
    """``ollama_test_double.py serve`` on a free port with its own OLLAMA_MODELS."""

    def __init__(self, models_dir: str, env: dict | None = None, log_path: str | None = None):
        self.models_dir = models_dir
        self.extra_env = dict(env or {})
        self.log_path = log_path or os.path.join(os.path.dirname(models_dir.rstrip("/")) or ".", "ollama-test-double.log")
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OllamaTestDouble":
        if not self.port:
            self.port = free_port(OLLAMA_PORTS, env="VENOM_TEST_OLLAMA_PORTS", shuffle=True)
        env = dict(os.environ)
        env.update({"OLLAMA_HOST": f"127.0.0.1:{self.port}", "OLLAMA_MODELS": self.models_dir})
        env.update(self.extra_env)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, OLLAMA_DOUBLE, "serve"], env=env, stdout=out, stderr=out)
        wait_http(self.url + "/", 20, self.proc.poll, self.log_path)
        return self

    def stop(self) -> int | None:
        stop_process(self.proc)
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> "OllamaTestDouble":
        self.stop()
        return self.start()

    def log_text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


# --------------------------------------------------------------------------------------------
# pytest fixtures (shared through the tiers' conftest.py)
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def oci_registry():
    workdir = tempfile.mkdtemp(prefix="venom-oci-registry-")
    reg = OciRegistry(workdir)
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def ollama_models(oci_registry):  # pylint: disable=redefined-outer-name
    """The standard test models, published once per session: {key: PublishedModel}."""
    workdir = tempfile.mkdtemp(prefix="venom-ollama-models-")
    try:
        yield {k: publish_model(oci_registry, spec, workdir) for k, spec in standard_specs().items()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def ollama_double(tmp_path, oci_registry):  # pylint: disable=redefined-outer-name
    """A fresh Ollama test double with an empty store under tmp_path; faults reset."""
    oci_registry.reset_faults()
    srv = OllamaTestDouble(str(tmp_path / "ollama-models"), log_path=str(tmp_path / "ollama-test-double.log"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        oci_registry.reset_faults()
