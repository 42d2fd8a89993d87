# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the library keeps its files under ``models_dir``.

Layout::

    <models_dir>/manifest.json              the manifest (one reader/writer: manifest.py)
    <models_dir>/huggingface/<org>/<name>/<commit>/...   installed Hugging Face snapshots
    <models_dir>/local/<name>/<digest12>/...             adopted local models
    <models_dir>/.venom/locks/              inter-process locks (fcntl; never stale)
    <models_dir>/.venom/operations/         the operations journal, one JSON file per operation
    <models_dir>/.venom/staging/            downloads in progress (resumable), inside models_dir
    <models_dir>/.venom/records/            one copy of each manifest entry, to rebuild a lost manifest
"""
from __future__ import annotations

import hashlib
import os
import re

from ansible_collections.venom.models.plugins.module_utils.store.safeio import check_dir, strict_modes

DEFAULT_MODELS_DIR = "/var/lib/venom/models"
MANIFEST_NAME = "manifest.json"
STATE_DIR_NAME = ".venom"


class StatePaths:
    """Paths of one models directory. Creates nothing until ``ensure()`` is called."""

    def __init__(self, models_dir: str | None = None):
        models_dir = models_dir or DEFAULT_MODELS_DIR
        if not os.path.isabs(models_dir):
            models_dir = os.path.abspath(models_dir)
        self.models_dir = os.path.normpath(models_dir)
        self.manifest = os.path.join(self.models_dir, MANIFEST_NAME)
        self.state_dir = os.path.join(self.models_dir, STATE_DIR_NAME)
        self.locks_dir = os.path.join(self.state_dir, "locks")
        self.operations_dir = os.path.join(self.state_dir, "operations")
        self.staging_dir = os.path.join(self.state_dir, "staging")
        self.records_dir = os.path.join(self.state_dir, "records")

    @classmethod
    def of(cls, models_dir: "str | StatePaths | None") -> "StatePaths":
        """``models_dir`` as paths: the object itself when it is one, else the paths of the directory it names."""
        return models_dir if isinstance(models_dir, cls) else cls(models_dir)

    def ensure(self) -> "StatePaths":
        """Create the directory skeleton (mode 0755, state dirs 0750). Safe to call often.

        Refuses (ValidationError) a state directory that is a symlink and, as root, a models_dir
        or ``.venom`` that another user could change (see ``safeio``).
        """
        os.makedirs(self.models_dir, mode=0o755, exist_ok=True)
        self.check()
        for d in (self.state_dir, self.locks_dir, self.operations_dir, self.staging_dir, self.records_dir):
            if not os.path.isdir(d) or os.path.islink(d):
                check_dir(d, "state directory")
                os.makedirs(d, mode=0o750, exist_ok=True)
        self.check()
        return self

    def check(self) -> "StatePaths":
        """Refuse what could redirect a root run (symlinked state dirs, foreign-owned dirs); creates nothing."""
        if os.path.isdir(self.models_dir):
            strict_modes(self.models_dir, os.stat(self.models_dir), "models_dir")
        check_dir(self.state_dir, "state directory", strict=True)
        for d in (self.locks_dir, self.operations_dir, self.staging_dir, self.records_dir):
            check_dir(d, "state directory")
        return self

    def provider_dir(self, provider: str) -> str:
        return os.path.join(self.models_dir, provider)

    def __repr__(self) -> str:
        return f"StatePaths({self.models_dir!r})"


def keyed_file_name(kind: str, key: str, ext: str) -> str:
    """A safe, unique, readable file name for an arbitrary key (model name, runtime name).

    ``keyed_file_name("model", "huggingface:org/a", ".lock")`` → ``model-huggingface_org_a-<hash12>.lock``
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{kind}-{slug}-{digest}{ext}"
