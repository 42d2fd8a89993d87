# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""scripts/mutation.py's bounds on mutmut's test processes: a wall-clock deadline signals the
process it was registered for and never a process that reused its pid later; their address space
is bounded."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                      "scripts", "mutation.py")
_spec = importlib.util.spec_from_file_location("venom_mutation_script", SCRIPT)
mutation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _timeouts(starts):
    sent, clock = [], Clock()
    guard = mutation.StaleSafeTimeouts(start_of=starts.get, kill=lambda pid, sig: sent.append((pid, sig)),
                                       clock=clock)
    guard._thread = threading.current_thread()   # pylint: disable=protected-access  # no watcher: fire_due by hand
    return guard, sent, clock


def test_a_process_still_running_at_its_deadline_gets_sigxcpu_then_and_not_before():
    guard, sent, clock = _timeouts({100: 7})
    guard.register(100, 30)
    clock.now += 29.9
    assert guard.fire_due() == pytest.approx(0.1) and not sent
    clock.now += 0.1
    assert guard.fire_due() is None and sent == [(100, signal.SIGXCPU)]


def test_a_pid_reused_by_another_process_before_the_deadline_is_not_signalled():
    starts = {100: 7}
    guard, sent, clock = _timeouts(starts)
    guard.register(100, 5)
    starts[100] = 9   # the mutant's process ended; a later process got its pid
    clock.now += 60
    assert guard.fire_due() is None and not sent


def test_an_ended_process_is_not_signalled_and_one_gone_before_it_was_registered_is_not_kept():
    starts = {100: 7}
    guard, sent, clock = _timeouts(starts)
    guard.register(100, 5)
    guard.register(200, 5)   # no such process any more
    del starts[100]
    clock.now += 60
    assert guard.fire_due() is None and not sent


def test_deadlines_fire_in_their_order_whatever_the_order_they_were_registered_in():
    guard, sent, clock = _timeouts({1: 1, 2: 2, 3: 3})
    guard.register(1, 30)
    guard.register(2, 10)
    guard.register(3, 20)
    clock.now += 15
    assert guard.fire_due() == 5 and sent == [(2, signal.SIGXCPU)]
    clock.now += 20
    assert guard.fire_due() is None and sent == [(2, signal.SIGXCPU), (3, signal.SIGXCPU), (1, signal.SIGXCPU)]


def test_a_start_time_names_one_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = mutation.process_start(child.pid)
        assert isinstance(start, int) and start > 0
        assert mutation.process_start(child.pid) == start
        assert mutation.process_start(os.getpid()) <= start, "this process started first"
    finally:
        child.kill()
        child.wait()
    assert mutation.process_start(child.pid) is None, "reaped: no such process"


def test_the_watcher_ends_a_real_process_that_outlives_its_deadline():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mutation.StaleSafeTimeouts().register(child.pid, 0.05)
        assert child.wait(timeout=10) == -signal.SIGXCPU
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_mutmut_and_its_test_processes_run_with_a_bounded_address_space():
    code = ("import resource\nprint(resource.getrlimit(resource.RLIMIT_AS))\n"
            "try:\n    b = bytearray(512 * 1024 * 1024)\nexcept MemoryError:\n    print('refused')\n")
    # pylint: disable-next=subprocess-popen-preexec-fn
    out = subprocess.run([sys.executable, "-c", code], preexec_fn=mutation.memory_bound(256),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [str((256 * 1024 * 1024, 256 * 1024 * 1024)), "refused"]
