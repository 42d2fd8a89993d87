# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Process-mode logs are rotated by size while the runtime keeps logging (real processes)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import logsize
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from tests.lib.servers import wait_until

CHATTY = ("import sys, time\n"
          "for i in range(10 ** 9):\n"
          "    print(f'line {i:08d} ' + 'x' * 80, flush=True)\n"
          "    (sys.stderr.write(f'err {i:08d}\\n'), sys.stderr.flush()) if i % 10 == 0 else None\n"
          "    time.sleep(0.002)\n")


def _numbers(path) -> list:
    with open(path, encoding="utf-8") as fh:
        return [int(n) for n in re.findall(r"^line (\d{8}) ", fh.read(), re.M)]


def _rotators(log_file: str) -> list:
    return [p.pid for p in P.all_procs() if log_file in P.proc_cmdline(p.pid)]


def test_a_log_past_its_limit_is_rotated_and_the_runtime_keeps_logging(tmp_path):
    log = str(tmp_path / "rt.log")
    pid_file = str(tmp_path / "rt.pid")
    rec = P.start_process([sys.executable, "-c", CHATTY], pid_file=pid_file, log_file=log, name="chatty",
                          log_max_bytes=8192, log_keep=2)
    try:
        assert len(_rotators(log)) == 1
        assert wait_until(lambda: os.path.exists(log + ".2"), 20), "the log was never rotated twice"
        before = _numbers(log)
        assert wait_until(lambda: _numbers(log) and _numbers(log)[-1] > (before or [0])[-1] + 20, 20), \
            "the runtime stopped logging after the rotation"
        assert P.record_alive(rec)
    finally:
        P.stop_pid_file(pid_file, stop_timeout=5)
    assert wait_until(lambda: not _rotators(log), 5), "the rotator ends with the runtime"
    # the files are final now: read them without racing a rotation
    assert not os.path.exists(log + ".3"), "more old files than log_keep"
    for path in (log, log + ".1", log + ".2"):
        assert os.path.getsize(path) <= 8192, (path, os.path.getsize(path))
    older, old, current = _numbers(log + ".2"), _numbers(log + ".1"), _numbers(log)
    joined = older + old + current
    assert joined == list(range(joined[0], joined[0] + len(joined))), "no line lost across the rotations"
    assert "err " in open(log + ".2", encoding="utf-8").read() + open(log + ".1", encoding="utf-8").read()
    assert oct(os.stat(log).st_mode & 0o777) == "0o640"


def test_rotation_off_appends_without_limit(tmp_path):
    log = str(tmp_path / "rt.log")
    pid_file = str(tmp_path / "rt.pid")
    P.start_process([sys.executable, "-c", CHATTY], pid_file=pid_file, log_file=log, name="chatty",
                    log_max_bytes=None)
    try:
        assert wait_until(lambda: os.path.getsize(log) > 20000, 20)
        assert not os.path.exists(log + ".1") and not _rotators(log)
    finally:
        P.stop_pid_file(pid_file, stop_timeout=5)


def test_bad_limits_are_refused(tmp_path):
    with pytest.raises(ValueError, match="max_bytes >= 1024 and keep >= 1"):
        logsize.start_rotator(str(tmp_path / "x.log"), max_bytes=10, keep=1)
    with pytest.raises(ValueError, match="keep >= 1"):
        logsize.validate(4096, 0)


def test_the_smallest_limits_are_accepted():
    logsize.validate(1024, 1)
    with pytest.raises(ValueError, match=r"got 1023, 1"):
        logsize.validate(1023, 1)


def _write_all(fd, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def test_the_rotator_keeps_whole_writes_rotates_past_the_limit_and_is_reaped(tmp_path):
    log = str(tmp_path / "rt.log")
    sink, pid = logsize.start_rotator(log, max_bytes=1024, keep=1)
    try:
        assert P.proc_cmdline(pid)[:2] == [sys.executable, "-c"]
        assert P.proc_cmdline(pid)[-3:] == [log, "1024", "1"]
        # the rotator gets none of the runtime's environment (secrets stay with the runtime)
        assert P.proc_environ(pid) == {"PATH": os.defpath, "LC_ALL": "C"}
        _write_all(sink, b"a" * 1000)
        assert wait_until(lambda: os.path.exists(log) and os.path.getsize(log) == 1000, 10)
        _write_all(sink, b"b" * 100)   # 1,100 bytes would pass the limit: log becomes log.1
    finally:
        os.close(sink)
    logsize.wait_rotator(pid)   # returns once the rotator wrote its last bytes and was reaped
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert open(log + ".1", "rb").read() == b"a" * 1000
    assert open(log, "rb").read() == b"b" * 100


def test_a_rotator_whose_python_cannot_run_fails_the_start(tmp_path):
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        logsize.start_rotator(str(tmp_path / "rt.log"), python=str(tmp_path / "no-python"))
    assert set(os.listdir("/proc/self/fd")) == before, "no pipe end is left open"


def test_the_wait_for_a_rotator_that_does_not_end_gives_up_after_its_timeout():
    child = subprocess.Popen(["sleep", "30"])
    try:
        logsize.wait_rotator(child.pid, timeout=0.1)
        assert child.poll() is None, "still running: the wait gave up instead of hanging"
    finally:
        child.kill()
        child.wait()
