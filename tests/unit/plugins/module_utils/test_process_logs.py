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
from tests.unit.plugins.module_utils.fake_clock import FakeClock

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


# -- issue 20, round 3: the limit to the byte, the defaults, the wait for the rotator ---------------

def test_a_log_that_reaches_its_limit_exactly_stays_and_one_byte_more_rotates_it(tmp_path):
    log = str(tmp_path / "rt.log")
    sink, pid = logsize.start_rotator(log, max_bytes=1024, keep=2)
    try:
        _write_all(sink, b"a" * 1000)
        assert wait_until(lambda: os.path.exists(log) and os.path.getsize(log) == 1000, 10)
        _write_all(sink, b"b" * 24)   # exactly 1,024 bytes: at the limit, not past it
        assert wait_until(lambda: os.path.getsize(log) == 1024, 10)
        assert not os.path.exists(log + ".1")
        _write_all(sink, b"c")   # one byte past the limit
        assert wait_until(lambda: os.path.exists(log + ".1"), 10)
        assert wait_until(lambda: os.path.getsize(log) == 1, 10)
        _write_all(sink, b"d" * 1024)   # 1 + 1,024 bytes would pass it: a second rotation
        assert wait_until(lambda: os.path.exists(log + ".2"), 10)
        _write_all(sink, b"e" * 1024)   # a third: the oldest is dropped (keep 2)
        assert wait_until(lambda: os.path.exists(log) and open(log, "rb").read() == b"e" * 1024, 10)
    finally:
        os.close(sink)
    logsize.wait_rotator(pid)
    assert open(log + ".2", "rb").read() == b"c", "the oldest file kept"
    assert open(log + ".1", "rb").read() == b"d" * 1024
    assert not os.path.exists(log + ".3")


def test_a_runtimes_log_is_rotated_at_100_mib_keeping_3_old_files_unless_told(tmp_path):
    assert (logsize.DEFAULT_MAX_BYTES, logsize.DEFAULT_KEEP) == (100 * 2 ** 20, 3)
    log = str(tmp_path / "rt.log")
    pid_file = str(tmp_path / "rt.pid")
    P.start_process([sys.executable, "-c", "import time; time.sleep(30)"], pid_file=pid_file, log_file=log,
                    name="quiet", startup_check=0, scope=None)
    try:
        rotators = _rotators(log)
        assert len(rotators) == 1 and P.proc_cmdline(rotators[0])[-3:] == [log, str(100 * 2 ** 20), "3"]
    finally:
        P.stop_pid_file(pid_file, stop_timeout=5)


def test_the_rotator_is_given_the_absolute_log_path_and_whole_numbers(tmp_path, monkeypatch):
    spawned = []

    def spawn(exe, argv, env, stdin=None):
        spawned.append((exe, argv, env, stdin))
        return 4242
    monkeypatch.setattr(logsize, "spawn_detached", spawn)
    monkeypatch.chdir(tmp_path)
    sink, pid = logsize.start_rotator("rt.log", max_bytes=2048.9, keep=2.0, python="/opt/py/bin/python")
    os.close(sink)
    exe, argv, _env, stdin = spawned[0]
    assert pid == 4242 and exe == "/opt/py/bin/python" and argv[:2] == ["/opt/py/bin/python", "-c"]
    assert argv[2] == logsize.ROTATOR and argv[3:] == [str(tmp_path / "rt.log"), "2048", "2"]
    assert isinstance(stdin, int)
    monkeypatch.setattr(sys, "executable", "")   # an embedding interpreter that does not know its path
    sink, _pid = logsize.start_rotator("rt.log", max_bytes=4096, keep=1)
    os.close(sink)
    assert spawned[-1][0] == "/usr/bin/python3" and spawned[-1][1][0] == "/usr/bin/python3"


def test_the_wait_for_the_rotator_gives_up_after_two_seconds_by_default_asking_every_20_ms(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(logsize, "time", clock)
    child = subprocess.Popen(["sleep", "30"])
    try:
        logsize.wait_rotator(child.pid)
        looks = int(2.0 / 0.12345)   # each look at the fake clock is 0.12345 s later
        assert clock.sleeps == [0.02] * looks
        clock.sleeps.clear()
        logsize.wait_rotator(child.pid, timeout=0.5)
        assert clock.sleeps == [0.02] * int(0.5 / 0.12345)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
