# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from ansible_collections.venom.models.plugins.doc_fragments.common import ModuleDocFragment
from ansible_collections.venom.models.plugins.module_utils.errors import LockTimeout, VenomError
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
from ansible_collections.venom.models.plugins.module_utils.module_support import common_argument_spec
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import RuntimeSpec
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.locks import FileLock, model_lock, runtime_lock


def _hold(path, ready, release, op_id):
    with FileLock(path, timeout=5, purpose="test holder", operation_id=op_id):
        ready.set()
        release.wait(30)


def test_timeout_names_the_holder(tmp_path):
    path = str(tmp_path / "locks" / "x.lock")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, ready, release, "op-123"))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.monotonic()
        with pytest.raises(LockTimeout) as err:
            FileLock(path, timeout=0.3).acquire()
        assert 0.25 <= time.monotonic() - start < 3
        assert f"pid {holder.pid}" in err.value.msg
        assert "op-123" in err.value.msg and "test holder" in err.value.msg
        assert "nothing to delete" in err.value.fix
    finally:
        release.set()
        holder.join(10)
    with FileLock(path, timeout=1):
        pass
    assert not os.path.exists(path), "lock files are removed on release"


def test_killed_holder_never_leaves_a_stale_lock(tmp_path):
    path = str(tmp_path / "k.lock")
    code = ("import sys,time; sys.path[:0]=sys.argv[2:];"
            "from ansible_collections.venom.models.plugins.module_utils.store.locks import FileLock;"
            "l=FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, path] + sys.path, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(LockTimeout):
        FileLock(path, timeout=0.2).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(path), "the killed holder left its file behind"
    start = time.monotonic()
    with FileLock(path, timeout=2):
        assert time.monotonic() - start < 1, "but the lock itself is free at once"


def test_not_reentrant(tmp_path):
    lock = FileLock(str(tmp_path / "r.lock"), timeout=1)
    with lock:
        with pytest.raises(VenomError, match="not re-entrant"):
            FileLock(str(tmp_path / "r.lock"), timeout=1).acquire()
    with FileLock(str(tmp_path / "r.lock"), timeout=1):
        pass


def _count(path, counter_file, n):
    for _iteration in range(n):
        with FileLock(path, timeout=60):
            with open(counter_file, encoding="ascii") as fh:
                value = int(fh.read())
            with open(counter_file, "w", encoding="ascii") as fh:
                fh.write(str(value + 1))


def test_mutual_exclusion_across_processes_with_removal(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    path = str(tmp_path / "c.lock")
    procs = [multiprocessing.Process(target=_count, args=(path, str(counter), 200)) for _proc in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert counter.read_text() == str(6 * 200), "no increment lost although lock files come and go"


def test_model_and_runtime_lock_paths_are_distinct_and_safe(tmp_path):
    a = model_lock(str(tmp_path), "huggingface", "org/a")
    b = model_lock(str(tmp_path), "huggingface", "org_a")
    r = runtime_lock(str(tmp_path), "vllm")
    assert len({a.path, b.path, r.path}) == 3
    for lock in (a, b, r):
        assert os.path.dirname(lock.path) == str(tmp_path / ".venom" / "locks")
    with a, b, r:
        pass


def test_one_lock_timeout_default_everywhere():
    """The library's lock waits, the requests of both subsystems and the modules' option share the
    documented default (they once said 60 and 600)."""
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["lock_timeout"]["default"]
    assert documented == 600
    assert FileLock("/tmp/x.lock").timeout == documented
    assert Manifest("/tmp/venom-models").lock_timeout == documented
    assert ModelRequest(name="org/m").lock_timeout == documented
    assert RuntimeSpec(name="vllm").lock_timeout == documented
    assert common_argument_spec()["lock_timeout"]["default"] == documented
