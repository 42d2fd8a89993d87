# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hugging Face provider: models from the Hub or a Hub mirror (such as olah), pinned to a commit.

* Resolve: ``model_info(repo, revision=...)`` gives the commit (a revision is always sent: some
  mirrors answer RepoNotFound without one); ``list_repo_tree(recursive=True)`` at that commit
  gives every file with its size, its git blob id and, for LFS files, its sha256.
* Download: each file with ``huggingface_hub``'s ``http_get`` from ``/<repo>/resolve/<commit>/<path>``
  into the staging area inside ``models_dir`` (``_files.StagingArea``), up to 8 files at a time.
  A partial file is resumed from its length with an HTTP ``Range`` request on the next run:
  ``hf_hub_download``/``snapshot_download`` in huggingface_hub >= 1.2x do not resume (they write
  to a process-unique temp file and start over), so they are not used.
* Verify while writing: sha256 for LFS files (the Hub publishes it), git blob sha1 for the others,
  and the size; a mismatch is downloaded once more, then fails with IntegrityError. The sha256 of
  every file is recorded so that ``state: verified`` can re-check offline.
* Place: ``<models_dir>/huggingface/<org>/<name>/<commit>/``, renamed into place in one step.

The token is passed to huggingface_hub explicitly, never written anywhere and masked from every
message (``redact``).
"""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
import threading
import time
import urllib.parse

from ansible_collections.venom.models.plugins.module_utils.capabilities.deferred import detect_hf_capabilities
from ansible_collections.venom.models.plugins.module_utils.capabilities.files import (
    MAX_CAPABILITY_FILE_BYTES, is_capability_file)
from ansible_collections.venom.models.plugins.module_utils.store.journal import redact as _redact_secrets
from ansible_collections.venom.models.plugins.module_utils.errors import (
    MissingDependencyError, NotFoundError, ProviderError, ValidationError, VenomError)
from ansible_collections.venom.models.plugins.module_utils.models.filetree import FileTreeProvider
from ansible_collections.venom.models.plugins.module_utils.models.staging import (
    Hasher, StagingArea, disk_full, integrity_error, is_disk_full, mismatch, prune_empty_parents, select_paths)
from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec, Target
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    is_commit, safe_join, validate_relative_file_path, validate_revision)

# huggingface_hub is imported on first use (load_hub): an installed model's idempotent run needs
# none of it, and importing it costs a few hundred milliseconds.
HfApi = hf_errors = hf_hub_url = http_get = build_hf_headers = disable_progress_bars = None
http_backoff = hf_raise_for_status = ModelInfo = None
HF_IMPORT_ERROR = None

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
MAX_WORKERS = 8
ATTEMPTS = 2
NETWORK_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")
# Every request to the Hub or mirror: at most HUB_CONNECT_TIMEOUT seconds to connect, and
# HUB_READ_TIMEOUT seconds of silence while reading an answer (huggingface_hub's own client has none:
# a mirror that accepts the connection and never answers held the task forever). File downloads keep
# huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT (http_get passes it per request) and its own resume retries.
HUB_CONNECT_TIMEOUT = 10.0
HUB_READ_TIMEOUT = 60.0
# The API calls go through huggingface_hub's http_backoff: a refused, dropped or timed-out connection
# (olah closes keep-alive connections after errors) and HTTP 408, 429 and 5xx are retried twice,
# after 0.5 s and 1 s (a Retry-After header is honoured). list_repo_tree does so with
# huggingface_hub's defaults (5 retries, 1 to 8 s).
HUB_RETRY = {"max_retries": 2, "base_wait_time": 0.5, "max_wait_time": 2.0}


def load_hub() -> None:
    """Import huggingface_hub (once); raise MissingDependencyError if it is not installed."""
    global HfApi, hf_errors, hf_hub_url, http_get, build_hf_headers, disable_progress_bars  # pylint: disable=global-statement
    global http_backoff, hf_raise_for_status, ModelInfo, HF_IMPORT_ERROR  # pylint: disable=global-statement
    if HfApi is None and HF_IMPORT_ERROR is None:
        try:
            from huggingface_hub import HfApi as _api, ModelInfo as _info  # pylint: disable=import-outside-toplevel
            from huggingface_hub import errors as _errors  # pylint: disable=import-outside-toplevel
            from huggingface_hub.file_download import hf_hub_url as _url, http_get as _get  # pylint: disable=import-outside-toplevel
            from huggingface_hub.utils import build_hf_headers as _headers  # pylint: disable=import-outside-toplevel
            from huggingface_hub.utils import disable_progress_bars as _quiet  # pylint: disable=import-outside-toplevel
            from huggingface_hub.utils import hf_raise_for_status as _raise, http_backoff as _backoff  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            HF_IMPORT_ERROR = exc
        else:
            HfApi, hf_errors, hf_hub_url, http_get, build_hf_headers, disable_progress_bars = (
                _api, _errors, _url, _get, _headers, _quiet)
            http_backoff, hf_raise_for_status, ModelInfo = _backoff, _raise, _info
            _smaller_download_chunks()
    if HF_IMPORT_ERROR is not None:
        raise MissingDependencyError("huggingface_hub", "for provider huggingface", HF_IMPORT_ERROR)


DOWNLOAD_CHUNK_BYTES = 1024 * 1024


def _smaller_download_chunks() -> None:
    """``http_get`` hands the file its data in chunks of ``constants.DOWNLOAD_CHUNK_SIZE`` (10 MB in
    huggingface_hub 2.4), so on a slow link the journal's byte count (the progress an operator sees)
    would stand still for 10 MB at a time; 1 MiB keeps it moving (read at each call, this process only)."""
    try:
        from huggingface_hub import constants  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    if getattr(constants, "DOWNLOAD_CHUNK_SIZE", 0) > DOWNLOAD_CHUNK_BYTES:
        constants.DOWNLOAD_CHUNK_SIZE = DOWNLOAD_CHUNK_BYTES


# the TLS settings huggingface_hub's shared HTTP client was built for (None: not configured yet)
_HUB_TLS = None


def configure_hub_tls(tls) -> None:
    """Make huggingface_hub's shared HTTP client use ``tls`` (validate_certs, ca_path: models/tls.py).

    huggingface_hub >= 1.0 sends every request through one httpx client made by the factory of
    ``set_client_factory``. Ours builds it as huggingface_hub's default one does (its request hook,
    redirects) but with the timeouts (HUB_CONNECT_TIMEOUT, HUB_READ_TIMEOUT) and, when ``tls`` is
    not the default, ``verify`` set to its SSLContext. Setting the factory closes the client it made before.
    """
    global _HUB_TLS  # pylint: disable=global-statement
    load_hub()
    tls.check()
    key = (tls.validate_certs, tls.ca_path)
    if key == _HUB_TLS:
        return
    from huggingface_hub.utils import _http as hub_http  # pylint: disable=import-outside-toplevel
    if not hasattr(hub_http, "set_client_factory"):
        raise MissingDependencyError("huggingface_hub >= 1.0", "for provider huggingface",
                                     ImportError("huggingface_hub has no set_client_factory"))
    context = None if tls.default else tls.ssl_context()
    hub_http.set_client_factory(lambda: _hub_client(hub_http, context))
    _HUB_TLS = key


def _hub_client(hub_http, context=None):
    """huggingface_hub's default client (``default_client_factory``) with (connect, read) timeouts and,
    given an SSLContext, ``verify=context``."""
    httpx = getattr(hub_http, "httpx2", None) or getattr(hub_http, "httpx")
    hook = getattr(hub_http, "hf_request_event_hook", None)
    tls = {} if context is None else {"verify": context}
    return httpx.Client(event_hooks={"request": [hook]} if hook else None, follow_redirects=True,
                        timeout=httpx.Timeout(HUB_READ_TIMEOUT, connect=HUB_CONNECT_TIMEOUT), **tls)


def hub_api(endpoint: str, token: str | None, tls):
    """An ``HfApi`` for ``endpoint`` whose requests use the TLS settings ``tls``."""
    configure_hub_tls(tls)
    disable_progress_bars()
    tls.contacting(endpoint)
    return HfApi(endpoint=endpoint, token=token)


def redact(text: str, token: str | None) -> str:
    """``text`` with every occurrence of the token (and its Bearer form) masked."""
    return _redact_secrets(text, [token] if token else [])


def validate_endpoint(endpoint: str | None) -> str:
    if not endpoint:
        return DEFAULT_ENDPOINT
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")) or any(
            c.isspace() for c in endpoint) or "@" in endpoint.split("/", 3)[2]:
        raise ValidationError(f"endpoint {endpoint!r} is not an http(s) URL without credentials.",
                              fix="Give the base URL of the Hub or mirror, e.g. https://huggingface.co or "
                                  "http://mirror.internal:8090; pass credentials with the token option.")
    return endpoint.rstrip("/")


class _Abort(Exception):
    """Raised inside a download thread to stop it (another file failed, or the timeout passed)."""


class _HashingWriter:
    """The file object handed to ``http_get``: writes through, hashes, counts, and can abort."""

    def __init__(self, fh, spec: FileSpec, hasher: Hasher, progress, stop: threading.Event, deadline: float | None,
                 path: str):
        self.fh = fh
        self.spec = spec
        self.hasher = hasher
        self.progress = progress
        self.stop = stop
        self.deadline = deadline
        self.path = path

    def write(self, data) -> int:
        if self.stop.is_set():
            raise _Abort("stopped")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _Abort("timeout")
        n = self.fh.write(data)
        self.hasher.update(data)
        self.progress.add(len(data))
        return n

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        """http_get truncates when a server ignores Range and sends everything again: re-hash what is kept."""
        self.fh.flush()
        kept = self.fh.tell() if size is None else size
        n = self.fh.truncate(kept)
        self.progress.add(kept - self.hasher.length, transferred=False)
        self.hasher = Hasher(self.spec.size, git=not self.spec.lfs)
        if kept:
            self.hasher.feed_file(self.path, limit=kept)
        return n

    def flush(self) -> None:
        self.fh.flush()


class HuggingFaceProvider(FileTreeProvider):
    """Provider ``huggingface``: see the module docstring."""

    name = "huggingface"
    prefix = "hf"

    def __init__(self, request, paths):
        super().__init__(request, paths)
        self.endpoint = validate_endpoint(request.endpoint)
        if request.revision is not None:
            validate_revision(request.revision)
        self._api = None

    def _redact(self, text) -> str:
        return redact(text, self.request.token)

    # -- offline checks ------------------------------------------------------------------------------
    def satisfies(self, entry: dict) -> bool:
        if entry.get("status") != "installed":
            return False
        wanted = self.request.revision
        if wanted is not None and wanted not in (entry.get("revision"), entry.get("requested_revision")):
            return False
        return self.same_selection(entry)

    # -- the Hub -------------------------------------------------------------------------------------
    def api(self):
        load_hub()
        if self._api is None:
            self._api = hub_api(self.endpoint, self.request.token, self.tls)
        return self._api

    def _translate(self, exc: BaseException, revision: str | None, what: str) -> VenomError:
        """A huggingface_hub / network error as a VenomError with the cause and the fix (token masked)."""
        where = f"{self.endpoint}"
        detail = self._redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        cert = self.tls.certificate_error(exc, where, what)
        if cert is not None:
            return cert
        token_hint = ("the token given (token option or HF_TOKEN) has no access to it" if self.request.token
                      else "no token was given (token option or HF_TOKEN)")
        if hf_errors is not None:
            if isinstance(exc, hf_errors.GatedRepoError):
                return ProviderError(
                    f"The Hugging Face repository {self.model_id} is gated and {token_hint}.",
                    fix=f"Accept the model's conditions on its page ({self.endpoint}/{self.model_id}) with the account "
                        "whose token you pass, then pass that token with the token option or HF_TOKEN.")
            if isinstance(exc, hf_errors.RevisionNotFoundError):
                return NotFoundError(f"The revision {revision!r} does not exist in {self.model_id} at {where}.",
                                     fix="Give an existing branch, tag or full commit id in revision.")
            if isinstance(exc, hf_errors.RepositoryNotFoundError):
                if revision not in (None, DEFAULT_REVISION) and self._exists_at(DEFAULT_REVISION):
                    return NotFoundError(
                        f"The revision {revision!r} does not exist in {self.model_id} at {where} "
                        "(the repository itself exists).",
                        fix="Give an existing branch, tag or full commit id in revision.")
                return NotFoundError(
                    f"The Hugging Face repository {self.model_id} was not found at {where}: it does not exist, or it is "
                    f"private or gated and {token_hint}.",
                    fix="Check the repository id (org/name, as on the Hub page); for a private or gated model pass a "
                        "token with access (token option or HF_TOKEN); with a mirror, check that it serves this "
                        "repository.")
            if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
                return ProviderError(f"{what}: the file is listed at commit {revision} of {self.model_id} but "
                                     f"{where} does not serve it ({detail}).",
                                     fix="Check the mirror's copy of the repository, then run the task again.")
            if isinstance(exc, hf_errors.OfflineModeIsEnabled):
                return ProviderError(
                    f"{what}: HF_HUB_OFFLINE is set on the host, so huggingface_hub makes no request.",
                    fix="Unset HF_HUB_OFFLINE for this task (environment: keyword), or adopt a copy of the model "
                        "with provider local.")
            if isinstance(exc, hf_errors.HfHubHTTPError):
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status == 401:
                    return ProviderError(f"{what}: {where} refused the credentials (HTTP 401: {detail}).",
                                         fix="Check the token (token option or HF_TOKEN); it may be revoked or expired.")
                if status is not None and status >= 500 and is_commit(revision or ""):
                    return NotFoundError(
                        f"{what}: {where} failed with HTTP {status} for commit {revision} of {self.model_id}; "
                        "mirrors such as olah answer so for a commit they do not have.",
                        fix="Check the commit id (the full 40 hex characters of an existing commit), or pin a "
                            "branch or tag instead.")
                return ProviderError(f"{what}: {where} answered HTTP {status}: {detail}.",
                                     fix="Retry later; if it persists, check the endpoint/mirror's health and logs.")
        if is_disk_full(exc):
            return disk_full(exc, self.paths.models_dir)
        if _is_network_error(exc):
            return ProviderError(
                f"{what}: cannot reach {where} ({type(exc).__name__}: {detail}). Anything downloaded so far is kept "
                "and resumes on the next run.",
                fix="Check the endpoint option, the host's network, DNS and proxy settings (HTTPS_PROXY), and "
                    "that the mirror is running; then run the task again.")
        if isinstance(exc, VenomError):
            return exc
        return ProviderError(f"{what}: {type(exc).__name__}: {detail}",
                             fix="Run the task again; the download resumes. If it persists, report it with this message.")

    def _exists_at(self, revision: str) -> bool:
        try:
            self._model_info(revision)
            return True
        except Exception:  # pylint: disable=broad-except
            return False

    def _model_info(self, revision: str):
        """``HfApi.model_info(repo, revision=...)``, sent through huggingface_hub's ``http_backoff`` (HUB_RETRY):
        ``HfApi.model_info`` sends its request once, without retries."""
        self.api()  # huggingface_hub imported, its client configured (TLS, timeouts)
        url = f"{self.endpoint}/api/models/{self.model_id}/revision/{urllib.parse.quote(revision, safe='')}"
        response = http_backoff("GET", url, headers=build_hf_headers(token=self.request.token), **HUB_RETRY)
        hf_raise_for_status(response)
        return ModelInfo(**response.json())

    def _call(self, fn, revision: str | None, what: str):
        """Call the Hub (retries are huggingface_hub's: HUB_RETRY); an error becomes a VenomError with the fix."""
        try:
            return fn()
        except Exception as exc:  # pylint: disable=broad-except
            raise self._translate(exc, revision, what) from None

    def resolve(self, entry: dict | None, latest: bool = False) -> Target:
        revision = self.request.revision
        if revision is None and entry is not None:
            revision = entry.get("requested_revision") or entry.get("revision")
        revision = revision or DEFAULT_REVISION
        api = self.api()
        info = self._call(lambda: self._model_info(revision), revision,
                          f"Resolving {self.model_id}@{revision}")
        commit = getattr(info, "sha", None)
        if not is_commit(commit or ""):
            raise ProviderError(f"{self.endpoint} returned no commit id for {self.model_id}@{revision}.",
                                fix="Check that the endpoint is a Hugging Face Hub API or mirror.")
        items = self._call(lambda: list(api.list_repo_tree(self.model_id, revision=commit, recursive=True)),
                           commit, f"Listing the files of {self.model_id}@{commit[:12]}")
        specs = {}
        for item in items:
            if not hasattr(item, "size") or not hasattr(item, "blob_id"):
                continue  # a folder
            path = validate_relative_file_path(item.path)
            lfs = getattr(item, "lfs", None)
            sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
            specs[path] = FileSpec(path=path, size=int(item.size), sha256=sha256,
                                   git_oid=None if lfs is not None else item.blob_id, lfs=lfs is not None)
        chosen = select_paths(sorted(specs), self.selection["allow_patterns"], self.selection["ignore_patterns"])
        if not chosen:
            raise NotFoundError(
                f"No file of {self.model_id}@{commit[:12]} matches allow_patterns {self.selection['allow_patterns']} "
                f"and ignore_patterns {self.selection['ignore_patterns']} ({len(specs)} files in the repository).",
                fix="Loosen allow_patterns / ignore_patterns (globs such as '*.safetensors', 'onnx/').")
        files = [specs[p] for p in chosen]
        target = Target(revision=commit, requested_revision=revision, files=files,
                        local_path=self.version_dir(commit), disk_path=self.paths.models_dir,
                        extra=dict(self.selection, source={"endpoint": self.endpoint}))
        self._count_staged(target, entry)
        return target

    def _count_staged(self, target: Target, entry: dict | None) -> None:
        """Fill fetch_bytes/staged_bytes from the staging area and the installed copy of the same commit."""
        stage = self.staging(target.revision)
        reuse = self._reusable(entry, target)
        staged = 0
        target.pending = []
        for spec in target.files:
            if spec.path in reuse or stage.verified(spec):
                staged += spec.size
            else:
                staged += min(stage.partial_size(spec.path), spec.size)
                target.pending.append(spec.path)
        target.staged_bytes = staged
        target.fetch_bytes = target.size_bytes - staged

    @staticmethod
    def _reusable(entry: dict | None, target: Target) -> set:
        """Files of the installed copy of the same commit that match the target (stat only)."""
        if not entry or entry.get("revision") != target.revision or not entry.get("local_path"):
            return set()
        recorded = {f["path"]: f for f in entry.get("files", [])}
        out = set()
        for spec in target.files:
            rec = recorded.get(spec.path)
            if not rec or rec["size"] != spec.size or (spec.sha256 and rec.get("sha256") != spec.sha256 and spec.lfs):
                continue
            if spec.git_oid and rec.get("git_oid") and rec["git_oid"] != spec.git_oid:
                continue
            try:
                if os.path.getsize(os.path.join(entry["local_path"], spec.path)) == spec.size:
                    out.add(spec.path)
            except OSError:
                continue
        return out

    # -- downloads -----------------------------------------------------------------------------------
    def _download_all(self, stage: StagingArea, specs: list, progress) -> dict:
        """Download and verify ``specs`` into ``stage.tree``; return {path: digests}."""
        configure_hub_tls(self.tls)
        stage.ensure()
        headers = build_hf_headers(token=self.request.token)
        stop = threading.Event()
        deadline = time.monotonic() + self.request.timeout if self.request.timeout else None
        results = {}
        errors = []
        workers = max(1, min(MAX_WORKERS, len(specs)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(self._download_one, stage, spec, headers, progress, stop, deadline): spec
                       for spec in sorted(specs, key=lambda s: -s.size)}
            for fut in concurrent.futures.as_completed(futures):
                spec = futures[fut]
                try:
                    results[spec.path] = fut.result()
                except _Abort as exc:
                    if str(exc) == "timeout":
                        errors.append(ProviderError(
                            f"Downloading {self.model_id} took longer than timeout={self.request.timeout:g}s; "
                            "what was downloaded is kept and resumes on the next run.",
                            fix="Run the task again (it resumes), or raise timeout."))
                        stop.set()
                except BaseException as exc:  # pylint: disable=broad-except
                    stop.set()
                    errors.append(exc)
        if errors:
            first = next((e for e in errors if not isinstance(e, _Abort)), errors[0])
            if isinstance(first, VenomError):
                raise first
            raise self._translate(first, stage.root.rsplit("/", 1)[-1], f"Downloading {self.model_id}") from None
        return results

    def _download_one(self, stage: StagingArea, spec: FileSpec, headers: dict, progress, stop, deadline) -> dict:
        commit = os.path.basename(stage.root)
        url = hf_hub_url(self.model_id, spec.path, revision=commit, endpoint=self.endpoint)
        partial = stage.partial_path(spec.path)
        os.makedirs(os.path.dirname(partial), mode=0o750, exist_ok=True)
        why = None
        for _attempt in range(ATTEMPTS):
            have = stage.partial_size(spec.path)
            if have > spec.size:
                os.unlink(partial)
                have = 0
            hasher = Hasher(spec.size, git=not spec.lfs)
            if have:
                hasher.feed_file(partial, limit=have)
                progress.add(have, transferred=False)
            writer = None
            try:
                with open(partial, "ab") as fh:
                    writer = _HashingWriter(fh, spec, hasher, progress, stop, deadline, partial)
                    http_get(url, writer, resume_size=have, headers=headers, expected_size=spec.size)
                    fh.flush()
                    os.fsync(fh.fileno())
            except _Abort:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                if _is_hf_error(exc) or "Consistency check failed" not in str(exc):
                    raise self._translate(exc, commit, f"Downloading {spec.path} of {self.model_id}") from None
                # the server sent fewer or more bytes than listed: start this file over, once
                why = self._redact(str(exc).splitlines()[0])
                _unlink(partial)
                progress.add(-(writer.hasher.length if writer else have), transferred=False)
                continue
            hasher = writer.hasher
            size = os.path.getsize(partial)
            digests = hasher.digests()
            why = mismatch(spec, digests, size)
            if why is None:
                stage.place(partial, spec, digests)
                return digests
            _unlink(partial)
            progress.add(-size, transferred=False)
        raise integrity_error(self.model_id, spec.path, why or "unknown")

    # -- changes -------------------------------------------------------------------------------------
    def install(self, target: Target, progress, entry: dict | None = None) -> dict:
        final = target.local_path
        stage = self.staging(target.revision)
        # the installed copy of the same commit (another file selection, or a repair) is completed in
        # place, file by file; another commit is built in the staging tree and renamed into place
        in_place = bool(entry and entry.get("revision") == target.revision and entry.get("local_path") == final)
        reuse = self._reusable(entry, target) if in_place else set()
        if not in_place and os.path.isdir(final):
            stage.adopt_tree(final)  # a run killed after the final rename, before the manifest: take it back
        if os.path.isdir(stage.tree):
            self._adopt_unrecorded(stage, [s for s in target.files if s.path not in reuse])
        todo = [s for s in target.files if s.path not in reuse and not stage.verified(s)]
        progress.set_total(target.size_bytes, target.size_bytes - sum(s.size for s in todo),
                           f"downloading {len(todo)} file(s) of {self.model_id}@{target.revision[:12]}")
        if todo:
            self._download_all(stage, todo, progress)
        state = dict(stage.state())
        if in_place:
            for spec in target.files:
                if spec.path not in reuse:
                    stage.move_to(spec.path, final, self.permissions)
            wanted = {s.path for s in target.files}
            for rec in entry.get("files", []):
                if rec["path"] not in wanted:
                    _unlink(safe_join(final, rec["path"]))
                    prune_empty_parents(os.path.dirname(os.path.join(final, rec["path"])), stop=final)
            stage.discard()
        else:
            stage.commit(final, self.permissions)
        return self._fields(target, entry if in_place else None, stage_state=state)

    @staticmethod
    def _adopt_unrecorded(stage: StagingArea, specs: list) -> None:
        """Files in tree/ without a state record (killed between the move and the record): hash them."""
        for spec in specs:
            if stage.verified(spec):
                continue
            path = stage.tree_path(spec.path)
            if os.path.isfile(path) and os.path.getsize(path) == spec.size:
                h = Hasher(spec.size, git=not spec.lfs)
                h.feed_file(path)
                if mismatch(spec, h.digests(), spec.size) is None:
                    stage.record(spec, h.digests())

    def _fields(self, target: Target, entry: dict | None, stage_state: dict) -> dict:
        recorded = {f["path"]: f for f in (entry or {}).get("files", [])}
        files = []
        for spec in target.files:
            rec = dict(spec.record())
            got = stage_state.get(spec.path) or recorded.get(spec.path) or {}
            rec["sha256"] = got.get("sha256") or spec.sha256
            files.append(rec)
        return dict(target.extra, revision=target.revision, requested_revision=target.requested_revision,
                    local_path=target.local_path, files=files,
                    capabilities_detected=self.detect_capabilities(target.local_path))

    def repair(self, entry: dict, problems: list, progress) -> dict:
        commit = entry["revision"]
        bad = {p.path for p in problems}
        specs = [FileSpec.from_record(f) for f in entry["files"] if f["path"] in bad or "." in bad]
        for spec in specs:  # a damaged file must not be resumed as a partial download
            _unlink(self.staging(commit).partial_path(spec.path))
        target = Target(revision=commit, requested_revision=entry.get("requested_revision"),
                        files=[FileSpec.from_record(f) for f in entry["files"]], local_path=entry["local_path"],
                        extra={k: entry.get(k) for k in ("allow_patterns", "ignore_patterns", "source")})
        good = dict(entry, files=[f for f in entry["files"] if f["path"] not in bad and "." not in bad])
        os.makedirs(self.model_dir(entry["local_path"]), mode=0o755, exist_ok=True)
        return self.install(target, progress, entry=good)

    def detect_capabilities(self, local_path: str | None, target: Target | None = None) -> dict:
        return detect_hf_capabilities(local_path) if local_path and os.path.isdir(local_path) else {}

    def predict_capabilities(self, target: Target) -> dict | None:
        """The files capability detection reads (config.json, tokenizer_config.json, chat templates:
        kilobytes), fetched into a temporary directory and read as the install will read them."""
        configure_hub_tls(self.tls)
        headers = build_hf_headers(token=self.request.token)
        tmp = tempfile.mkdtemp(prefix="venom-check-")
        try:
            for spec in target.files:
                if not is_capability_file(spec.path) or spec.size > MAX_CAPABILITY_FILE_BYTES:
                    continue
                dest = os.path.join(tmp, spec.path)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                url = hf_hub_url(self.model_id, spec.path, revision=target.revision, endpoint=self.endpoint)
                try:
                    with open(dest, "wb") as fh:
                        http_get(url, fh, headers=headers, expected_size=spec.size)
                except Exception as exc:  # pylint: disable=broad-except
                    raise self._translate(exc, target.revision, f"Reading {spec.path} of {self.model_id}") from None
            return detect_hf_capabilities(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _is_hf_error(exc: BaseException) -> bool:
    return hf_errors is not None and isinstance(exc, (hf_errors.HfHubHTTPError, hf_errors.OfflineModeIsEnabled))


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__module__.split(".")[0] in NETWORK_MODULES for cls in type(exc).__mro__)
