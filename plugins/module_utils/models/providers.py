# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The provider interface of ``venom_model``: what a provider (huggingface, ollama, local) implements.

The provider-neutral operation layer (``_model_ops.py``) owns everything that is the same for
every provider: the model lock, the journal operation, the quota and free-disk pre-flight, the
manifest transaction, check mode, the diff and the result. A provider only knows its source:

* how to tell, offline and cheaply, whether an installed entry already is what was asked
  (``satisfies``) and whether its files are still there (``quick_check``: stat only, no hashing);
* how to resolve a request to one immutable version with its exact file list (``resolve``: may
  use the network, changes nothing);
* how to fetch a resolved version into place, verified, resumably (``install``);
* how to re-check every file against the recorded digests offline (``verify``) and fetch only the
  broken ones again (``repair``);
* how to remove what it installed (``remove``) and its half-finished downloads (``discard_staging``).

The operation layer calls, per state (``entry`` is the manifest entry or None)::

    present   satisfies(entry) and not quick_check(entry) -> nothing to do (no network, no hashing)
              otherwise resolve(entry) -> Target; quota pre-flight; install(target, progress)
    latest    resolve(entry, latest=True); same version and quick_check clean -> nothing to do
    verified  (installed) verify(entry, progress) -> problems; repair(entry, problems, progress)
    absent    remove(entry); discard_staging()

Providers raise ``VenomError`` subclasses only (never a raw library error), with the cause and
the fix; they never put a token in a message, a file or the journal.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib

from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.store.locks import DEFAULT_LOCK_TIMEOUT
from ansible_collections.venom.models.plugins.module_utils.store.paths import DEFAULT_MODELS_DIR, StatePaths
from ansible_collections.venom.models.plugins.module_utils.store.validation import validate_size
from ansible_collections.venom.models.plugins.module_utils.store.ownership import Permissions

STATES = ("present", "absent", "verified", "latest")
# The runtime a model is meant for when the task does not say: Hugging Face and local models are
# served by vLLM, Ollama models by Ollama (the original system's rule).
DEFAULT_RUNTIMES = {"huggingface": "vllm", "local": "vllm", "ollama": "ollama"}


@dataclasses.dataclass
class ModelRequest:
    """What the user asked for (the module's options), validated by the operation layer."""

    name: str
    provider: str = "huggingface"
    state: str = "present"
    revision: str | None = None
    models_dir: str = DEFAULT_MODELS_DIR
    quota_gb: float | None = None  # None: as recorded with the manifest, else DEFAULT_QUOTA_GB
    reserve_gb: float | None = None  # None: as recorded with the manifest, else DEFAULT_RESERVE_GB
    token: str | None = dataclasses.field(default=None, repr=False)
    endpoint: str | None = None
    allow_patterns: list | None = None
    ignore_patterns: list | None = None
    source: str | None = None
    adopt_mode: str = "auto"
    runtime: str | None = None
    display_name: str | None = None
    capabilities: dict | None = None
    owner: str | None = None  # owner, group, mode, directory_mode of the installed files (store.ownership)
    group: str | None = None
    mode: str | int | None = None
    directory_mode: str | int | None = None
    force: bool = False
    timeout: float | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    registry: str | None = None  # ollama: the registry to read the model's manifest from (quota)
    insecure: bool = False  # ollama: the registry speaks plain HTTP
    models_path: str | None = None  # ollama: the server's store (OLLAMA_MODELS), for verification
    validate_certs: bool = True  # TLS to the remotes (Hub/mirror, Ollama server and registry): models/tls.py
    ca_path: str | None = None  # a PEM CA bundle on the host that replaces the default trust store


@dataclasses.dataclass
class FileSpec:
    """One file of a model version, with the digests it must have.

    ``sha256`` is the content digest (published for Hub LFS files, computed otherwise);
    ``git_oid`` the git blob id (Hub non-LFS files); ``digest`` a provider's own id (Ollama layer).
    """

    path: str
    size: int
    sha256: str | None = None
    git_oid: str | None = None
    lfs: bool = False

    def __post_init__(self):
        # sizes come from servers (Hub tree, Ollama registry) and files: bounded before any plan uses them
        validate_size(self.size, f"the size of {self.path!r}")

    def record(self) -> dict:
        out = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.git_oid:
            out["git_oid"] = self.git_oid
        if self.lfs:
            out["lfs"] = True
        return out

    @classmethod
    def from_record(cls, rec: dict) -> "FileSpec":
        return cls(path=rec["path"], size=rec["size"], sha256=rec.get("sha256"),
                   git_oid=rec.get("git_oid"), lfs=bool(rec.get("lfs", False)))


@dataclasses.dataclass
class Target:
    """One resolved, immutable version of a model: exactly what an install puts on disk."""

    revision: str  # immutable id: a Hub commit, an Ollama manifest digest, a local content digest
    requested_revision: str | None  # what the user asked for (branch, tag, commit), if anything
    files: list  # of FileSpec
    local_path: str | None  # where the version lives once installed (None: the provider's own store)
    fetch_bytes: int = 0  # bytes still to transfer (what a previous run staged is not counted)
    staged_bytes: int = 0  # bytes already in the staging area from an interrupted run
    disk_path: str | None = None  # a path on the filesystem the bytes go to (for the free-disk check)
    pending: list = dataclasses.field(default_factory=list)  # paths still to transfer (not staged yet)
    extra: dict = dataclasses.field(default_factory=dict)  # provider fields for the manifest entry

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclasses.dataclass
class Problem:
    """A file of an installed model that does not match its record."""

    path: str
    kind: str  # missing | size | digest | extra
    expected: str | int | None = None
    actual: str | int | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.path}: missing"
        return f"{self.path}: {self.kind} is {self.actual}, expected {self.expected}"


class Progress:
    """Progress sink handed to providers: ``progress(bytes_done, bytes_total, message)``.

    Thread-safe users call ``add(n)`` from download threads; the operation layer forwards the
    totals to the journal (rate-limited there).
    """

    def __init__(self, callback=None, total: int = 0):
        import threading  # pylint: disable=import-outside-toplevel
        self._lock = threading.Lock()
        self._callback = callback
        self.total = int(total)
        self.done = 0
        self.transferred = 0  # bytes actually received over the network in this run
        self.message = ""

    def set_total(self, total: int, done: int = 0, message: str | None = None) -> None:
        with self._lock:
            self.total, self.done = int(total), int(done)
            if message is not None:
                self.message = message
            self._emit(force=True)

    def add(self, n: int, transferred: bool = True) -> None:
        with self._lock:
            self.done += n
            if transferred:
                self.transferred += n
            self._emit()

    def note(self, message: str) -> None:
        with self._lock:
            self.message = message
            self._emit(force=True)

    def _emit(self, force: bool = False) -> None:
        # called with the lock held: the sink (a journal operation) is not thread-safe
        if self._callback is not None:
            self._callback(self.done, self.total, self.message, force)


def files_digest(files) -> str:
    """One sha256 over a model's file list (path, size, content digest), order independent.

    This is the manifest entry's ``sha256``: it changes when any file's content changes.
    """
    h = hashlib.sha256()
    records = [f.record() if isinstance(f, FileSpec) else f for f in files]
    for rec in sorted(records, key=lambda r: r["path"]):
        h.update(f"{rec['path']}\0{rec['size']}\0{rec.get('sha256') or ''}\0{rec.get('git_oid') or ''}\n".encode())
    return h.hexdigest()


class Provider(abc.ABC):
    """Base class of the providers. One instance serves one request (one model, one run)."""

    name = ""
    # what the installed files and directories must have (the operation layer sets it: the task's
    # owner/group/mode over the ones recorded in the manifest); applied before a version is moved into place
    permissions = Permissions()

    def __init__(self, request: ModelRequest, paths: StatePaths):
        self.request = request
        self.paths = paths
        self.tls = Tls.of(request)  # validates ca_path; collects the warnings of validate_certs: false

    # -- naming -----------------------------------------------------------------------------------
    def canonical_name(self) -> str:
        """The validated, canonical model name (the manifest key together with the provider)."""
        return self.request.name

    # -- offline and cheap: called on every run ---------------------------------------------------
    @abc.abstractmethod
    def satisfies(self, entry: dict) -> bool:
        """Whether ``entry`` (installed) already is what ``state: present`` asks for.

        Offline, no hashing: its cost must not grow with the model's size. Compare what the
        request pins (revision, file selection, source) with what the entry records.
        """

    @abc.abstractmethod
    def quick_check(self, entry: dict) -> list:
        """Problems visible without hashing (missing files, wrong sizes). ``[]`` when fine."""

    # -- network, read-only -----------------------------------------------------------------------
    @abc.abstractmethod
    def resolve(self, entry: dict | None, latest: bool = False) -> Target:
        """Resolve the request to one immutable version and its exact file list. Changes nothing.

        ``latest``: re-resolve a moving reference (branch) even if the entry pins a version.
        Fills ``fetch_bytes``/``staged_bytes`` from what an interrupted run left in the staging area.
        """

    # -- changes (called under the model lock, never in check mode) ------------------------------
    @abc.abstractmethod
    def install(self, target: Target, progress: Progress, entry: dict | None = None) -> dict:
        """Fetch ``target`` into place, every file verified; return the manifest entry fields.

        Resumable: an interrupted run leaves its verified files and partial downloads in the
        staging area and the next call continues from there. ``entry``, if given, is the
        installed entry being replaced or completed (its verified files may be reused).
        Returns at least ``revision, requested_revision, local_path, files`` (list of file records)
        and ``capabilities_detected``.
        """

    @abc.abstractmethod
    def verify(self, entry: dict, progress: Progress) -> list:
        """Re-check every file of ``entry`` against its recorded digest, offline. Returns problems."""

    @abc.abstractmethod
    def repair(self, entry: dict, problems: list, progress: Progress) -> dict:
        """Fetch again only the files in ``problems``; return the updated entry fields."""

    @abc.abstractmethod
    def remove(self, entry: dict) -> list:
        """Remove the files of ``entry``; return the paths removed."""

    def model_dir(self, path: str | None) -> str | None:
        """A ``local_path`` from the manifest, proven again at use to lie inside ``<models_dir>/<provider>/``."""
        if not path:
            return path
        from ansible_collections.venom.models.plugins.module_utils.store.manifest import model_path_inside  # pylint: disable=import-outside-toplevel
        return model_path_inside(self.paths.models_dir, self.name, path)

    def remove_version(self, local_path: str) -> None:
        """Remove one installed version's directory (an old revision after ``latest``)."""
        raise NotImplementedError

    @abc.abstractmethod
    def staging_bytes(self) -> int:
        """Bytes this model's interrupted downloads keep in the staging area (0 if none)."""

    def has_staging(self) -> bool:
        """Whether an interrupted download of this model left anything in the staging area."""
        return self.staging_bytes() > 0

    def unmanaged_entry(self) -> dict | None:
        """An installed copy of the model that the manifest does not record, as an entry (or None).

        ``state: absent`` removes it too (Ollama: the server has the model, pulled by other means).
        """
        return None

    @abc.abstractmethod
    def discard_staging(self) -> bool:
        """Remove this model's staging debris (partial downloads). True if anything was removed."""

    def detect_capabilities(self, local_path: str | None, target: Target | None = None) -> dict:
        """Capabilities detected from the installed files (before overrides)."""
        return {}

    def predict_capabilities(self, target: Target) -> dict | None:
        """Check mode: what ``detect_capabilities`` will find once ``target`` is installed, read from its
        small files only (never the weights); None when this provider cannot tell before installing."""
        return None

    def entry_extra(self) -> dict:
        """Provider fields recorded in the manifest entry beside the common ones."""
        return {}
