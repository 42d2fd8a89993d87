# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The base of the providers whose installed model is a tree of files in ``models_dir`` (huggingface, local).

A version of such a model lives in ``<models_dir>/<provider>/<model name...>/<version key>/``;
its interrupted downloads or copies in ``<models_dir>/.venom/staging/<prefix>-<name key>/<version
key>/`` (``staging.StagingArea``). What is the same for every such provider lives here, once:

* the places (``version_dir``, ``staging_root``, ``staging``, ``model_root``);
* the offline checks (``quick_check``: stat only; ``verify``: every file hashed);
* removal (``remove``, ``remove_version``, ``discard_staging``): always through
  ``remove_tree_inside``, which resolves the path and refuses one outside the provider's
  directory (a symbolic link planted in the store is never followed out of it), and each removal
  prunes the model's directories left empty, up to ``models_dir`` (never above);
* the staging area's size (``staging_bytes``, ``has_staging``).

A subclass says only what differs: its ``name``, its staging ``prefix``, the ``version_key`` of a
version id, and how it resolves, installs and repairs (``providers.Provider``).
"""
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.models.providers import Provider
from ansible_collections.venom.models.plugins.module_utils.models.staging import (
    StagingArea, hash_problems, normalized_selection, prune_empty_parents, remove_tree_inside, stat_problems)
from ansible_collections.venom.models.plugins.module_utils.store.atomic import dir_size
from ansible_collections.venom.models.plugins.module_utils.store.paths import keyed_file_name
from ansible_collections.venom.models.plugins.module_utils.store.validation import safe_join, validate_model_name


class FileTreeProvider(Provider):
    """A provider whose installed versions are directories of files under ``<models_dir>/<name>/``."""

    prefix = ""  # the staging directory's prefix (``hf``, ``local``)

    def __init__(self, request, paths):
        super().__init__(request, paths)
        self.model_id = validate_model_name(request.name, self.name)
        self.selection = normalized_selection(request.allow_patterns, request.ignore_patterns)

    def canonical_name(self) -> str:
        return self.model_id

    # -- places --------------------------------------------------------------------------------------
    def version_key(self, version: str) -> str:
        """The directory name of ``version`` (the full id unless a provider shortens it)."""
        return version

    def model_root(self) -> str:
        """``<models_dir>/<provider>/<model name...>``: the directory holding the model's versions."""
        return os.path.join(self.paths.provider_dir(self.name), *self.model_id.split("/"))

    def version_dir(self, version: str) -> str:
        return safe_join(self.paths.models_dir, self.name, *self.model_id.split("/"), self.version_key(version))

    def staging_root(self) -> str:
        return os.path.join(self.paths.staging_dir, keyed_file_name(self.prefix, self.model_id, ""))

    def staging(self, version: str) -> StagingArea:
        return StagingArea(os.path.join(self.staging_root(), self.version_key(version)))

    def same_selection(self, entry: dict) -> bool:
        """Whether ``entry`` was installed with the allow/ignore patterns this request asks for."""
        return {"allow_patterns": entry.get("allow_patterns"),
                "ignore_patterns": entry.get("ignore_patterns")} == self.selection

    # -- offline checks ------------------------------------------------------------------------------
    def quick_check(self, entry: dict) -> list:
        return stat_problems(self.model_dir(entry.get("local_path")), entry.get("files", []))

    def verify(self, entry: dict, progress) -> list:
        files = entry.get("files", [])
        progress.set_total(sum(f["size"] for f in files), 0, f"verifying {len(files)} file(s) of {self.model_id}")
        return hash_problems(self.model_dir(entry.get("local_path")), files, progress)

    # -- removal -------------------------------------------------------------------------------------
    def _remove_tree(self, path: str | None) -> bool:
        """Remove one version directory (confined to ``<models_dir>/<provider>/``) and prune what it leaves empty."""
        removed = bool(path) and remove_tree_inside(self.paths.provider_dir(self.name), path)
        if removed:
            prune_empty_parents(os.path.dirname(path), stop=self.paths.models_dir)
        return removed

    def remove(self, entry: dict) -> list:
        paths = [entry.get("local_path")] + [v.get("local_path") for v in entry.get("retained_versions") or []]
        removed = [p for p in paths if self._remove_tree(p)]
        # the versions may be gone already (removed by hand): the model's empty directories go all the same
        prune_empty_parents(self.model_root(), stop=self.paths.models_dir)
        return removed

    def remove_version(self, local_path: str) -> None:
        self._remove_tree(local_path)

    # -- the staging area ----------------------------------------------------------------------------
    def has_staging(self) -> bool:
        return os.path.isdir(self.staging_root())

    def staging_bytes(self) -> int:
        root = self.staging_root()
        return dir_size(root) if os.path.isdir(root) else 0

    def discard_staging(self) -> bool:
        root = self.staging_root()
        if not os.path.lexists(root):
            return False
        return remove_tree_inside(self.paths.staging_dir, root)
