# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kill-at-random-points (issue 13): a Hugging Face install SIGKILLed at 20 random moments.

Each round starts an install of a multi-file model from the olah mirror in its own process and
SIGKILLs it after a random delay. After every kill: the manifest is valid, the model is never
``installed`` while incomplete, and the next round (the next run) requests again only files that
were not yet verified in the staging area (at most the one in flight, plus those never started).
When a round completes the install, the model is removed and the rounds go on.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest

ROUNDS = 20
REPO = "venom-test/kill-install"
FILES = 10
FILE_BYTES = 2 * 1024 * 1024

_INSTALL = """
import sys
from ansible_collections.venom.models.plugins.module_utils.models.operations import ModelOperations
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
req = ModelRequest(name=sys.argv[1], provider="huggingface", revision="main", endpoint=sys.argv[2],
                   models_dir=sys.argv[3], state=sys.argv[4], reserve_gb=0, lock_timeout=30)
ModelOperations(req).run()
"""


def _files() -> dict:
    rnd = random.Random(13)
    files = {"config.json": json.dumps({"model_type": "llama"}).encode()}
    for i in range(FILES):
        files[f"model-{i:05d}-of-{FILES:05d}.safetensors"] = rnd.randbytes(FILE_BYTES)
    return files


def _run(state: str, endpoint: str, models_dir: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen([sys.executable, "-c", _INSTALL, REPO, endpoint, models_dir, state], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _verified(models_dir: str) -> set:
    """The files the staging area holds verified (state.json of every staged version)."""
    out = set()
    staging = os.path.join(models_dir, ".venom", "staging")
    for root, _dirs, names in os.walk(staging):
        if "state.json" in names:
            with open(os.path.join(root, "state.json"), encoding="utf-8") as fh:
                out |= set(json.load(fh))
    return out


def _requested(olah, since: int) -> list:
    time.sleep(0.3)  # olah logs asynchronously
    lines = olah.log_tail(10 ** 8)[since:].splitlines()
    return [line for line in lines if f"/{REPO}/resolve/" in line and "GET " in line]


def test_sigkill_at_random_points_never_leaves_a_false_install(olah, tmp_path):
    files = _files()
    olah.create_repo(REPO, files)
    models = str(tmp_path / "models")
    rnd = random.Random(int(os.environ.get("VENOM_KILL_SEED", "1313")))
    # how long one whole install takes here (the kill points are spread over it)
    t0 = time.monotonic()
    proc = _run("present", olah.endpoint, models)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    full = time.monotonic() - t0
    assert _run("absent", olah.endpoint, models).wait(timeout=120) == 0
    kills = completed = 0
    for _round in range(ROUNDS):
        before = _verified(models)
        mark = len(olah.log_tail(10 ** 8))
        proc = _run("present", olah.endpoint, models)
        time.sleep(rnd.uniform(0.05, full))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        entry = Manifest(models).get(REPO, "huggingface")  # the manifest is valid (load raises otherwise)
        if entry is not None:
            assert entry["status"] == "installed"
            on_disk = {f: os.path.getsize(os.path.join(entry["local_path"], f)) for f in files}
            assert on_disk == {f: len(data) for f, data in files.items()}, "installed means complete"
        fetched = {line.split(f"/{REPO}/resolve/", 1)[1].split()[0].split("/", 1)[1] for line in _requested(olah, mark)}
        again = fetched & before
        assert not again, f"round {_round}: files verified before this run were downloaded again: {sorted(again)}"
        if code == -signal.SIGKILL:
            kills += 1
        if entry is not None:
            completed += 1
            assert _run("absent", olah.endpoint, models).wait(timeout=120) == 0
    # the next run after the last kill completes
    proc = _run("present", olah.endpoint, models)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    entry = Manifest(models).get(REPO, "huggingface")
    assert entry["status"] == "installed" and {f["path"] for f in entry["files"]} >= set(files)
    assert kills >= ROUNDS // 2, f"only {kills} of {ROUNDS} rounds were killed mid-run"
