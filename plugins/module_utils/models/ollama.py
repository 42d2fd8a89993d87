# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama provider of ``venom_model``: models in an Ollama server's store, through its HTTP API.

Everything goes through the server's API (never the ``ollama`` command): ``/api/tags`` tells what
is installed and its manifest digest, ``POST /api/pull`` (NDJSON stream) installs, ``/api/show``
gives the capabilities, ``DELETE /api/delete`` removes, ``HEAD /api/blobs/<digest>`` tells which
layers the store already has. Two things Ollama does not do are done here:

* quota: Ollama never checks free space before a pull (ollama/ollama#6727). ``resolve`` reads
  the model's manifest from the registry (OCI distribution API) to know every layer's size and
  counts only the layers the store does not have yet;
* verification: ``verify`` re-hashes the model's blobs in the store (``models_path``) against
  their ``sha256-<hex>`` names; ``repair`` removes the bad ones and pulls again (Ollama takes any
  existing blob file as complete, so a corrupted one must go first).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re

from ansible_collections.venom.models.plugins.module_utils.capabilities.detect import detect_from_ollama_show
from ansible_collections.venom.models.plugins.module_utils import httpclient
from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ProviderError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.store.manifest import new_entry
from ansible_collections.venom.models.plugins.module_utils.models.ollama_api import (
    DEFAULT_ENDPOINT, DEFAULT_PULL_READ_TIMEOUT, OllamaClient, require_requests)
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec, Problem, Provider, Target
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    parse_ollama_name, validate_model_name, validate_size)

DEFAULT_MODELS_PATH = "/usr/share/ollama/.ollama/models"  # the store of the Linux service (docs/linux.md)
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_HASH_CHUNK = 4 * 1024 * 1024


def blob_file_name(digest: str) -> str:
    m = _DIGEST.match(digest or "")
    if not m:
        raise ProviderError(f"The layer digest {digest!r} is not a sha256 digest.",
                            fix="The registry manifest is malformed; check the registry.")
    return f"sha256-{m.group(1)}"


def registry_manifest(name: str, registry: str | None = None, insecure: bool = False, timeout: float = 30.0,
                      tls: Tls | None = None) -> tuple:
    """The model's manifest from its registry (OCI distribution API): (bytes, document, sha256 hex).

    ``registry`` (``scheme://host[:port]``) replaces the host of the name, e.g. a mirror; by
    default the host of the name (``registry.ollama.ai`` unless the name has one), https unless
    ``insecure``. ``tls``: validate_certs and ca_path for an https registry.
    """
    require_requests("to read a model's manifest from its registry")
    tls = tls or Tls()
    parts = parse_ollama_name(name)
    base = registry.rstrip("/") if registry else f"{'http' if insecure else 'https'}://{parts['host']}"
    url = f"{base}/v2/{parts['namespace']}/{parts['model']}/manifests/{parts['tag']}"
    tls.quiet_requests()
    tls.contacting(url)
    try:
        with httpclient.retrying_session(trust_env=True) as session:
            resp = session.get(url, headers={"Accept": MEDIA_MANIFEST}, timeout=httpclient.timeouts(timeout),
                               verify=tls.requests_verify())
    except OSError as exc:  # requests.RequestException
        cert = tls.certificate_error(exc, base, f"Reading the registry manifest of {parts['display']}")
        if cert is not None:
            raise cert from None
        raise ProviderError(f"The registry manifest of {parts['display']} cannot be read from {url} ({type(exc).__name__}: {exc}); "
                            "without it the layer sizes, and so the quota check, are unknown.",
                            fix="Check that this host reaches the registry, set 'registry' to a reachable mirror, or "
                                "'insecure: true' for a plain-HTTP registry.") from None
    if resp.status_code == 404:
        raise NotFoundError(f"The registry {base} has no model {parts['display']} (404 for {url}). Nothing was installed.",
                            fix="Check the model name and tag (for the default registry, on ollama.com/library).")
    if resp.status_code != 200:
        raise ProviderError(f"The registry {base} answered {url} with HTTP {resp.status_code}: "
                            f"{httpclient.error_text(resp.content, resp.status_code)}.",
                            fix="Check the registry address ('registry' option) and that it serves this model without "
                                "authentication.")
    data = resp.content
    try:
        doc = json.loads(data)
        layers = list(doc.get("layers") or [])
        if (doc.get("config") or {}).get("digest"):
            layers.append(doc["config"])
        for layer in layers:
            blob_file_name(layer["digest"])
            validate_size(layer["size"], f"the size of the layer {layer['digest']}")
    except ValidationError as exc:
        raise ProviderError(f"The registry manifest of {parts['display']} at {url} is refused: {exc.msg}.",
                            fix=exc.fix) from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProviderError(f"The registry manifest of {parts['display']} at {url} is not an Ollama model manifest.",
                            fix="Check the registry and the model name.") from None
    return data, doc, hashlib.sha256(data).hexdigest()


def manifest_layers(doc: dict) -> list:
    """Layers and config of a manifest document, as Ollama pulls them."""
    layers = list(doc.get("layers") or [])
    if (doc.get("config") or {}).get("digest"):
        layers.append(doc["config"])
    return layers


def layer_files(doc: dict) -> list:
    """FileSpecs (paths relative to the Ollama store) of a manifest's blobs, each digest once."""
    out, seen = [], set()
    for layer in manifest_layers(doc):
        name = blob_file_name(layer["digest"])
        if name in seen:
            continue
        seen.add(name)
        out.append(FileSpec(path=f"blobs/{name}", size=int(layer["size"]), sha256=name[len("sha256-"):]))
    return out


def hash_file(path: str, progress=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_HASH_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            if progress is not None:
                progress.add(len(chunk), transferred=False)
    return h.hexdigest()


def partial_bytes(models_path: str, digest_hex: str) -> int:
    """Bytes an interrupted Ollama download of this blob already has (its ``-partial-N`` records)."""
    total = 0
    base = os.path.join(models_path, "blobs", f"sha256-{digest_hex}-partial-")
    for p in glob.glob(glob.escape(base) + "*"):
        try:
            with open(p, encoding="utf-8") as fh:
                total += int(json.load(fh).get("Completed") or 0)
        except (OSError, ValueError, AttributeError):
            continue
    return total


class OllamaProvider(Provider):
    """``provider: ollama`` for venom_model: one model in one Ollama server's store."""

    name = "ollama"

    def __init__(self, request, paths, *, registry: str | None = None, insecure: bool | None = None,
                 models_path: str | None = None, client: OllamaClient | None = None):
        super().__init__(request, paths)
        self.display = validate_model_name(request.name, "ollama")
        self.parts = parse_ollama_name(self.display)
        self.endpoint = getattr(request, "endpoint", None) or DEFAULT_ENDPOINT
        self.registry = registry if registry is not None else getattr(request, "registry", None)
        self.insecure = bool(insecure if insecure is not None else getattr(request, "insecure", False))
        self.models_path = models_path or getattr(request, "models_path", None) or DEFAULT_MODELS_PATH
        read_timeout = getattr(request, "timeout", None) or DEFAULT_PULL_READ_TIMEOUT
        if client is None:
            require_requests()
        self.client = client or OllamaClient(self.endpoint, pull_read_timeout=read_timeout, tls=self.tls)
        self._files: list | None = None  # the layer files of the last resolved version
        self._present: set = set()  # their digests (hex) the store already had then
        self._staged: dict = {}  # digest (hex) -> bytes an interrupted download already has

    # -- naming -----------------------------------------------------------------------------------
    def canonical_name(self) -> str:
        return self.display

    def registry_host(self) -> str:
        return self.registry or self.parts["host"]

    def _store_path(self, rel: str) -> str:
        return os.path.join(self.models_path, rel)

    def _store_readable(self) -> bool:
        return os.path.isdir(os.path.join(self.models_path, "blobs"))

    def _manifest_file(self, parts: dict) -> str:
        return os.path.join(self.models_path, "manifests", parts["host"], parts["namespace"], parts["model"], parts["tag"])

    def _local_manifest(self) -> dict | None:
        """The model's manifest in the Ollama store, if readable here."""
        p = self._manifest_file(self.parts)
        candidates = [p]
        if not os.path.exists(p):  # Ollama keeps the spelling a model was first pulled with
            found = self.client.find(self.display)
            if found:
                candidates.append(self._manifest_file(parse_ollama_name(found.get("model") or found.get("name"))))
        for c in candidates:
            try:
                with open(c, "rb") as fh:
                    return json.loads(fh.read())
            except (OSError, ValueError):
                continue
        return None

    # -- offline and cheap ------------------------------------------------------------------------
    def satisfies(self, entry: dict) -> bool:
        found = self.client.find(self.display)
        return bool(found) and found.get("digest") == entry.get("revision")

    def quick_check(self, entry: dict) -> list:
        found = self.client.find(self.display)
        if not found:
            return [Problem(path=self.display, kind="missing")]
        problems = []
        if entry.get("revision") and found.get("digest") != entry["revision"]:
            problems.append(Problem(path="manifest", kind="digest", expected=entry["revision"], actual=found.get("digest")))
        if self._store_readable():
            for rec in entry.get("files") or []:
                try:
                    size = os.path.getsize(self._store_path(rec["path"]))
                except OSError:
                    problems.append(Problem(path=rec["path"], kind="missing"))
                    continue
                if size != rec["size"]:
                    problems.append(Problem(path=rec["path"], kind="size", expected=rec["size"], actual=size))
        return problems

    # -- network, read-only -----------------------------------------------------------------------
    def resolve(self, entry: dict | None, latest: bool = False) -> Target:
        found = None if latest else self.client.find(self.display)
        local = self._local_manifest() if found else None
        if found and local is not None:
            files = layer_files(local)
            self._files = files
            self._present = {f.sha256 for f in files}
            return Target(revision=found["digest"], requested_revision=self.parts["tag"], files=files, local_path=None,
                          fetch_bytes=0, staged_bytes=0, disk_path=self.models_path, pending=[],
                          extra={"already_present": True, "ollama": self.entry_extra()})
        _data, doc, digest = registry_manifest(self.display, self.registry, self.insecure, tls=self.tls)
        files = layer_files(doc)
        self._files = files
        fetch = staged = 0
        self._present, self._staged = set(), {}
        pending = []
        for f in files:
            if self.client.blob_exists("sha256:" + f.sha256):
                self._present.add(f.sha256)
                continue
            pending.append(f.path)
            done = partial_bytes(self.models_path, f.sha256) if self._store_readable() else 0
            self._staged[f.sha256] = done
            staged += min(done, f.size)
            fetch += f.size - min(done, f.size)
        return Target(revision=digest, requested_revision=self.parts["tag"], files=files, local_path=None,
                      fetch_bytes=fetch, staged_bytes=staged, disk_path=self.models_path, pending=pending,
                      extra={"already_present": bool(found and found.get("digest") == digest), "ollama": self.entry_extra()})

    # -- changes ----------------------------------------------------------------------------------
    def _pull(self, progress) -> None:
        """Pull through the server; every NDJSON line moves ``progress`` (absolute bytes of all layers)."""
        layers: dict = {}  # digest -> [total, completed, completed when first seen]
        for f in self._files or []:
            have = f.size if f.sha256 in self._present else min(f.size, self._staged.get(f.sha256, 0))
            layers["sha256:" + f.sha256] = [f.size, have, have]

        def on_line(line: dict) -> None:
            if progress is None:
                return
            digest = line.get("digest")
            if digest and line.get("total"):
                total, completed = int(line["total"]), int(line.get("completed") or 0)
                rec = layers.setdefault(digest, [total, 0, 0])
                rec[0], rec[1] = total, max(rec[1], completed)
                progress.set_total(sum(r[0] for r in layers.values()), sum(r[1] for r in layers.values()),
                                   f"Ollama: {line.get('status', '')}")
                progress.transferred = sum(max(0, r[1] - r[2]) for r in layers.values())
            elif line.get("status"):
                progress.note(f"Ollama: {line['status']}")

        self.client.pull(self.display, insecure=self.insecure, on_line=on_line, registry_host=self.registry_host())

    def _installed_fields(self) -> dict:
        found = self.client.find(self.display)
        if not found:
            raise ProviderError(f"Ollama reported success for {self.display} but /api/tags does not list it.",
                                fix="See the Ollama server log (journalctl -u ollama) and run the task again.")
        local = self._local_manifest()
        files = layer_files(local) if local is not None else (self._files or [])
        show = self.client.show(self.display)
        return {
            "revision": found["digest"],
            "requested_revision": self.parts["tag"],
            "local_path": None,
            "files": [f.record() for f in files],
            "size_bytes": validate_size(found.get("size") or sum(f.size for f in files), f"the size of {self.display}"),
            "capabilities_detected": detect_from_ollama_show(show),
            "ollama": self.entry_extra(),
        }

    def install(self, target: Target, progress, entry: dict | None = None) -> dict:
        if self._files is None:
            self._files = list(target.files)
        if progress is not None and target.size_bytes:
            progress.set_total(target.size_bytes, target.size_bytes - target.fetch_bytes - target.staged_bytes,
                               f"pulling {self.display} through Ollama")
        found = self.client.find(self.display)
        if not (target.extra.get("already_present") and found and found.get("digest") == target.revision):
            self._pull(progress)
        return self._installed_fields()

    def verify(self, entry: dict, progress) -> list:
        if not self._store_readable():
            raise ProviderError(f"The Ollama store {self.models_path} cannot be read here, so its blobs cannot be verified.",
                                fix="Set 'models_path' to the store of the Ollama server (OLLAMA_MODELS; the Linux "
                                    "service uses /usr/share/ollama/.ollama/models) and run with become: true.")
        problems = []
        if not self.client.find(self.display):
            problems.append(Problem(path=self.display, kind="missing"))
        files = entry.get("files") or []
        if progress is not None:
            progress.set_total(sum(int(f["size"]) for f in files), 0, f"verifying {self.display} in the Ollama store")
        for rec in files:
            path = self._store_path(rec["path"])
            try:
                size = os.path.getsize(path)
            except OSError:
                problems.append(Problem(path=rec["path"], kind="missing"))
                continue
            if size != rec["size"]:
                problems.append(Problem(path=rec["path"], kind="size", expected=rec["size"], actual=size))
                continue
            want = rec.get("sha256") or os.path.basename(rec["path"])[len("sha256-"):]
            got = hash_file(path, progress)
            if got != want:
                problems.append(Problem(path=rec["path"], kind="digest", expected=want, actual=got))
        return problems

    def repair(self, entry: dict, problems: list, progress) -> dict:
        for p in problems:
            if p.kind in ("digest", "size") and p.path.startswith("blobs/sha256-"):
                try:
                    os.remove(self._store_path(p.path))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise ProviderError(f"The damaged blob {self._store_path(p.path)} cannot be removed ({exc.strerror}); "
                                        "Ollama would take it as complete.",
                                        fix="Run with become: true (the store belongs to the ollama user).") from None
        if progress is not None:
            progress.note(f"pulling {self.display} again to repair it")
        self._pull(progress)
        return self._installed_fields()

    def remove(self, entry: dict) -> list:
        """``DELETE /api/delete`` (a model already gone is no error); the blob paths that went."""
        files = [rec["path"] for rec in (entry or {}).get("files") or []]
        if self._files is None:
            self._files = [FileSpec.from_record(rec) for rec in (entry or {}).get("files") or []]
        before = {p for p in files if os.path.exists(self._store_path(p))}
        self.client.delete(self.display)
        return sorted(self._store_path(p) for p in before if not os.path.exists(self._store_path(p)))

    def unmanaged_entry(self) -> dict | None:
        found = self.client.find(self.display)
        if not found:
            return None
        local = self._local_manifest()
        files = [f.record() for f in layer_files(local)] if local is not None else []
        return new_entry(self.display, "ollama", revision=found.get("digest"), files=files,
                         size_bytes=int(found.get("size") or 0))

    def _known_digests(self) -> list:
        if self._files is not None:
            return [f.sha256 for f in self._files]
        return []

    def staging_bytes(self) -> int:
        if not self._store_readable():
            return 0
        return sum(partial_bytes(self.models_path, d) for d in self._known_digests())

    def discard_staging(self) -> bool:
        removed = False
        for d in self._known_digests():
            base = os.path.join(self.models_path, "blobs", f"sha256-{d}-partial")
            for p in glob.glob(glob.escape(base)) + glob.glob(glob.escape(base) + "-*"):
                try:
                    os.remove(p)
                    removed = True
                except OSError:
                    continue
        return removed

    def detect_capabilities(self, local_path: str | None, target: Target | None = None) -> dict:
        return detect_from_ollama_show(self.client.show(self.display))

    def predict_capabilities(self, target: Target) -> dict | None:
        """Only a model the server already has can be asked (``/api/show``); before a pull, unknown."""
        return self.detect_capabilities(None, target) if target.extra.get("already_present") else None

    def entry_extra(self) -> dict:
        return {"endpoint": self.endpoint, "models_path": self.models_path, "registry": self.registry_host(),
                "insecure": self.insecure}
