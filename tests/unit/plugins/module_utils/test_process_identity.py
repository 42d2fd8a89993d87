# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A recorded process is alive only if its pid, start time and boot still match (store.procinfo)."""
from __future__ import annotations

import builtins
import io
import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.store import procinfo


def _own_stat_fields():
    with open("/proc/self/stat", "rb") as fh:
        data = fh.read()
    return data[data.rfind(b")") + 2:].split()


def _fake_proc(monkeypatch, files: dict):
    """/proc files of invented processes: {path: bytes or str}; other paths are read for real."""
    real_open = builtins.open

    def fake_open(path, mode="r", *args, **kwargs):
        if path in files:
            content = files[path]
            if content is None:
                raise FileNotFoundError(path)
            return io.BytesIO(content) if "b" in mode else io.StringIO(content)
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", fake_open)


def _stat_line(comm: bytes, state: bytes, start: int) -> bytes:
    rest = [b"1"] * 18 + [str(start).encode()] + [b"0"] * 30   # fields 4..21, 22 (start), 23..
    return b"4242 (" + comm + b") " + state + b" " + b" ".join(rest) + b"\n"


def test_the_start_time_of_this_process_is_field_22_of_its_stat():
    fields = _own_stat_fields()
    assert procinfo.proc_start_ticks(os.getpid()) == int(fields[19])
    assert procinfo.proc_start_ticks(str(os.getpid())) == int(fields[19]), "a pid read from a file as text"


@pytest.mark.parametrize("comm", [b"vllm", b"a b) c", b"))", b"python3 (x)"])
def test_a_command_name_with_spaces_or_parentheses_does_not_shift_the_fields(monkeypatch, comm):
    _fake_proc(monkeypatch, {"/proc/4242/stat": _stat_line(comm, b"S", 987654)})
    assert procinfo.proc_start_ticks(4242) == 987654
    assert procinfo.is_alive({"pid": 4242, "pid_start": 987654, "boot_id": None}, strict=True)


@pytest.mark.parametrize("content", [b"", b"4242 (x) S 1 2", b"4242 (x) S " + b"z " * 25, None])
def test_an_unreadable_or_short_stat_is_no_process(monkeypatch, content):
    _fake_proc(monkeypatch, {"/proc/4242/stat": content})
    assert procinfo.proc_start_ticks(4242) is None


def test_a_pid_that_is_not_a_number_or_not_running_is_no_process():
    assert procinfo.proc_start_ticks("not-a-pid") is None
    assert procinfo.proc_start_ticks(2 ** 22 + 12345) is None


def test_the_boot_id_is_the_kernel_s_without_its_newline(monkeypatch):
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
        assert procinfo.boot_id() == fh.read().strip() and "\n" not in procinfo.boot_id()
    _fake_proc(monkeypatch, {"/proc/sys/kernel/random/boot_id": None})
    assert procinfo.boot_id() is None


def test_the_identity_of_this_process_and_of_another(monkeypatch):
    me = procinfo.process_identity()
    assert me == {"pid": os.getpid(), "pid_start": procinfo.proc_start_ticks(os.getpid()),
                  "boot_id": procinfo.boot_id()}
    _fake_proc(monkeypatch, {"/proc/4242/stat": _stat_line(b"x", b"S", 77)})
    assert procinfo.process_identity(4242) == {"pid": 4242, "pid_start": 77, "boot_id": me["boot_id"]}


@pytest.mark.parametrize("identity", [None, {}, {"pid": None}, {"pid": "4242"}, {"pid_start": 1}])
def test_no_pid_is_no_live_process(identity):
    assert procinfo.is_alive(identity) is False and procinfo.is_alive(identity, strict=True) is False


def test_a_process_recorded_in_another_boot_is_gone(monkeypatch):
    me = procinfo.process_identity()
    assert procinfo.is_alive(me) and procinfo.is_alive(me, strict=True)
    other_boot = dict(me, boot_id="00000000-0000-0000-0000-000000000000")
    assert procinfo.is_alive(other_boot) is False and procinfo.is_alive(other_boot, strict=True) is False
    assert procinfo.is_alive(dict(me, boot_id=None)) and procinfo.is_alive(dict(me, boot_id=""), strict=True)
    monkeypatch.setattr(procinfo, "boot_id", lambda: None)   # no boot id to compare: the start time decides
    assert procinfo.is_alive(other_boot) and procinfo.is_alive(other_boot, strict=True)


def test_a_recycled_pid_is_another_process():
    me = procinfo.process_identity()
    assert procinfo.is_alive(dict(me, pid_start=me["pid_start"] + 1)) is False
    assert procinfo.is_alive(dict(me, pid_start=me["pid_start"] + 1), strict=True) is False
    assert procinfo.is_alive(dict(me, pid_start=None)) is True, "an old record without a start time: the pid decides"
    assert procinfo.is_alive(dict(me, pid_start=None), strict=True) is False, "strict: the start time must match"


@pytest.mark.parametrize("state,alive", [(b"S", True), (b"R", True), (b"D", True), (b"Z", False), (b"X", False),
                                         (b"x", False)])
def test_strictly_a_zombie_or_dead_process_is_gone(monkeypatch, state, alive):
    _fake_proc(monkeypatch, {"/proc/4242/stat": _stat_line(b"vllm", state, 55)})
    identity = {"pid": 4242, "pid_start": 55, "boot_id": None}
    assert procinfo.is_alive(identity, strict=True) is alive
    assert procinfo.is_alive(identity) is True, "not strict: a zombie still holds its pid"


def test_a_missing_process_is_gone_where_proc_exists(monkeypatch):
    _fake_proc(monkeypatch, {"/proc/4242/stat": None})
    assert procinfo.is_alive({"pid": 4242, "pid_start": None}) is False
    monkeypatch.setattr(procinfo.os, "kill", lambda pid, sig: None)
    assert procinfo.is_alive({"pid": 4242, "pid_start": 1}) is False, "with /proc, no stat means no process"


@pytest.mark.parametrize("kill_raises,alive", [(None, True), (ProcessLookupError, False), (PermissionError, True)])
def test_without_proc_a_signal_0_decides(monkeypatch, kill_raises, alive):
    _fake_proc(monkeypatch, {"/proc/4242/stat": None})
    real_isdir = os.path.isdir
    monkeypatch.setattr(procinfo.os.path, "isdir", lambda p: False if p == "/proc/self" else real_isdir(p))
    sent = []

    def kill(pid, sig):
        sent.append((pid, sig))
        if kill_raises:
            raise kill_raises()
    monkeypatch.setattr(procinfo.os, "kill", kill)
    assert procinfo.is_alive({"pid": 4242, "pid_start": 9, "boot_id": None}) is alive
    assert sent == [(4242, 0)]
