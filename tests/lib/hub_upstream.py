# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A second olah that plays the Hugging Face Hub for a mirror (venom.models.mirror), with the
bytes it sends counted: what leaves "the outside world" towards the fleet.

An olah in online mode asks its upstream ``HEAD/GET /api/models/<org>/<name>`` (the repository
without a revision) before it serves anything. olah 0.5.4 in offline mode answers that route only
from its cache records (``<repos-path>/api/models/<org>/<name>/revision/<sha>/meta_head.json``,
a ``{"sha", "lastModified"}`` document), not from the git repositories it serves. ``Hub`` writes
that record for each repository it creates, so the upstream answers like the Hub: the newest
commit of ``main``. Everything else (revisions, trees, files) comes from the git repositories, as
``tests/lib/olah_env.py`` describes.

``Hub.counter`` (tests/lib/egress_proxy.py) sits in front of the olah: the mirror is pointed at
``Hub.netloc``, and ``counter.received`` is the fleet's egress in bytes.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile

from tests.lib.egress_proxy import EgressCounter
from tests.lib.olah_mirror import OlahMirror, olah_venv


class Hub:
    """``with Hub() as hub:`` an offline olah with a byte counter in front of it."""

    def __init__(self, root: str | None = None, venv: str | None = None):
        self._owned = root is None
        self.root = root or tempfile.mkdtemp(prefix="venom-hub-")
        os.makedirs(self.root, exist_ok=True)
        self.olah = OlahMirror(self.root, venv or olah_venv())
        self.counter: EgressCounter | None = None

    @property
    def netloc(self) -> str:
        """host:port the mirror uses as its hf-netloc (through the counter)."""
        return self.counter.netloc

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def create(self, name: str, files: dict) -> int:
        """Publish a repository; its size in bytes (what a full download transfers)."""
        repo = self.olah.create_repo(name, files)
        when = datetime.datetime.now(datetime.timezone.utc).isoformat()
        record = os.path.join(self.root, "repos", "api", "models", name, "revision", repo.head, "meta_head.json")
        os.makedirs(os.path.dirname(record), exist_ok=True)
        with open(record, "w", encoding="utf-8") as fh:
            json.dump({"id": name, "sha": repo.head, "lastModified": when}, fh)
        return sum(len(data) for data in repo.files.values())

    def start(self) -> "Hub":
        if not self.olah.repos:  # olah's readiness probe asks for a repository it serves
            self.create("venom-hub/ready", {"README.md": b"readiness probe\n"})
        self.olah.start()
        self.counter = EgressCounter(("127.0.0.1", self.olah.port))
        return self

    def stop(self) -> None:
        if self.counter:
            self.counter.stop()
        self.olah.stop()
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Hub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
