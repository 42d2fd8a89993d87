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
from ansible_collections.venom.models.plugins.module_utils.errors import (
    IntegrityError, MissingDependencyError, NotFoundError, ProviderError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.store.manifest import new_entry
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec, Problem, Provider, Target
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    parse_ollama_name, validate_model_name, validate_size)

try:
    import requests
    REQUESTS_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    requests = None
    REQUESTS_IMPORT_ERROR = _exc

DEFAULT_ENDPOINT = "http://127.0.0.1:11434"
DEFAULT_MODELS_PATH = "/usr/share/ollama/.ollama/models"  # the store of the Linux service (docs/linux.md)
DEFAULT_PULL_READ_TIMEOUT = 900.0  # seconds without a line from the server (verifying a huge blob is silent)
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_HASH_CHUNK = 4 * 1024 * 1024

SERVER_FIX = ("Start the Ollama server (the venom.models.ollama role, or venom.models.venom_runtime name=ollama) "
              "or set 'endpoint' to the address it listens on.")


def _require_requests() -> None:
    if requests is None:
        raise MissingDependencyError("requests", "to talk to the Ollama server", REQUESTS_IMPORT_ERROR)


def _error_text(resp) -> str:
    try:
        doc = resp.json()
        if isinstance(doc, dict) and doc.get("error"):
            return str(doc["error"])
    except ValueError:
        pass
    return (resp.text or "").strip()[:500] or f"HTTP {resp.status_code}"


def blob_file_name(digest: str) -> str:
    m = _DIGEST.match(digest or "")
    if not m:
        raise ProviderError(f"The layer digest {digest!r} is not a sha256 digest.",
                            fix="The registry manifest is malformed; check the registry.")
    return f"sha256-{m.group(1)}"


def pull_error(name: str, error: str, registry_host: str) -> Exception:
    """The VenomError for an ``{"error": ...}`` line of a pull, with the way out."""
    text = f"Ollama could not pull {name}: {error}."
    if "file does not exist" in error:
        return NotFoundError(f"Ollama found no model {name} in the registry {registry_host} ({error}). Nothing was installed.",
                             fix="Check the model name and tag (for the default registry, on ollama.com/library).")
    if "insecure protocol" in error or "HTTP response to HTTPS client" in error:
        return ProviderError(text, fix="The registry speaks plain HTTP: set 'insecure: true' (only for a registry you trust).")
    if "digest mismatch" in error:
        return IntegrityError(text, fix="Ollama removed the damaged layer; run the task again to download it again.")
    if "no space left" in error.lower():
        return ProviderError(text, fix="Free space in the Ollama store (models_path) or remove models with state=absent.")
    if "max retries exceeded" in error or "connection refused" in error or "no such host" in error or "timeout" in error:
        return ProviderError(text, fix="Check that the Ollama host reaches the registry (network, proxy, DNS); run the "
                                       "task again to resume: Ollama keeps what it downloaded.")
    return ProviderError(text, fix="See the Ollama server log (journalctl -u ollama) for the cause.")


class OllamaClient:
    """A small client of the Ollama HTTP API (``requests``)."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 30.0,
                 pull_read_timeout: float = DEFAULT_PULL_READ_TIMEOUT, tls: Tls | None = None):
        _require_requests()
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        if not re.match(r"^https?://", self.endpoint):
            raise ValidationError(f"The Ollama endpoint {endpoint!r} is not an http(s) URL.",
                                  fix="Give it as http://HOST:PORT, e.g. http://127.0.0.1:11434.")
        self.timeout = timeout
        self.pull_read_timeout = pull_read_timeout
        self.session = requests.Session()
        self.session.trust_env = False  # the server is local: never through an HTTP proxy from the environment
        self.tls = tls or Tls()
        self.tls.quiet_requests()
        self.tls.contacting(self.endpoint)

    def _unreachable(self, exc: Exception) -> Exception:
        cert = self.tls.certificate_error(exc, self.endpoint, f"The Ollama server at {self.endpoint}")
        if cert is not None:
            return cert
        return ProviderError(f"The Ollama server at {self.endpoint} cannot be reached ({type(exc).__name__}: {exc}).",
                             fix=SERVER_FIX)

    def _call(self, method: str, path: str, **kw):
        kw.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, self.endpoint + path, verify=self.tls.requests_verify(), **kw)
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None

    def _json(self, method: str, path: str, **kw):
        resp = self._call(method, path, **kw)
        if resp.status_code != 200:
            raise ProviderError(f"The Ollama server at {self.endpoint} answered {method} {path} with HTTP {resp.status_code}: "
                                f"{_error_text(resp)}.", fix="See the Ollama server log (journalctl -u ollama).")
        try:
            return resp.json()
        except ValueError:
            raise ProviderError(f"The server at {self.endpoint} did not answer {path} with JSON; is it an Ollama server?",
                                fix=SERVER_FIX) from None

    def version(self) -> str:
        return str(self._json("GET", "/api/version").get("version", ""))

    def tags(self) -> list:
        models = self._json("GET", "/api/tags").get("models")
        return models if isinstance(models, list) else []

    def find(self, name: str) -> dict | None:
        """The /api/tags entry of ``name`` (normalised, matched case-insensitively as Ollama does)."""
        want = parse_ollama_name(name)["display"].lower()
        for m in self.tags():
            for key in ("model", "name"):
                try:
                    if parse_ollama_name(str(m.get(key, "")))["display"].lower() == want:
                        return m
                except ValidationError:
                    continue
        return None

    def show(self, name: str) -> dict:
        resp = self._call("POST", "/api/show", json={"model": name})
        if resp.status_code == 404:
            raise NotFoundError(f"The Ollama server has no model {name}: {_error_text(resp)}.",
                                fix="Install it with venom_model state=present provider=ollama.")
        if resp.status_code != 200:
            raise ProviderError(f"Ollama could not show {name}: HTTP {resp.status_code}: {_error_text(resp)}.",
                                fix="See the Ollama server log (journalctl -u ollama).")
        return resp.json()

    def blob_exists(self, digest: str) -> bool:
        resp = self._call("HEAD", f"/api/blobs/{digest}")
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise ProviderError(f"The Ollama server answered HEAD /api/blobs/{digest} with HTTP {resp.status_code}.",
                            fix="See the Ollama server log (journalctl -u ollama).")

    def delete(self, name: str) -> bool:
        """Delete ``name``; False when the server does not have it (404)."""
        resp = self._call("DELETE", "/api/delete", json={"model": name})
        if resp.status_code == 404:
            return False
        if resp.status_code != 200:
            raise ProviderError(f"Ollama could not delete {name}: HTTP {resp.status_code}: {_error_text(resp)}.",
                                fix="See the Ollama server log (journalctl -u ollama).")
        return True

    def ps(self) -> list:
        models = self._json("GET", "/api/ps").get("models")
        return models if isinstance(models, list) else []

    def pull(self, name: str, insecure: bool = False, on_line=None, registry_host: str = "") -> dict:
        """``POST /api/pull`` streaming; ``on_line(dict)`` for every progress line; the last line.

        An ``{"error": ...}`` line, an HTTP error, or a stream that ends without ``success``
        (the connection dropped, the server stopped) raises a VenomError.
        """
        body = {"model": name, "insecure": bool(insecure), "stream": True}
        try:
            resp = self.session.post(self.endpoint + "/api/pull", json=body, stream=True,
                                     timeout=(self.timeout, self.pull_read_timeout), verify=self.tls.requests_verify())
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        last: dict = {}
        with resp:
            if resp.status_code != 200:
                raise pull_error(name, _error_text(resp), registry_host)
            try:
                for raw in resp.iter_lines():
                    if not raw:
                        continue
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        raise ProviderError(f"Ollama sent a line that is not JSON while pulling {name}: {raw[:200]!r}.",
                                            fix="Check that the endpoint is an Ollama server.") from None
                    if not isinstance(line, dict):
                        continue
                    if line.get("error"):
                        raise pull_error(name, str(line["error"]), registry_host)
                    last = line
                    if on_line is not None:
                        on_line(line)
            except requests.RequestException as exc:
                raise ProviderError(
                    f"The connection to the Ollama server dropped while pulling {name} "
                    f"(last status: {last.get('status', 'none')!r}; {type(exc).__name__}).",
                    fix="Run the task again: Ollama keeps the partial download and resumes it.") from None
        if last.get("status") != "success":
            raise ProviderError(
                f"The Ollama server ended the pull of {name} before it finished (last status: {last.get('status', 'none')!r}).",
                fix="Run the task again: Ollama keeps the partial download and resumes it. If it keeps happening, "
                    "see the Ollama server log (journalctl -u ollama).")
        return last


def registry_manifest(name: str, registry: str | None = None, insecure: bool = False, timeout: float = 30.0,
                      tls: Tls | None = None) -> tuple:
    """The model's manifest from its registry (OCI distribution API): (bytes, document, sha256 hex).

    ``registry`` (``scheme://host[:port]``) replaces the host of the name, e.g. a mirror; by
    default the host of the name (``registry.ollama.ai`` unless the name has one), https unless
    ``insecure``. ``tls``: validate_certs and ca_path for an https registry.
    """
    _require_requests()
    tls = tls or Tls()
    parts = parse_ollama_name(name)
    base = registry.rstrip("/") if registry else f"{'http' if insecure else 'https'}://{parts['host']}"
    url = f"{base}/v2/{parts['namespace']}/{parts['model']}/manifests/{parts['tag']}"
    tls.quiet_requests()
    tls.contacting(url)
    try:
        resp = requests.get(url, headers={"Accept": MEDIA_MANIFEST}, timeout=timeout, verify=tls.requests_verify())
    except requests.RequestException as exc:
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
        raise ProviderError(f"The registry {base} answered {url} with HTTP {resp.status_code}: {resp.text[:300]}.",
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

    def _local_manifest(self) -> dict | None:
        """The model's manifest in the Ollama store, if readable here."""
        p = os.path.join(self.models_path, "manifests", self.parts["host"], self.parts["namespace"], self.parts["model"],
                         self.parts["tag"])
        candidates = [p]
        if not os.path.exists(p):  # Ollama keeps the spelling a model was first pulled with
            found = self.client.find(self.display)
            if found:
                other = parse_ollama_name(found.get("model") or found.get("name"))
                candidates.append(os.path.join(self.models_path, "manifests", other["host"], other["namespace"],
                                               other["model"], other["tag"]))
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
