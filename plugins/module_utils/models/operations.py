# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The operations of ``venom_model``, provider-neutral: plan (read-only) and apply.

``ModelOperations(request, check_mode).run()`` does, for one model on this host:

1. validate the request; pick the provider (``PROVIDER_CLASSES``);
2. (real runs) take the model lock, so two runs on one host never race on one model;
3. plan: read the manifest entry and decide the action, asking the provider as little as
   possible (``Provider.satisfies`` + ``quick_check`` first: an installed model costs no network
   request and no hashing); for a download, the quota and free-disk pre-flight with exact sizes;
4. check mode stops here and reports the plan, ``changed`` and the predicted entry;
5. apply under a journal operation (progress, bytes, errors): the provider fetches and verifies,
   then the manifest records the entry (``Manifest.record_install``, one transaction) (``installed`` only when every file is there
   and verified); an old version replaced by ``latest`` is removed after the switch, or kept and
   reported while a runtime has the model active.

Actions: ``none``, ``install`` (nothing installed), ``update`` (another version replaces the
installed one), ``sync`` (same version, other file selection), ``repair`` (re-fetch files that
are missing or differ), ``metadata`` (display name, runtime, capability overrides, requested
revision), ``permissions`` (the owner, group or mode of installed files differ from what the task
or the manifest asks; ``store.ownership``), ``prune`` (remove old versions kept for a runtime),
``remove``, ``discard_staging`` (an interrupted download's debris for a model that is not installed).

Owner, group and modes: the task's ``owner``/``group``/``mode``/``directory_mode`` over the ones the
entry records (``permissions``) are handed to the provider, which gives them to a version in the
staging area before it is moved into place; after every change they are enforced on the whole
version directory again (idempotent), and every run with ``present`` checks them (``lstat``).

To add a provider: subclass ``models.providers.Provider`` and add it to ``PROVIDER_CLASSES``.
"""
from __future__ import annotations

import copy
import dataclasses

from ansible_collections.venom.models.plugins.module_utils.capabilities.deferred import merge_overrides
from ansible_collections.venom.models.plugins.module_utils.errors import QuotaError, ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.models.huggingface import HuggingFaceProvider, redact
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.models.local import LocalProvider
from ansible_collections.venom.models.plugins.module_utils.store.locks import model_lock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, nested_dirs, new_entry
from ansible_collections.venom.models.plugins.module_utils.store import ownership
from ansible_collections.venom.models.plugins.module_utils.models.ollama import OllamaProvider
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.models.providers import (
    DEFAULT_RUNTIMES, STATES, ModelRequest, Progress, Target, files_digest)
from ansible_collections.venom.models.plugins.module_utils.store.quota import fmt_bytes, free_bytes, storage_settings
from ansible_collections.venom.models.plugins.module_utils.store.quota import plan as quota_plan
from ansible_collections.venom.models.plugins.module_utils.store.quota import require_fit
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    PROVIDERS, RUNTIMES, validate_choice, validate_non_negative)

PROVIDER_CLASSES = {
    "huggingface": HuggingFaceProvider,
    "local": LocalProvider,
    "ollama": OllamaProvider,
}
JOURNAL_TYPES = {"install": "install", "record": "install", "update": "update", "sync": "install", "repair": "verify",
                 "metadata": "update", "permissions": "update", "prune": "update", "remove": "remove", "discard_staging": "remove"}
FETCHING = ("install", "update", "sync", "repair")
MAX_LISTED_FILES = 200


@dataclasses.dataclass
class Plan:
    """What a run will do (check mode reports it; a real run applies it)."""

    action: str
    reason: str
    before: dict | None = None
    target: Target | None = None
    problems: list = dataclasses.field(default_factory=list)
    quota: dict | None = None
    fetch: list = dataclasses.field(default_factory=list)  # FileSpecs to transfer
    fetch_bytes: int = 0
    metadata: dict = dataclasses.field(default_factory=dict)  # entry fields that change without files
    permission_changes: list = dataclasses.field(default_factory=list)  # ownership.differences of the installed files
    permissions_before: dict | None = None  # what the installed files have (ownership.observed), for the diff

    @property
    def changed(self) -> bool:
        # "record": the runtime's own store already has the model (Ollama); only the manifest learns
        # of it, nothing is downloaded or changed in the store, so the task reports no change
        return self.action not in ("none", "record")

    def as_dict(self) -> dict:
        out = {"action": self.action, "reason": self.reason, "fetch_bytes": self.fetch_bytes,
               "fetch_files": len(self.fetch),
               "files_to_fetch": [f.path for f in self.fetch[:MAX_LISTED_FILES]],
               "problems": [p.as_dict() for p in self.problems[:MAX_LISTED_FILES]],
               "quota": self.quota}
        if self.permission_changes:
            out["permission_changes"] = self.permission_changes[:MAX_LISTED_FILES]
        if self.target is not None:
            out.update(revision=self.target.revision, requested_revision=self.target.requested_revision,
                       size_bytes=self.target.size_bytes, staged_bytes=self.target.staged_bytes,
                       local_path=self.target.local_path)
        return out


def validate_request(req: ModelRequest) -> ModelRequest:
    validate_choice(req.provider, PROVIDERS, "provider")
    validate_choice(req.state, STATES, "state")
    if req.provider not in PROVIDER_CLASSES:
        raise ValidationError(f"provider {req.provider} is not available in this version of venom_model.",
                              fix=f"Use one of: {', '.join(sorted(PROVIDER_CLASSES))}.")
    if req.runtime is not None:
        validate_choice(req.runtime, RUNTIMES, "runtime")
    for key in ("quota_gb", "reserve_gb"):
        if getattr(req, key) is not None:
            validate_non_negative(getattr(req, key), key)
    if req.timeout is not None and validate_non_negative(req.timeout, "timeout") == 0:
        raise ValidationError("timeout must be more than 0 seconds.", fix="Set timeout to a positive number or omit it.")
    for key in ("allow_patterns", "ignore_patterns"):
        value = getattr(req, key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) and v for v in value)):
            raise ValidationError(f"{key} must be a list of non-empty glob strings.", fix=f"Give {key} as a list such as ['*.safetensors'].")
    if req.display_name is not None and (not isinstance(req.display_name, str) or not req.display_name.strip()
                                         or len(req.display_name) > 256):
        raise ValidationError("display_name must be a non-empty string of at most 256 characters.",
                              fix="Give a short human-readable name.")
    if req.provider == "ollama" and any(getattr(req, k) is not None for k in ownership.KEYS):
        raise ValidationError("owner, group, mode and directory_mode apply to the files venom.models installs under "
                              "models_dir; an Ollama model lives in the Ollama server's own store.",
                              fix="Leave them out for provider ollama (the ollama role owns that store).")
    if req.capabilities is not None and not isinstance(req.capabilities, dict):
        raise ValidationError("capabilities must be a mapping of capability overrides.",
                              fix="Give e.g. {supports_system_role: false, max_context_length: 8192}.")
    return req


class ModelOperations:
    """Plan and apply one ``venom_model`` request (see the module docstring)."""

    def __init__(self, request: ModelRequest, check_mode: bool = False, diff_detail: bool = False):
        """``diff_detail``: the diff shows every file with its digests (else a summary)."""
        self.request = validate_request(request)
        self.check_mode = check_mode
        self.diff_detail = diff_detail
        self.capabilities_predicted: bool | None = None  # check mode: were they predicted (None: not needed)
        self.paths = StatePaths(request.models_dir)
        self.provider = PROVIDER_CLASSES[request.provider](request, self.paths)
        self.name = self.provider.canonical_name()
        self.manifest = Manifest(self.paths, lock_timeout=request.lock_timeout)
        self.journal = Journal(self.paths, secrets=[request.token])
        # the host's storage settings: as given, else as recorded with the manifest, else the defaults
        self.storage = storage_settings(self.manifest.settings(), quota_gb=request.quota_gb,
                                        reserve_gb=request.reserve_gb)
        self.warnings: list = []
        self.progress: Progress | None = None
        # (state absent removes the files: their owner and mode do not matter then)
        self.given_permissions = ownership.Permissions() if request.state == "absent" else \
            ownership.Permissions.parse(*(getattr(request, k) for k in ownership.KEYS), check_mode=check_mode)

    def _redact(self, text) -> str:
        return redact(str(text), self.request.token)

    # -- entry point ---------------------------------------------------------------------------------
    def run(self) -> dict:
        given = {"quota_gb": self.request.quota_gb, "reserve_gb": self.request.reserve_gb}
        if self.check_mode:
            plan = self.plan()
            recorded = self.manifest.settings()
            return self._with_settings(self.result(plan, after=self.predicted_entry(plan), operation=None),
                                       any(v is not None and recorded.get(k) != float(v) for k, v in given.items()))
        self.paths.ensure()
        with model_lock(self.paths, self.request.provider, self.name, timeout=self.request.lock_timeout,
                        purpose=f"venom_model {self.request.state} {self.name}"):
            plan = self.plan()
            if plan.action == "none":
                out = self.result(plan, after=plan.before, operation=None)
            else:
                after, operation = self.apply(plan)
                out = self.result(plan, after=after, operation=operation)
            return self._with_settings(out, self.manifest.record_settings(given))

    def _with_settings(self, out: dict, recorded_now: bool) -> dict:
        """The result with the storage settings in force; recording new ones is a change."""
        out["storage"] = dict(self.storage, recorded=recorded_now)
        out["changed"] = out["changed"] or recorded_now
        return out

    # -- planning (read-only) ------------------------------------------------------------------------
    def plan(self) -> Plan:
        req = self.request
        entry = self.manifest.get(self.name, req.provider)
        if req.state == "absent":
            return self._plan_absent(entry)
        self.provider.permissions = self.given_permissions.merged_over(
            ownership.Permissions.from_record((entry or {}).get("permissions"), check_mode=self.check_mode))
        for what in self.provider.permissions.missing():
            self.warnings.append(f"The {what} does not exist on this host; check mode assumes that a task before this "
                                 "one creates it (as the venom.models.vllm role creates its user and group). A real "
                                 "run fails without it.")
        if entry is not None and req.state in ("present", "verified") and \
                self.provider.satisfies(dict(entry, status="installed")):
            return self._plan_installed(entry, full=req.state == "verified" or entry.get("status") != "installed")
        if entry is not None and req.state == "latest" and entry.get("status") == "installed" and \
                self.provider.satisfies(dict(entry, status="installed")) and self._pinned(entry):
            return self._plan_installed(entry, full=False)
        target = self.provider.resolve(entry, latest=req.state == "latest")
        self._refuse_nesting(target.local_path)
        if entry is not None and target.revision == entry.get("revision") and target.local_path == entry.get("local_path"):
            wanted = {f.path: f.size for f in target.files}
            recorded = {f["path"]: f["size"] for f in entry.get("files", [])}
            if wanted != recorded:
                fetch = [f for f in target.files if recorded.get(f.path) != f.size or
                         f.path in {p.path for p in self.provider.quick_check(entry)}]
                plan = Plan("sync", f"the file selection changed ({len(wanted)} files instead of {len(recorded)})",
                            before=entry, target=target, fetch=fetch)
                return self._with_quota(plan)
            plan = self._plan_installed(entry, full=req.state == "verified" or entry.get("status") != "installed",
                                        target=target)
            return plan
        if entry is None and target.extra.get("already_present") and not target.pending:
            # nothing is transferred: the quota is not enforced on what is already on disk
            return Plan("record", f"{self.name} is already in the {req.provider} store; recording it in the manifest",
                        target=target)
        if entry is None:
            plan = Plan("install", f"{self.name} is not installed", target=target, fetch=self._to_fetch(target))
        else:
            plan = Plan("update", f"{self.name} is at {_short(entry.get('revision'))}, "
                                  f"{target.requested_revision or 'the source'} is at {_short(target.revision)}",
                        before=entry, target=target, fetch=self._to_fetch(target))
        return self._with_quota(plan)

    def _refuse_nesting(self, path: str | None) -> None:
        """No model's directory may contain (or lie inside) another model's: refused before anything is written."""
        if not path:
            return
        me = (self.request.provider, self.name)
        dirs = [(path, self.name)]
        for e in self.manifest.models():
            if (e["provider"], e["name"]) != me:
                dirs += [(p, e["name"]) for p in [e.get("local_path")] +
                         [v.get("local_path") for v in e.get("retained_versions") or []] if p]
        nested = nested_dirs(dirs)
        if nested:
            (inner, inner_name), (outer, outer_name) = nested
            raise ValidationError(
                f"{self.name} would be installed at {path}, but the directory of {inner_name!r} ({inner}) would lie "
                f"inside the directory of {outer_name!r} ({outer}); removing one would delete the other.",
                fix="Choose a model name that is not another model's name followed by its version directory.")

    def _pinned(self, entry: dict) -> bool:
        """Whether ``latest`` has nothing to re-resolve: the request pins the installed commit."""
        return bool(self.request.revision) and self.request.revision == entry.get("revision")

    @staticmethod
    def _to_fetch(target: Target) -> list:
        pending = set(target.pending)
        return [f for f in target.files if f.path in pending]

    def _plan_absent(self, entry: dict | None) -> Plan:
        unmanaged = self.provider.unmanaged_entry() if entry is None else None
        if unmanaged is not None:
            return Plan("remove", f"{self.name} is installed but not recorded in the manifest", before=unmanaged)
        if entry is None:
            if self.provider.has_staging():
                return Plan("discard_staging", f"{self.name} is not installed but an interrupted download left "
                                               f"{fmt_bytes(self.provider.staging_bytes())} in the staging area")
            return Plan("none", f"{self.name} is not installed")
        if entry.get("active") and not self.request.force:
            raise ValidationError(
                f"{self.name} is the active model of {_served_by(entry)}; removing it would break what serves it.",
                fix="Switch or stop the runtime first (venom.models.venom_runtime), or set force: true to remove it anyway.")
        return Plan("remove", f"{self.name} is installed at {entry.get('local_path')}", before=entry)

    def _plan_installed(self, entry: dict, full: bool, target: Target | None = None) -> Plan:
        """The version is right: check the files (stat, or hash when ``full``) and the metadata."""
        if full:
            problems = self.provider.verify(entry, Progress())
        else:
            problems = self.provider.quick_check(entry)
        if problems:
            bad = {p.path for p in problems}
            from ansible_collections.venom.models.plugins.module_utils.models.providers import FileSpec  # pylint: disable=import-outside-toplevel
            fetch = [FileSpec.from_record(f) for f in entry.get("files", []) if f["path"] in bad or "." in bad]
            plan = Plan("repair", f"{len(problems)} file(s) of {self.name} are missing or differ: "
                                  + "; ".join(str(p) for p in problems[:5]),
                        before=entry, target=target, problems=problems, fetch=fetch)
            return self._with_quota(plan)
        if entry.get("status") != "installed":
            # marked damaged (venom_manifest's rebuild) but every file matches again: recorded as installed
            return Plan("repair", f"{self.name} is recorded as {entry.get('status')} but every file matches its digest",
                        before=entry, target=target)
        meta = self._metadata_changes(entry, target)
        perms = self.provider.permissions
        installed_dir = self.provider.model_dir(entry.get("local_path")) if perms else None
        changes = ownership.differences(installed_dir, perms)
        before_perms = ownership.observed(installed_dir, perms) if changes else perms.record() or None
        if meta and set(meta) != {"permissions"}:
            return Plan("metadata", "changed: " + ", ".join(sorted(meta)), before=entry, target=target, metadata=meta,
                        permission_changes=changes, permissions_before=before_perms)
        if changes or meta:
            reason = (f"{len(changes)} file(s) or directories of {self.name} differ from the owner, group or mode "
                      f"{perms.record()}" if changes else f"recording the permissions {perms.record()} its files have")
            return Plan("permissions", reason, before=entry, target=target, metadata=meta,
                        permission_changes=changes, permissions_before=before_perms)
        if entry.get("retained_versions") and not entry.get("active"):
            return Plan("prune", f"{len(entry['retained_versions'])} old version(s) kept for a runtime are no longer needed",
                        before=entry, target=target)
        return Plan("none", f"{self.name} is installed at {_short(entry.get('revision'))}"
                            + (" and every file matches its digest" if full else ""), before=entry, target=target)

    def _metadata_changes(self, entry: dict, target: Target | None) -> dict:
        req, out = self.request, {}
        if req.display_name is not None and req.display_name != entry.get("display_name"):
            out["display_name"] = req.display_name
        if req.runtime is not None and req.runtime != entry.get("runtime"):
            out["runtime"] = req.runtime
        if req.capabilities is not None:
            caps = merge_overrides(entry.get("detected_capabilities") or {}, req.capabilities)
            if caps != entry.get("capabilities") or req.capabilities != entry.get("capability_overrides"):
                out["capabilities"] = caps
                out["capability_overrides"] = copy.deepcopy(req.capabilities)
        perms = self.provider.permissions.record()
        if perms and perms != entry.get("permissions"):
            out["permissions"] = perms
        if target is not None and target.requested_revision and req.revision and \
                target.requested_revision != entry.get("requested_revision"):
            out["requested_revision"] = target.requested_revision
        return out

    def _with_quota(self, plan: Plan) -> Plan:
        """The quota and free-disk picture; raises QuotaError before any byte is transferred."""
        models = self.manifest.models()
        entry = plan.before
        if plan.action == "repair":
            plan.fetch_bytes = sum(f.size for f in plan.fetch)
            quota_bytes, replaced, counted = 0, 0, models
        elif plan.action == "sync":
            plan.fetch_bytes = sum(f.size for f in plan.fetch)
            quota_bytes, replaced = plan.target.size_bytes, 0
            counted = [m for m in models if (m["provider"], m["name"]) != (self.request.provider, self.name)]
        else:
            plan.fetch_bytes = plan.target.fetch_bytes
            quota_bytes = plan.target.size_bytes
            replaced = entry["size_bytes"] if entry else 0
            counted = models
        disk_path = (plan.target.disk_path if plan.target else None) or self.paths.models_dir
        free = free_bytes(disk_path)
        report = quota_plan(counted, quota_bytes, self.storage["quota_gb"], self.storage["reserve_gb"], disk_path,
                            replaced_bytes=replaced, disk_free=free + quota_bytes - plan.fetch_bytes)
        report.update(disk_free_bytes=free, disk_free_after_bytes=free - plan.fetch_bytes + replaced,
                      fetch_bytes=plan.fetch_bytes)
        plan.quota = report
        if not report["fits_quota"]:
            require_fit(report, self.name, counted)
        if not report["fits_disk"]:
            need = plan.fetch_bytes + report["reserve_bytes"]
            raise QuotaError(
                f"Installing {self.name} needs {fmt_bytes(plan.fetch_bytes)} more on the filesystem of {disk_path} plus "
                f"the {fmt_bytes(report['reserve_bytes'])} reserve ({fmt_bytes(need)}), which has {fmt_bytes(free)} free. "
                "Nothing was downloaded.",
                fix=f"Free at least {fmt_bytes(need - free)} on that filesystem, move models_dir to a larger one, or "
                    "lower reserve_gb.", **report)
        return plan

    # -- applying ------------------------------------------------------------------------------------
    def apply(self, plan: Plan) -> tuple:
        op = self.journal.start(JOURNAL_TYPES[plan.action], self.name, provider=self.request.provider,
                                message=plan.reason, bytes_total=plan.fetch_bytes or None,
                                details={"action": plan.action, "state": self.request.state})

        def report(done, total, message, force):
            op.update(bytes_done=done, bytes_total=total or None, message=message or None, force=force)

        self.progress = Progress(report)
        try:
            after = getattr(self, f"_apply_{plan.action}")(plan)
            if after and after.get("local_path") and self.provider.permissions and self.request.provider != "ollama":
                # the whole version directory (new directories of a repair, a metadata-only run) - idempotent
                ownership.apply(self.provider.model_dir(after["local_path"]), self.provider.permissions)
        except VenomError as exc:
            op.fail(self._redact(exc))
            raise
        except BaseException as exc:
            op.fail(self._redact(f"{type(exc).__name__}: {exc}"))
            raise
        op.complete(self._done_message(plan, after),
                    result={"action": plan.action, "revision": (after or {}).get("revision"),
                            "bytes_downloaded": self.progress.transferred})
        return after, op.snapshot()

    def _done_message(self, plan: Plan, after: dict | None) -> str:
        if plan.action in ("remove", "discard_staging"):
            return f"removed {self.name}" if plan.action == "remove" else f"removed the staging debris of {self.name}"
        return f"{plan.action} of {self.name} done: {_short((after or {}).get('revision'))}, " \
               f"{fmt_bytes((after or {}).get('size_bytes', 0))}"

    def _apply_remove(self, plan: Plan):
        self.provider.remove(plan.before)
        self.provider.discard_staging()
        self.manifest.remove(self.name, self.request.provider)
        return None

    def _apply_discard_staging(self, plan: Plan):
        self.provider.discard_staging()
        return None

    def _apply_install(self, plan: Plan):
        fields = self.provider.install(plan.target, self.progress, entry=None)
        return self._record(plan, fields, installed_now=True)

    _apply_record = _apply_install

    def _apply_sync(self, plan: Plan):
        fields = self.provider.install(plan.target, self.progress, entry=plan.before)
        return self._record(plan, fields, installed_now=False)

    def _apply_update(self, plan: Plan):
        old = plan.before
        fields = self.provider.install(plan.target, self.progress, entry=None)
        keep = bool(old.get("active"))
        retained = list(old.get("retained_versions") or [])
        if keep and old.get("local_path") != fields["local_path"]:
            retained.append({"revision": old.get("revision"), "local_path": old.get("local_path"),
                             "reason": f"active on {_served_by(old)}"})
            self.warnings.append(
                f"The previous version {_short(old.get('revision'))} of {self.name} stays at {old.get('local_path')} "
                f"because {_served_by(old)} has the model active; activate the new version "
                "(venom.models.venom_runtime) and run this task again to remove it.")
        after = self._record(plan, fields, installed_now=True, retained=retained)
        if not keep and old.get("local_path") and old.get("local_path") != after.get("local_path"):
            self.provider.remove_version(old["local_path"])
        return after

    def _apply_repair(self, plan: Plan):
        fields = self.provider.repair(plan.before, plan.problems, self.progress) if plan.problems else \
            {k: plan.before.get(k) for k in ("files", "local_path", "revision")}  # nothing to fetch: only recorded
        problems = self.provider.quick_check(dict(plan.before, **{k: v for k, v in fields.items() if k in ("files", "local_path")}))
        if problems:
            raise VenomError(f"Repairing {self.name} left problems: " + "; ".join(map(str, problems[:5])),
                             fix="Run the task again; if it persists, remove the model (state: absent) and install it again.")
        fields.setdefault("capabilities_detected", plan.before.get("detected_capabilities") or {})
        return self._record(plan, fields, installed_now=False)

    def _apply_metadata(self, plan: Plan):
        return self.manifest.set_metadata(self.name, self.request.provider, plan.metadata)

    _apply_permissions = _apply_metadata  # the files are changed by apply(); the entry records what they have

    def _apply_prune(self, plan: Plan):
        for old in plan.before.get("retained_versions") or []:
            if old.get("local_path") and old["local_path"] != plan.before.get("local_path"):
                self.provider.remove_version(old["local_path"])
        return self.manifest.drop_retained_versions(self.name, self.request.provider)

    def _build_entry(self, plan: Plan, fields: dict, installed_now: bool, retained=None) -> dict:
        req, before = self.request, plan.before or {}
        detected = fields.get("capabilities_detected") or {}
        overrides = req.capabilities if req.capabilities is not None else before.get("capability_overrides")
        files = fields["files"]
        now = iso()
        entry = new_entry(
            self.name, req.provider,
            display_name=req.display_name or before.get("display_name") or self.name.rsplit("/", 1)[-1],
            status="installed", size_bytes=sum(f["size"] for f in files),
            capabilities=merge_overrides(detected, overrides), local_path=fields.get("local_path"),
            sha256=files_digest(files), installed_at=now if installed_now else before.get("installed_at") or now,
            updated_at=now, runtime=req.runtime or before.get("runtime") or DEFAULT_RUNTIMES.get(req.provider), revision=fields.get("revision"),
            files=files, active=bool(before.get("active", False)), active_runtime=before.get("active_runtime"))
        entry["requested_revision"] = fields.get("requested_revision") or before.get("requested_revision")
        entry["detected_capabilities"] = detected
        if overrides is not None:
            entry["capability_overrides"] = copy.deepcopy(overrides)
        for key in ("source", "allow_patterns", "ignore_patterns"):
            if key in fields or key in before:
                entry[key] = fields.get(key, before.get(key))
        if self.provider.permissions:
            entry["permissions"] = self.provider.permissions.record()
        elif before.get("permissions"):
            entry["permissions"] = before["permissions"]
        if retained:
            entry["retained_versions"] = retained
        elif before.get("retained_versions") and not installed_now:
            entry["retained_versions"] = before["retained_versions"]
        return entry

    def _record(self, plan: Plan, fields: dict, installed_now: bool, retained=None) -> dict:
        return self.manifest.record_install(self._build_entry(plan, fields, installed_now, retained))

    # -- results -------------------------------------------------------------------------------------
    def predicted_entry(self, plan: Plan) -> dict | None:
        """The entry a real run would write (check mode); digests not yet known are None."""
        if plan.action in ("remove", "discard_staging"):
            return None
        if plan.action in ("none", "repair", "prune"):
            after = copy.deepcopy(plan.before)
            if after is not None and plan.action == "repair":
                after["status"] = "installed"
            if after is not None and plan.action == "prune":
                after.pop("retained_versions", None)
            return after
        if plan.action in ("metadata", "permissions"):
            return dict(copy.deepcopy(plan.before), **copy.deepcopy(plan.metadata))
        target = plan.target
        predicted = self.provider.predict_capabilities(target)
        self.capabilities_predicted = predicted is not None
        if predicted is None:
            self.warnings.append(
                f"Check mode cannot predict the capabilities of {self.name} with provider {self.request.provider} "
                "before it is installed; they are shown as unknown (null) and detected by the real run.")
        fields = {"files": [f.record() for f in target.files], "local_path": target.local_path,
                  "revision": target.revision, "requested_revision": target.requested_revision,
                  "capabilities_detected": predicted or {}}
        fields.update({k: v for k, v in target.extra.items() if not k.startswith("_")})
        return self._build_entry(plan, fields, installed_now=plan.action in ("install", "record", "update"))

    def result(self, plan: Plan, after: dict | None, operation: dict | None) -> dict:
        before = plan.before
        out = {
            "changed": plan.changed,
            "action": plan.action,
            "name": self.name,
            "provider": self.request.provider,
            "state": self.request.state,
            "model": after,
            "plan": plan.as_dict(),
            "operation": operation,
            "bytes_downloaded": self.progress.transferred if self.progress else 0,
            "warnings": list(self.warnings) + self.provider.tls.warnings(),
            "diff": {"before": _diff_view(before, self.diff_detail), "after": _diff_view(after, self.diff_detail)},
        }
        if plan.permissions_before is not None and out["diff"]["before"]:
            out["diff"]["before"]["permissions"] = plan.permissions_before
        if self.capabilities_predicted is not None:
            out["plan"]["capabilities_predicted"] = self.capabilities_predicted
        for key in ("revision", "requested_revision", "local_path", "size_bytes", "capabilities"):
            out[key] = (after or {}).get(key) if after else None
        return out


def _served_by(entry: dict) -> str:
    """Who serves an active model, for messages: every runtime instance recorded, else the runtime."""
    instances = [str(i) for i in entry.get("active_instances") or []]
    if instances:
        names = ", ".join(f"'{i}'" for i in instances)
        return f"the runtime instance{'s' if len(instances) > 1 else ''} {names}"
    runtime = entry.get("active_runtime")
    return f"the {runtime} runtime" if runtime else "a runtime"


def _short(revision) -> str:
    return str(revision)[:12] if revision else "nothing"


DIFF_SUMMARY_KEYS = ("name", "provider", "status", "revision", "requested_revision", "local_path", "runtime",
                     "display_name", "active", "allow_patterns", "ignore_patterns", "source", "retained_versions",
                     "permissions")


def _diff_view(entry: dict | None, detail: bool = False) -> dict:
    """The manifest entry as the diff shows it (timestamps left out: they always differ).

    A summary by default - files (count), size, revision, capabilities (the chat template as its
    length) - so that a model of hundreds of files is a few lines; ``detail``: the whole entry,
    every file with its digests."""
    if not entry:
        return {}
    if detail:
        return {k: v for k, v in entry.items() if k not in ("updated_at", "installed_at")}
    out = {k: entry[k] for k in DIFF_SUMMARY_KEYS if entry.get(k) not in (None, [], {})}
    files = entry.get("files") or []
    out["files"] = len(files)
    out["size_bytes"] = entry.get("size_bytes", sum(f.get("size", 0) for f in files))
    out["size"] = fmt_bytes(out["size_bytes"])
    caps = dict(entry.get("capabilities") or {})
    if isinstance(caps.get("prompt_template"), str):
        caps["prompt_template"] = f"({len(caps['prompt_template'])} characters)"
    out["capabilities"] = {k: v for k, v in caps.items() if k not in ("notes", "detected_from")}
    return out
