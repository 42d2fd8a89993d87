# SPDX-License-Identifier: GPL-3.0-or-later
"""The process-tree start/stop on real (small) process trees: forks, re-parented orphans,
children that leave the session, SIGTERM-deaf processes, recycled PIDs, busy ports."""
from __future__ import annotations

import errno
import json
import re
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.runtimes import spawn
from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from tests.lib.ports import free_port
from tests.lib.servers import wait_until
from tests.unit.plugins.module_utils.fake_clock import FakeClock

# A small server that behaves like vLLM's tree: a listening parent with a child and a grandchild.
TREE = textwrap.dedent("""
    import os, signal, socket, sys, time
    mode, port = sys.argv[1], int(sys.argv[2])
    deaf = mode == "deaf"
    def loop():
        if deaf:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(0.2)
    if os.fork() == 0:
        if mode == "escape":
            os.setsid()
        if os.fork() == 0:
            loop()
        loop()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    print("ready", os.environ.get("GREETING", ""), flush=True)
    loop()
""")


@pytest.fixture
def tree(tmp_path):
    """Start the tree in process mode; yields a starter; stops whatever is left afterwards."""
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    started = []

    def start(mode="normal", port=None, **kwargs):
        port = port or free_port()
        pid_file = str(tmp_path / f"{mode}.pid")
        log_file = str(tmp_path / f"{mode}.log")
        env = dict(os.environ, GREETING="hello")
        rec = P.start_process([sys.executable, str(script), mode, str(port)], pid_file=pid_file, log_file=log_file,
                              env=env, name=f"tree-{mode}", port=port, host="127.0.0.1", **kwargs)
        started.append(rec)
        assert wait_until(lambda: P.port_in_use("127.0.0.1", port), 10), P.tail_file(log_file)
        assert wait_until(lambda: len(P.find_tree(rec)) == 3, 10), P.find_tree(rec)
        return rec, pid_file, log_file, port

    yield start
    for rec in started:
        for proc in P.find_tree(rec).values():
            os.kill(proc.pid, signal.SIGKILL)


def _alive(pids):
    return [p for p in pids if (proc := P.read_proc(p)) is not None and not proc.zombie]


def test_start_writes_pid_file_log_and_marker(tree):
    rec, pid_file, log_file, _port = tree()
    on_disk = json.loads(open(pid_file, encoding="utf-8").read())
    assert on_disk == rec
    assert oct(os.stat(pid_file).st_mode & 0o777) == "0o640"
    assert rec["pid_start"] == P.read_proc(rec["pid"]).start
    assert P.record_alive(rec)
    proc = P.read_proc(rec["pid"])
    assert proc.sid == rec["pid"] and os.getpgid(rec["pid"]) == rec["pid"], "not in its own session and process group"
    for pid in P.find_tree(rec):
        assert P.proc_environ(pid)[P.MARKER_ENV] == rec["marker"]
    assert wait_until(lambda: any(line.startswith("ready hello") for line in P.tail_file(log_file)), 10)
    assert "=== venom.models: starting tree-normal" in "\n".join(P.tail_file(log_file))
    assert os.readlink(f"/proc/{rec['pid']}/fd/0") == os.devnull


def test_stop_takes_down_the_whole_tree_and_frees_the_port(tree):
    rec, pid_file, _log, port = tree()
    pids = sorted(P.find_tree(rec))
    res = P.stop_pid_file(pid_file, stop_timeout=10)
    assert res.found == pids and res.killed == [] and sorted(res.terminated) == pids
    assert _alive(pids) == []
    assert res.port_free is True and not P.port_in_use("127.0.0.1", port)
    assert not os.path.exists(pid_file)
    assert res.duration < 5


def test_sigterm_deaf_processes_are_killed_after_the_timeout(tree):
    rec, pid_file, _log, _port = tree("deaf")
    pids = sorted(P.find_tree(rec))
    t0 = time.monotonic()
    res = P.stop_pid_file(pid_file, stop_timeout=1.0)
    assert time.monotonic() - t0 >= 1.0
    assert res.killed == pids
    assert _alive(pids) == []


@pytest.mark.parametrize("stop_timeout", [0, 1.5])
def test_stop_timeout_is_honoured_in_both_directions(tree, stop_timeout):
    """SIGKILL comes after stop_timeout, not before it and not much after it (0: at once)."""
    rec, pid_file, _log, _port = tree("deaf")
    pids = sorted(P.find_tree(rec))
    t0 = time.monotonic()
    res = P.stop_pid_file(pid_file, stop_timeout=stop_timeout)
    took = time.monotonic() - t0
    assert stop_timeout <= took < stop_timeout + 4, f"took {took:.2f}s for stop_timeout {stop_timeout}"
    assert res.killed == pids and res.terminated == []
    assert _alive(pids) == []


def test_orphans_of_a_killed_server_are_found_and_stopped(tree):
    rec, pid_file, _log, port = tree()
    children = sorted(set(P.find_tree(rec)) - {rec["pid"]})
    os.kill(rec["pid"], signal.SIGKILL)
    assert wait_until(lambda: not P.record_alive(rec), 10)
    os.waitpid(rec["pid"], 0)
    assert _alive(children) == children, "the children should outlive their parent (re-parented)"
    assert all(P.read_proc(c).ppid != rec["pid"] for c in children)
    assert sorted(P.find_tree(rec)) == children
    res = P.stop_pid_file(pid_file, stop_timeout=10)
    assert res.found == children
    assert _alive(children) == []
    assert not P.port_in_use("127.0.0.1", port)


def test_children_that_left_the_session_are_found_by_marker(tree):
    rec, pid_file, _log, _port = tree("escape")
    members = P.find_tree(rec)
    escaped = [p for p in members.values() if p.sid != rec["sid"]]
    assert len(escaped) == 2
    os.kill(rec["pid"], signal.SIGKILL)
    os.waitpid(rec["pid"], 0)
    assert sorted(P.find_tree(rec)) == sorted(p.pid for p in escaped)
    P.stop_pid_file(pid_file, stop_timeout=10)
    assert _alive([p.pid for p in escaped]) == []


def test_a_recycled_pid_is_never_signalled(tmp_path):
    bystander = os.posix_spawn("/bin/sleep", ["sleep", "30"], dict(os.environ))
    try:
        start = P.read_proc(bystander).start
        rec = {"kind": P.PID_FILE_KIND, "name": "ghost", "pid": bystander, "pid_start": start - 1,
               "boot_id": None, "sid": bystander, "marker": "ghost:0", "port": None, "host": None}
        pid_file = tmp_path / "ghost.pid"
        pid_file.write_text(json.dumps(rec))
        assert not P.record_alive(rec)
        assert P.find_tree(rec) == {}
        res = P.stop_pid_file(str(pid_file), stop_timeout=1)
        assert res.found == [] and res.killed == []
        assert P.read_proc(bystander) is not None and not P.read_proc(bystander).zombie
        assert not pid_file.exists()
    finally:
        os.kill(bystander, signal.SIGKILL)
        os.waitpid(bystander, 0)


def test_start_refuses_a_busy_port_and_names_the_holder(tree, tmp_path):
    _rec, _pid_file, _log, port = tree()
    holder = P.port_holders(port)
    assert len(holder) == 1
    with pytest.raises(RuntimeControlError, match=rf"port {port} is already in use by {holder[0]} "):
        P.start_process([sys.executable, "-c", "pass"], pid_file=str(tmp_path / "x.pid"),
                        log_file=str(tmp_path / "x.log"), port=port, host="127.0.0.1")
    assert not (tmp_path / "x.pid").exists()


def test_a_process_that_dies_at_once_is_reported_with_its_log(tmp_path):
    pid_file = str(tmp_path / "bad.pid")
    with pytest.raises(RuntimeControlError, match=r"exited right after it was started(.|\n)*no such model: x") as err:
        P.start_process([sys.executable, "-c", "import sys; sys.exit('no such model: x')"], pid_file=pid_file,
                        log_file=str(tmp_path / "bad.log"), name="bad", startup_check=1.0)
    assert "no such model: x" in err.value.details["log_tail"][-1]
    assert not os.path.exists(pid_file)


def test_missing_executable_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeControlError, match="is not an executable file"):
        P.start_process([str(tmp_path / "nope")], pid_file=str(tmp_path / "p"), log_file=str(tmp_path / "l"))


def _zombie_children() -> list[int]:
    return [p.pid for p in P.all_procs() if p.ppid == os.getpid() and p.zombie]


def test_start_runs_in_cwd_and_leaves_the_callers_cwd_alone(tmp_path):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    before = os.getcwd()
    rec = P.start_process([sys.executable, "-c", "import time; time.sleep(30)"], pid_file=str(tmp_path / "p"),
                          log_file=str(tmp_path / "l"), cwd=str(workdir), name="sleeper")
    try:
        assert os.readlink(f"/proc/{rec['pid']}/cwd") == str(workdir)
        assert os.getcwd() == before
    finally:
        P.stop_tree(rec, stop_timeout=5)


def test_cpus_confine_the_runtime_and_what_it_starts(tmp_path):
    last = max(os.sched_getaffinity(0))
    child = "import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    rec = P.start_process([sys.executable, "-c", child], pid_file=str(tmp_path / "p"), log_file=str(tmp_path / "l"),
                          name="pinned", cpus=[last])
    try:
        assert os.sched_getaffinity(rec["pid"]) == {last}
        assert wait_until(lambda: [p for p in P.all_procs() if p.ppid == rec["pid"]], timeout=20)
        grandchild = next(p.pid for p in P.all_procs() if p.ppid == rec["pid"])
        assert os.sched_getaffinity(grandchild) == {last}, "a process the runtime starts inherits its CPUs"
        assert os.sched_getaffinity(0) != {last} or len(os.sched_getaffinity(0)) == 1, "the caller is not confined"
    finally:
        P.stop_tree(rec, stop_timeout=5)


def test_a_file_that_cannot_be_executed_raises_in_the_caller_and_leaves_no_child(tmp_path):
    script = tmp_path / "not-a-program"
    script.write_text("no shebang, not ELF\n")
    script.chmod(0o755)
    pid_file = tmp_path / "p"
    zombies = _zombie_children()
    with pytest.raises(OSError) as err:
        P.start_process([str(script)], pid_file=str(pid_file), log_file=str(tmp_path / "l"))
    assert err.value.errno == errno.ENOEXEC and err.value.filename == str(script)
    assert not pid_file.exists()
    assert _zombie_children() == zombies, "the child that failed to exec was not reaped"


def test_a_missing_working_directory_raises_naming_it(tmp_path):
    zombies = _zombie_children()
    with pytest.raises(FileNotFoundError) as err:
        P.start_process([sys.executable, "-c", "pass"], pid_file=str(tmp_path / "p"), log_file=str(tmp_path / "l"),
                        cwd=str(tmp_path / "gone"))
    assert err.value.filename == str(tmp_path / "gone")
    assert _zombie_children() == zombies, "the child that failed to start was not reaped"


def test_a_stop_that_leaves_processes_fails_naming_them(tree, monkeypatch):
    rec, _pid_file, _log, _port = tree()
    pids = sorted(P.find_tree(rec))
    monkeypatch.setattr(P, "_signal", lambda proc, sig: False)  # signals that never arrive
    with pytest.raises(RuntimeControlError, match="left processes running") as err:
        P.stop_tree(rec, stop_timeout=0.2, kill_grace=0.2)
    assert err.value.details["pids"] == pids
    for pid in pids:
        assert str(pid) in err.value.msg


def test_a_port_held_by_a_stranger_fails_the_stop(tmp_path):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        rec = P.start_process([sys.executable, "-c", "import time; time.sleep(30)"], pid_file=str(tmp_path / "p"),
                              log_file=str(tmp_path / "l"), name="sleeper")
        with pytest.raises(RuntimeControlError, match=rf"port {port} is still in use by {os.getpid()} "):
            P.stop_tree(rec, stop_timeout=5, port=port, host="127.0.0.1", port_grace=0.2)
        assert not P.record_alive(rec)


def test_broken_pid_file_is_refused(tmp_path):
    path = tmp_path / "x.pid"
    path.write_text("12345\n")
    with pytest.raises(RuntimeControlError, match="is not a venom.models PID file"):
        P.read_pid_file(str(path))
    assert P.read_pid_file(str(tmp_path / "absent.pid")) is None


def test_port_helpers_see_listeners_on_any_address():
    port = free_port()
    assert not P.port_in_use("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))
        s.listen()
        assert P.port_in_use("127.0.0.1", port)
        assert P.port_holders(port) == [os.getpid()]


# -- the transient systemd scope (issue 13, finding 10) ------------------------------------------

# A runtime whose child escapes everything but a control group: it double-forks, calls setsid and
# clears its environment (no marker), then writes its pid to argv[1].
ESCAPER = textwrap.dedent("""
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve(sys.executable, [sys.executable, "-c",
                      "import os, sys, time\\nopen(sys.argv[1], 'w').write(str(os.getpid()))\\n"
                      "while True: time.sleep(0.2)", sys.argv[1]], {})
        os._exit(0)
    os.wait()
    while True:
        time.sleep(0.2)
""")

FAKE_SYSTEMD_RUN = "#!/bin/sh\nwhile [ \"$1\" != \"--\" ]; do shift; done\nshift\nexec \"$@\"\n"


def test_scope_command_line_and_unit_name():
    unit = P.scope_unit_name("vllm-a", "vllm-a:0123456789abcdef0123")
    assert unit == "venom-runtime-vllm-a-0123456789ab.scope"
    assert P.scope_unit_name("x/y z", "x:ff") == "venom-runtime-x_y_z-ff.scope"
    assert P.scope_argv("/usr/bin/systemd-run", unit, "/opt/vllm/bin/python", ["python", "-m", "vllm", "--port", "1"]) == [
        "/usr/bin/systemd-run", "--scope", "--collect", "--quiet", f"--unit={unit}", "--",
        "/opt/vllm/bin/python", "-m", "vllm", "--port", "1"]


def test_a_scope_only_as_root_under_systemd_with_systemd_run(tmp_path):
    run = tmp_path / "systemd-run"
    run.write_text(FAKE_SYSTEMD_RUN)
    run.chmod(0o755)
    dirs = (str(tmp_path / "none"), str(tmp_path))
    assert P.scope_runner(euid=0, booted=True, dirs=dirs) == str(run)
    assert P.scope_runner(euid=1000, booted=True, dirs=dirs) is None, "polkit would ask a non-root run"
    assert P.scope_runner(euid=0, booted=False, dirs=dirs) is None, "no systemd as PID 1: no scope"
    assert P.scope_runner(euid=0, booted=True, dirs=(str(tmp_path / "none"),)) is None


def test_proc_cgroup_reads_v2_and_the_v1_systemd_hierarchy():
    scope = "/system.slice/venom-runtime-vllm-0123456789ab.scope"
    assert P.parse_proc_cgroup(f"0::{scope}\n") == scope
    assert P.parse_proc_cgroup(f"1:name=systemd:{scope}\n0::/init.scope\n") == scope, "hybrid: systemd's hierarchy"
    assert P.parse_proc_cgroup(f"12:cpu,cpuacct:/other\n1:name=systemd:{scope}\n") == scope
    assert P.parse_proc_cgroup("12:cpu,cpuacct:/other\n") is None and P.parse_proc_cgroup("") is None
    assert P.proc_cgroup(2 ** 22 + 1) is None, "no such process"


def _start_in_fake_scope(tmp_path, monkeypatch, script):
    """start_process through a stand-in systemd-run; /proc's cgroup and /sys/fs/cgroup stand-ins
    (no systemd here): the runtime's pid is put in the scope's cgroup.procs."""
    from ansible_collections.venom.models.plugins.module_utils.runtimes import systemd as SD  # pylint: disable=import-outside-toplevel
    run = tmp_path / "systemd-run"
    run.write_text(FAKE_SYSTEMD_RUN)
    run.chmod(0o755)
    monkeypatch.setattr(SD, "CGROUP_ROOT", str(tmp_path / "cgroup"))
    scoped = {}
    real_cgroup = P.proc_cgroup

    def fake_cgroup(pid):
        return scoped.get(pid) or real_cgroup(pid)
    monkeypatch.setattr(P, "proc_cgroup", fake_cgroup)
    real_spawn = P.spawn_detached

    def spawn(exe, argv, env, **kw):
        pid = real_spawn(exe, argv, env, **kw)
        unit = argv[4].split("=", 1)[1]
        group = tmp_path / "cgroup" / "system.slice" / unit
        group.mkdir(parents=True)
        (group / "cgroup.procs").write_text(f"{pid}\n")
        scoped[pid] = f"/system.slice/{unit}"
        return pid
    monkeypatch.setattr(P, "spawn_detached", spawn)
    rec = P.start_process([sys.executable, str(script), str(tmp_path / "escaped.pid")], pid_file=str(tmp_path / "r.pid"),
                          log_file=str(tmp_path / "r.log"), name="scoped", scope=str(run), startup_check=0)
    return rec, tmp_path / "cgroup" / "system.slice" / rec["scope"] / "cgroup.procs"


def test_a_child_that_escapes_session_and_marker_is_stopped_through_the_scope(tmp_path, monkeypatch):
    script = tmp_path / "escaper.py"
    script.write_text(ESCAPER)
    rec, procs_file = _start_in_fake_scope(tmp_path, monkeypatch, script)
    escaped = None
    try:
        assert rec["scope"].startswith("venom-runtime-scoped-") and rec["cgroup"] == f"/system.slice/{rec['scope']}"
        assert json.loads((tmp_path / "r.pid").read_text())["cgroup"] == rec["cgroup"]
        assert wait_until(lambda: (tmp_path / "escaped.pid").exists() and (tmp_path / "escaped.pid").read_text(), 10)
        escaped = int((tmp_path / "escaped.pid").read_text())
        assert P.read_proc(escaped).sid != rec["sid"] and P.MARKER_ENV not in (P.proc_environ(escaped) or {})
        procs_file.write_text(f"{rec['pid']}\n{escaped}\n")  # what the kernel does: a child stays in its group
        assert escaped in P.find_tree(rec)
        res = P.stop_tree(rec, stop_timeout=5)
        assert escaped in res.found and _alive([rec["pid"], escaped]) == []
    finally:
        for pid in (rec["pid"], escaped):
            if pid and _alive([pid]):
                os.kill(pid, signal.SIGKILL)


def test_a_scope_that_systemd_run_cannot_make_fails_the_start_with_its_message(tmp_path):
    run = tmp_path / "systemd-run"
    run.write_text("#!/bin/sh\necho 'Failed to start transient scope unit: Access denied' >&2\nexit 1\n")
    run.chmod(0o755)
    with pytest.raises(RuntimeControlError, match="not placed in its systemd scope") as err:
        P.start_process([sys.executable, "-c", "import time; time.sleep(30)"], pid_file=str(tmp_path / "p"),
                        log_file=str(tmp_path / "l"), name="sleeper", scope=str(run), log_max_bytes=None)
    assert "Access denied" in err.value.msg and not (tmp_path / "p").exists()


def test_no_scope_where_systemd_is_not_pid_1(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "systemd_booted", lambda: False)
    rec = P.start_process([sys.executable, "-c", "import time; time.sleep(30)"], pid_file=str(tmp_path / "p"),
                          log_file=str(tmp_path / "l"), name="sleeper", startup_check=0)
    try:
        assert rec["scope"] is None and rec["cgroup"] is None and P.scope_pids(rec) == []
    finally:
        P.stop_tree(rec, stop_timeout=2)


# -- psutil (issue 19): discovery through psutil, identity by start ticks --------------------------

def test_every_holder_of_an_inherited_listening_socket_is_named():
    """A child that inherited the listening socket holds the port too; psutil.net_connections
    names one pid per socket, so port_holders asks each process."""
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        child = os.fork()
        if child == 0:  # holds the inherited socket until killed
            time.sleep(60)
            os._exit(0)
        try:
            assert sorted(P.port_holders(port)) == sorted([os.getpid(), child])
            assert P.port_in_use("127.0.0.1", port)
        finally:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)


class _Psutil59Process:
    """The shape of a psutil 5.9 Process (Debian 12's python3-psutil): ``connections`` only."""

    def __init__(self, conns):
        self.conns, self.kinds = conns, []

    def connections(self, kind="inet"):
        self.kinds.append(kind)
        return self.conns


class _Psutil6Process(_Psutil59Process):
    """The shape of a psutil >= 6 Process: ``net_connections``; ``connections`` is deprecated."""

    def net_connections(self, kind="inet"):
        self.kinds.append(kind)
        return self.conns

    def connections(self, kind="inet"):
        raise AssertionError("the deprecated alias was used")


def test_tcp_connections_work_with_psutil_59_and_6():
    import psutil
    old = _Psutil59Process(["c"])
    assert P.tcp_connections(old) == ["c"] and old.kinds == ["tcp"]
    new = _Psutil6Process(["n"])
    assert P.tcp_connections(new) == ["n"] and new.kinds == ["tcp"], "psutil >= 6: net_connections"
    with socket.socket() as s:  # psutil >= 6: net_connections, without the deprecated alias
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        conns = P.tcp_connections(psutil.Process())
        assert any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in conns)


def test_recorded_start_ticks_match_what_psutil_reports():
    """A record on disk holds the start in clock ticks (lock files, journals, PID files written
    before and after psutil): the process psutil finds is that record's process, and psutil's
    create_time is the same instant (ticks / CLK_TCK after boot)."""
    import psutil
    from ansible_collections.venom.models.plugins.module_utils.store.procinfo import is_alive, process_identity
    child = os.posix_spawn("/bin/sleep", ["sleep", "30"], dict(os.environ))
    try:
        rec = process_identity(child)
        assert rec["pid_start"] == P.read_proc(child).start and is_alive(rec, strict=True)
        created = psutil.Process(child).create_time()
        assert abs(created - (psutil.boot_time() + rec["pid_start"] / os.sysconf("SC_CLK_TCK"))) < 0.02
        assert not is_alive(dict(rec, pid_start=rec["pid_start"] - 1))  # a recycled pid: another process
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_without_psutil_a_start_names_the_package_and_facts_stay_null(tmp_path):
    """No ImportError traceback: starting a process-mode runtime raises MissingDependencyError
    naming psutil and the Debian package; identity (store/procinfo) and the facts' figures work."""
    import ansible_collections
    code = textwrap.dedent(f"""
        import os, sys
        sys.modules["psutil"] = None  # as on a host without psutil
        from ansible_collections.venom.models.plugins.module_utils.errors import MissingDependencyError
        from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
        from ansible_collections.venom.models.plugins.module_utils.runtimes.backends import ProcessBackend
        from ansible_collections.venom.models.plugins.module_utils.store.procinfo import is_alive, process_identity
        assert is_alive(process_identity(), strict=True)
        assert P.tree_rss_bytes([os.getpid()]) is None
        try:
            P.start_process(["/bin/true"], pid_file={str(tmp_path / "x.pid")!r}, log_file={str(tmp_path / "x.log")!r})
        except MissingDependencyError as exc:
            print(exc)
        # a live runtime record (this process): running, but its tree is unknown without psutil
        P.atomic_write_json({str(tmp_path / "me.pid")!r}, dict(process_identity(), kind=P.PID_FILE_KIND, sid=None))
        backend = ProcessBackend(None, {str(tmp_path / "me.pid")!r}, {str(tmp_path / "x.log")!r})
        print("status", backend.status()["running"], "tree", backend.tree_pids())
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(list(ansible_collections.__path__)[0]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "The Python package 'psutil' is required" in out.stdout and "python3-psutil" in out.stdout
    assert "status True tree []" in out.stdout and not (tmp_path / "x.pid").exists()


# -- mutation round (issue 20): what the survivors of runtimes/process.py showed untested ----------

def test_a_start_that_dies_shows_the_last_20_lines_of_its_log_and_the_fix(tmp_path):
    script = "import sys\nfor i in range(30):\n    print(f'line {i}')\nsys.exit(3)\n"
    with pytest.raises(RuntimeControlError) as err:
        P.start_process([sys.executable, "-c", script], pid_file=str(tmp_path / "p"), log_file=str(tmp_path / "l"),
                        name="chatty", startup_check=1.0)
    tail = [f"line {i}" for i in range(10, 30)]
    assert err.value.details["log_tail"] == tail
    assert err.value.msg.endswith(":\n" + "\n".join(tail))
    assert "Read the log" in err.value.fix


def _fake_scope_wait(monkeypatch, groups, state="sleeping"):
    """``_wait_for_scope`` against a process whose control group reads ``groups`` one after the other."""
    seen = []

    def proc_cgroup(pid):
        seen.append(pid)
        return groups[min(len(seen), len(groups)) - 1]
    monkeypatch.setattr(P, "proc_cgroup", proc_cgroup)
    monkeypatch.setattr(P, "read_proc",
                        lambda pid: P.Proc(pid=pid, comm="python", state=state, ppid=1, sid=pid, start=1))
    return seen


def test_the_start_waits_until_systemd_run_moved_the_process_into_its_scope(monkeypatch):
    unit = "venom-runtime-a-0123456789ab.scope"
    seen = _fake_scope_wait(monkeypatch, ["/user.slice/session-1.scope"] * 3 + [f"/system.slice/{unit}/"])
    sleeps = []
    monkeypatch.setattr(P.time, "sleep", sleeps.append)
    assert P._wait_for_scope(4242, unit, timeout=30) == f"/system.slice/{unit}/"
    assert len(seen) == 4
    assert sleeps == [0.01] * 3, "asked every 10 ms: the start is not held up longer than that"


def test_a_process_never_placed_in_its_scope_is_given_up_after_the_timeout(monkeypatch):
    seen = _fake_scope_wait(monkeypatch, ["/user.slice/session-1.scope"])
    assert P._wait_for_scope(4242, "venom-runtime-a-0123456789ab.scope", timeout=0.05) is None
    assert len(seen) >= 2, "asked again until the timeout"


def test_a_zombie_or_a_process_without_a_cgroup_ends_the_scope_wait_at_once(monkeypatch):
    seen = _fake_scope_wait(monkeypatch, ["/user.slice/session-1.scope"], state="zombie")
    assert P._wait_for_scope(4242, "venom-runtime-a-0123456789ab.scope", timeout=1) is None
    assert len(seen) == 1
    seen = _fake_scope_wait(monkeypatch, [None])
    assert P._wait_for_scope(4242, "venom-runtime-a-0123456789ab.scope", timeout=1) is None
    assert len(seen) == 1


def test_a_control_group_whose_unit_name_has_a_colon_is_read_whole():
    # systemd allows ':' in unit names
    assert P.parse_proc_cgroup("0::/system.slice/app:1.scope\n") == "/system.slice/app:1.scope"
    assert P.parse_proc_cgroup("1:name=systemd:/system.slice/a:b:c.scope\n") == "/system.slice/a:b:c.scope"


def test_scope_unit_names_are_cut_at_64_characters_and_take_the_markers_random_part():
    assert P.scope_unit_name("n" * 100, "x:0123456789abcdef") == f"venom-runtime-{'n' * 64}-0123456789ab.scope"
    assert P.scope_unit_name("a:b", "a:b:0123456789abcdef") == "venom-runtime-a_b-0123456789ab.scope"


def test_the_memory_of_a_tree_adds_up_and_a_gone_process_counts_nothing(monkeypatch):
    real = P.psutil

    class Process:  # pylint: disable=too-few-public-methods
        def __init__(self, pid):
            if pid == 3:
                raise real.NoSuchProcess(pid)
            self.rss = pid * 1000

        def memory_info(self):
            return self
    monkeypatch.setattr(P, "psutil", type("FakePsutil", (), {"Process": Process, "Error": real.Error}))
    assert P.tree_rss_bytes([1, 3, 2]) == 3000
    assert P.tree_rss_bytes(["4"]) == 4000
    assert P.tree_rss_bytes([]) == 0


def test_a_stop_reports_what_it_found_signalled_and_killed_with_the_duration_in_milliseconds():
    res = P.StopResult(found=[3, 4, 5], terminated=[3, 4], killed=[5], duration=1.23456, port_free=True)
    assert res.as_dict() == {"found": [3, 4, 5], "terminated": [3, 4], "killed": [5], "duration": 1.235,
                             "port_free": True}
    assert P.StopResult(duration=0.0004).as_dict()["duration"] == 0.0


def test_a_log_tail_reads_only_the_last_bytes_of_a_large_log(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i:04d}\n" for i in range(1000)))   # 10 bytes a line
    assert P.tail_file(str(log), lines=1000, max_bytes=30) == ["line 0997", "line 0998", "line 0999"]
    assert P.tail_file(str(log), lines=2) == ["line 0998", "line 0999"]
    assert P.tail_file(str(log)) == [f"line {i:04d}" for i in range(960, 1000)], "40 lines by default"
    (tmp_path / "small.log").write_text("first\nsecond\n")
    assert P.tail_file(str(tmp_path / "small.log")) == ["first", "second"], "a log smaller than the limit: whole"
    assert P.tail_file(None) == [] and P.tail_file(str(tmp_path / "none.log")) == []


def test_a_log_with_bytes_that_are_not_utf8_is_shown_with_replacement_characters(tmp_path):
    (tmp_path / "bin.log").write_bytes(b"ok\nbad \xff\xfe byte\n")
    assert P.tail_file(str(tmp_path / "bin.log")) == ["ok", "bad \ufffd\ufffd byte"]


def test_processes_are_described_by_pid_name_state_and_the_start_of_their_command_line():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "x" * 200])
    try:
        assert wait_until(lambda: len(P.proc_cmdline(child.pid)) == 4, 10)
        proc = P.read_proc(child.pid)
        cmd = " ".join(P.proc_cmdline(child.pid))
        text = P.describe_pids([child.pid])
        expected = rf"{child.pid} \({re.escape(proc.comm)}, state [a-z-]+: {re.escape(cmd[:120])}\)"
        assert re.fullmatch(expected, text), text
    finally:
        child.kill()
        child.wait()
    assert P.describe_pids([child.pid]) == f"{child.pid} (?)", "a process that is gone"
    assert P.describe_pids([2 ** 22 + 1, child.pid]) == f"{child.pid} (?), {2 ** 22 + 1} (?)", "by pid"


def _fake_scope(tmp_path, monkeypatch) -> tuple:
    """A scope's cgroup directory under a fake cgroup root, holding pid 4242; (its directory, its record)."""
    from ansible_collections.venom.models.plugins.module_utils.runtimes import systemd as SD  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(SD, "CGROUP_ROOT", str(tmp_path))
    unit = "venom-runtime-a-0123456789ab.scope"
    group = tmp_path / "system.slice" / unit
    group.mkdir(parents=True)
    (group / "cgroup.procs").write_text("4242\n")
    return group, {"scope": unit, "cgroup": f"/system.slice/{unit}"}


def test_the_scope_is_killed_at_once_through_its_cgroup_kill_file(tmp_path, monkeypatch):
    group, rec = _fake_scope(tmp_path, monkeypatch)
    assert P.kill_scope(rec) is False, "a kernel without cgroup.kill"
    (group / "cgroup.kill").write_text("")
    assert P.kill_scope(rec) is True
    assert (group / "cgroup.kill").read_text() == "1"
    (group / "cgroup.kill").write_text("")
    (group / "cgroup.procs").write_text("")
    assert P.kill_scope(rec) is False, "an empty scope is not killed"
    assert P.kill_scope({"scope": None, "cgroup": None}) is False
    assert (group / "cgroup.kill").read_text() == ""


def test_a_scope_kill_never_follows_a_symlink_and_reports_a_refused_write(tmp_path, monkeypatch):
    import stat  # pylint: disable=import-outside-toplevel
    group, rec = _fake_scope(tmp_path, monkeypatch)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (group / "cgroup.kill").symlink_to(target)
    assert P.kill_scope(rec) is False and target.read_text() == ""
    (group / "cgroup.kill").unlink()
    try:  # a file whose every write fails (as /dev/full): the kernel refusing the kill
        os.mknod(group / "cgroup.kill", stat.S_IFCHR | 0o600, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    assert P.kill_scope(rec) is False


def test_a_stop_checks_the_port_it_is_given_over_the_recorded_one(tmp_path):
    pid_file = str(tmp_path / "p")
    P.start_process(["sleep", "30"], pid_file=pid_file, log_file=str(tmp_path / "l"), name="sleeper",
                    startup_check=0, log_max_bytes=None, scope=None)
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        with pytest.raises(RuntimeControlError, match=f"sleeper stopped, but port {port} is still in use"):
            P.stop_pid_file(pid_file, stop_timeout=2, port=port, port_grace=0.1)


def test_a_stop_checks_the_port_on_the_address_the_runtime_was_recorded_with(tmp_path):
    with socket.socket() as other:   # 127.0.0.1:port is taken (bound, not listening); 127.0.0.2:port is free
        other.bind(("127.0.0.1", 0))
        port = other.getsockname()[1]
        pid_file = str(tmp_path / "p")
        rec = P.start_process(["sleep", "30"], pid_file=pid_file, log_file=str(tmp_path / "l"), name="sleeper",
                              port=port, host="127.0.0.2", startup_check=0, log_max_bytes=None, scope=None)
        res = P.stop_pid_file(pid_file, stop_timeout=2, port_grace=0.1)
        assert res.port_free is True and res.found == [rec["pid"]]


@pytest.mark.parametrize("rec", [{"kind": P.PID_FILE_KIND, "pid": 5},
                                 {"kind": P.PID_FILE_KIND, "pid": "5", "pid_start": 1},
                                 {"kind": "other", "pid": 5, "pid_start": 1}])
def test_a_pid_file_without_its_kind_pid_and_start_is_refused(tmp_path, rec):
    path = tmp_path / "x.pid"
    path.write_text(json.dumps(rec))
    with pytest.raises(RuntimeControlError, match="is not a venom.models PID file") as err:
        P.read_pid_file(str(path))
    assert "then delete the file" in err.value.fix


def test_a_stop_waits_for_the_port_only_as_long_as_it_is_told(tmp_path, monkeypatch):
    pid_file = str(tmp_path / "p")
    P.start_process(["sleep", "30"], pid_file=pid_file, log_file=str(tmp_path / "l"), name="sleeper",
                    startup_check=0, log_max_bytes=None, scope=None)
    asked = []

    def port_in_use(host, port):   # the port frees up on the third look
        asked.append((host, port))
        return len(asked) <= 2
    monkeypatch.setattr(P, "port_in_use", port_in_use)
    with pytest.raises(RuntimeControlError, match="port 1 is still in use"):
        P.stop_pid_file(pid_file, stop_timeout=2, port=1, port_grace=0)
    assert len(asked) == 2


def test_a_process_that_is_gone_is_not_signalled():
    child = subprocess.Popen(["true"])
    child.wait()   # reaped: the pid names no process now
    gone = P.Proc(pid=child.pid, comm="true", state="zombie", ppid=os.getpid(), sid=0, start=1)
    assert P._signal(gone, signal.SIGTERM) is False


def test_a_zombie_is_not_signalled():
    child = subprocess.Popen(["sleep", "0.2"])
    try:
        start = P.proc_start_ticks(child.pid)
        assert start is not None
        assert wait_until(lambda: (P.read_proc(child.pid) or P.Proc(0, "", "zombie", 0, 0, 0)).zombie, 10)
        assert P._signal(P.Proc(child.pid, "sleep", "zombie", os.getpid(), 0, start), signal.SIGTERM) is False
    finally:
        child.wait()


def test_without_pidfds_the_signal_goes_through_kill(monkeypatch):
    def no_pidfd(pid):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(P.os, "pidfd_open", no_pidfd)
    child = subprocess.Popen(["sleep", "30"])
    try:
        proc = P.read_proc(child.pid)
        assert P._signal(proc, signal.SIGTERM) is True
        assert child.wait(timeout=10) == -signal.SIGTERM

        def gone(pid, sig):
            raise ProcessLookupError(pid)
        monkeypatch.setattr(P.os, "kill", gone)   # it ended between the identity check and the kill
        other = subprocess.Popen(["sleep", "30"])
        try:
            assert P._signal(P.read_proc(other.pid), signal.SIGTERM) is False
        finally:
            monkeypatch.undo()
            other.kill()
            other.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _pidfds() -> set:
    """The descriptors of this process that are pidfds (other threads may open other kinds meanwhile)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]":
                found.add(fd)
        except OSError:
            pass
    return found


def test_a_signal_leaves_no_file_descriptor_open():
    child = subprocess.Popen(["sleep", "30"])
    try:
        proc = P.read_proc(child.pid)
        before = _pidfds()
        assert P._signal(proc, 0) is True
        assert _pidfds() == before, "the pidfd it opened is closed"
    finally:
        child.kill()
        child.wait()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_a_listener_on_another_local_address_or_on_ipv6_holds_the_port():
    with socket.socket() as other:
        other.bind(("127.0.0.2", 0))
        other.listen()
        port = other.getsockname()[1]
        assert P.port_in_use("127.0.0.1", port) is True, "vLLM on 0.0.0.0 would not bind"
    assert P.port_in_use(None, free_port()) is False
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    assert P.port_in_use("::1", free_port()) is False
    with socket.socket(socket.AF_INET6) as six:
        six.bind(("::1", 0))
        six.listen()
        assert P.port_in_use("127.0.0.1", six.getsockname()[1]) is True, "the IPv6 table is read too"


# -- the tree of a runtime, from a process table given to find_tree ------------------------------

def _p(pid, ppid, sid, start, state="sleeping"):
    return P.Proc(pid=pid, comm="python", state=state, ppid=ppid, sid=sid, start=start)


@pytest.fixture
def table(monkeypatch):
    """find_tree against a made-up process table: {pid: env} for the marker, no scope, this boot."""
    envs = {}
    monkeypatch.setattr(P, "proc_environ", envs.get)
    monkeypatch.setattr(P, "scope_pids", lambda rec: [])
    monkeypatch.setattr(P, "boot_id", lambda: "boot-1")
    return envs


REC = {"pid": 100, "pid_start": 50, "sid": 100, "boot_id": "boot-1", "marker": "vllm:abc"}


def test_the_tree_is_the_root_its_descendants_and_its_session(table):
    procs = [_p(100, 1, 100, 50), _p(101, 100, 100, 51), _p(102, 101, 999, 52), _p(103, 1, 100, 53),
             _p(200, 1, 200, 10), _p(201, 200, 200, 60)]
    assert sorted(P.find_tree(REC, procs)) == [100, 101, 102, 103], "a stranger's tree is not ours"


def test_a_recycled_root_and_its_session_are_not_ours(table):
    procs = [_p(100, 1, 100, 60), _p(101, 100, 100, 61)]   # pid 100 now started at 60, not 50
    assert P.find_tree(REC, procs) == {}
    assert P.find_tree(dict(REC, boot_id="boot-0"), [_p(100, 1, 100, 50), _p(101, 100, 100, 51)]) == {}, \
        "another boot: the same pid and start are another process"


def test_after_the_root_died_its_session_and_marked_orphans_are_found(table):
    procs = [_p(101, 1, 100, 55), _p(104, 1, 100, 40), _p(300, 1, 300, 70), _p(301, 300, 300, 71),
             _p(302, 1, 302, 45), _p(303, 1, 303, 80)]
    table.update({300: {P.MARKER_ENV: "vllm:abc"}, 302: {P.MARKER_ENV: "vllm:abc"}, 303: {P.MARKER_ENV: "other"}})
    assert sorted(P.find_tree(REC, procs)) == [101, 300, 301], \
        "session members and marked processes started after the runtime, with their children"


def test_zombies_and_the_caller_itself_are_not_part_of_the_tree(table):
    procs = [_p(100, 1, 100, 50), _p(101, 100, 100, 51, state="zombie"), _p(os.getpid(), 100, 100, 52)]
    assert sorted(P.find_tree(REC, procs)) == [100]


def test_a_tree_without_session_or_marker_is_the_root_and_its_descendants(table):
    procs = [_p(100, 1, 100, 50), _p(101, 100, 100, 51), _p(105, 1, 100, 52)]
    assert sorted(P.find_tree({"pid": 100, "pid_start": 50}, procs)) == [100, 101]


# -- spawn_detached: an exec that fails is the caller's OSError ----------------------------------

@pytest.mark.parametrize("exe", ["/nonexistent/dir:with:colons/srv", os.fsdecode(b"/nonexistent/caf\xe9/srv")])
def test_an_exec_that_fails_raises_in_the_caller_with_errno_and_file(exe):
    from ansible_collections.venom.models.plugins.module_utils.runtimes.spawn import spawn_detached  # pylint: disable=import-outside-toplevel
    with pytest.raises(OSError) as err:
        spawn_detached(exe, [exe], {"PATH": os.defpath})
    assert err.value.errno == errno.ENOENT and err.value.strerror == os.strerror(errno.ENOENT)
    assert err.value.filename == exe.encode("utf-8", "replace").decode("utf-8")


def test_a_child_that_fails_before_exec_without_a_file_reports_no_file(tmp_path):
    from ansible_collections.venom.models.plugins.module_utils.runtimes.spawn import spawn_detached  # pylint: disable=import-outside-toplevel
    with pytest.raises(OSError) as err:   # a CPU this machine does not have: EINVAL, about no file
        spawn_detached(sys.executable, [sys.executable, "-c", "pass"], {}, cpus=[4000])
    assert err.value.errno == errno.EINVAL and err.value.filename is None


def test_a_fork_that_fails_raises_its_error_and_leaks_no_descriptor(monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.runtimes import spawn as spawn_module  # pylint: disable=import-outside-toplevel

    def no_fork():
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
    real_pipe, pipes = os.pipe, []

    def pipe():
        ends = real_pipe()
        pipes.append([(fd, os.fstat(fd).st_ino) for fd in ends])
        return ends
    monkeypatch.setattr(spawn_module.os, "fork", no_fork)
    monkeypatch.setattr(spawn_module.os, "pipe", pipe)
    with pytest.raises(OSError) as err:
        spawn_module.spawn_detached(sys.executable, [sys.executable], {})
    assert err.value.errno == errno.EAGAIN

    def still_that_pipe(fd, ino):
        try:
            return os.fstat(fd).st_ino == ino
        except OSError:
            return False
    assert len(pipes) == 1 and not any(still_that_pipe(fd, ino) for fd, ino in pipes[0]), \
        "both ends of the report pipe are closed"


def test_a_child_that_cannot_exec_never_returns_into_the_callers_code(tmp_path):
    from ansible_collections.venom.models.plugins.module_utils.runtimes.spawn import spawn_detached  # pylint: disable=import-outside-toplevel
    me, seen = os.getpid(), tmp_path / "seen"
    try:
        spawn_detached("/nonexistent/srv", ["srv"], {})
    except OSError:
        pass
    finally:
        with open(seen, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        if os.getpid() != me:   # a child that came back here: stop it before it runs the rest of the tests
            os._exit(0)
    assert seen.read_text().split() == [str(me)], "only the caller ran past the spawn"


# -- stop_tree's order and timing, with the process table and the clock faked (issue 20, round 3) --

class _FakeTree:  # pylint: disable=too-many-instance-attributes
    """A runtime's process tree for ``stop_tree``: a SIGTERM ends a process by the next look unless it
    is deaf to it, a SIGKILL unless it is stuck in the kernel. Each signal is recorded with the fake
    clock's time and the number of pauses made before it."""

    def __init__(self, monkeypatch, pids, deaf=(), stuck=(), born=None):
        self.clock = FakeClock()
        self.procs = {pid: P.Proc(pid=pid, comm="python", state="sleeping", ppid=1, sid=pids[0], start=pid)
                      for pid in pids}
        self.deaf, self.stuck = set(deaf), set(stuck)
        self.born = dict(born or {})   # {look number: pid that appears then}
        self.signals, self.reaped, self.scope_kills, self.ending, self.looks = [], [], [], set(), 0
        monkeypatch.setattr(P, "time", self.clock)
        monkeypatch.setattr(P, "find_tree", self.find_tree)
        monkeypatch.setattr(P, "_signal", self.signal)
        monkeypatch.setattr(P, "_reap", self.reaped.append)
        monkeypatch.setattr(P, "kill_scope", self.scope_kills.append)
        monkeypatch.setattr(P, "describe_pids", lambda pids: ", ".join(str(p) for p in sorted(pids)))

    def find_tree(self, rec, procs=None):  # pylint: disable=unused-argument
        self.looks += 1
        for pid in self.ending:
            self.procs.pop(pid, None)
        self.ending.clear()
        if self.looks in self.born:
            pid = self.born[self.looks]
            self.procs[pid] = P.Proc(pid=pid, comm="python", state="sleeping", ppid=1, sid=pid, start=pid)
        return dict(self.procs)

    def signal(self, proc, sig):
        if proc.pid not in self.procs:
            return False
        self.signals.append((proc.pid, sig, self.clock.now, len(self.clock.sleeps)))
        ends = {signal.SIGTERM: proc.pid not in self.deaf, signal.SIGKILL: proc.pid not in self.stuck}
        if ends.get(sig):
            self.ending.add(proc.pid)
        return True

    def sent(self, sig):
        return [s for s in self.signals if s[1] == sig]


def test_a_tree_that_obeys_sigterm_is_never_killed_and_its_leader_hears_first(monkeypatch):
    fake = _FakeTree(monkeypatch, [9, 3, 6])
    res = P.stop_tree({"pid": 6, "name": "rt"}, stop_timeout=10)
    assert [s[0] for s in fake.sent(signal.SIGTERM)] == [6, 3, 9], "the leader first, then by pid"
    assert fake.sent(signal.SIGKILL) == [] and fake.scope_kills == []
    assert res.found == [3, 6, 9] and res.terminated == [3, 6, 9] and res.killed == []
    assert set(fake.reaped) >= {3, 6, 9} and res.port_free is None
    assert fake.clock.sleeps == [P._POLL]
    assert res.duration == pytest.approx(2 * 0.12345), "from the first look at the clock to the last"


@pytest.mark.parametrize("stop_timeout", [0, -1, 0.5, 1.0, 3])
def test_sigkill_follows_sigterm_once_stop_timeout_has_passed_and_not_before(monkeypatch, stop_timeout):
    fake = _FakeTree(monkeypatch, [5, 6, 7], deaf=[5, 6, 7])
    t0 = fake.clock.now + 0.12345   # stop_tree's first look at the clock
    res = P.stop_tree({"pid": 5}, stop_timeout=stop_timeout)
    terms, kills = fake.sent(signal.SIGTERM), fake.sent(signal.SIGKILL)
    assert [s[0] for s in terms] == [5, 6, 7] and all(s[3] == 0 for s in terms), "SIGTERM at once"
    assert [s[0] for s in kills] == [5, 6, 7]
    waited = kills[0][2] - t0
    limit = max(0, stop_timeout)
    assert limit <= waited < limit + 2 * 0.12345, f"SIGKILL after {waited:.3f}s for stop_timeout {stop_timeout}"
    if limit == 0:
        assert kills[0][3] == 0, "stop_timeout 0: SIGKILL without a pause"
    else:
        assert kills[0][3] >= 1 and fake.clock.sleeps[:kills[0][3]] == [P._POLL] * kills[0][3]
    assert res.killed == [5, 6, 7] and res.terminated == [] and fake.scope_kills == [{"pid": 5}]


def test_what_sigterm_ended_and_what_needed_sigkill_are_reported_apart_and_sorted(monkeypatch):
    fake = _FakeTree(monkeypatch, [9, 4, 7, 2], deaf=[9, 2])
    res = P.stop_tree({"pid": 7}, stop_timeout=1)
    assert res.found == [2, 4, 7, 9] and res.terminated == [4, 7] and res.killed == [2, 9]
    assert [s[0] for s in fake.sent(signal.SIGKILL)] == [9, 2], "only what was left"


def test_a_process_forked_during_the_shutdown_gets_its_sigterm_too(monkeypatch):
    fake = _FakeTree(monkeypatch, [10, 11], deaf=[10, 11], born={2: 12})
    res = P.stop_tree({"pid": 10}, stop_timeout=1)
    assert [s[0] for s in fake.sent(signal.SIGTERM)] == [10, 11, 12]
    assert len([s for s in fake.sent(signal.SIGTERM) if s[0] == 12]) == 1, "one SIGTERM each"
    assert res.found == [10, 11] and res.killed == [10, 11] and res.terminated == [12]


def test_processes_that_survive_sigkill_are_killed_again_until_kill_grace_and_named(monkeypatch):
    fake = _FakeTree(monkeypatch, [20, 21], deaf=[20, 21], stuck=[21])
    with pytest.raises(RuntimeControlError) as err:
        P.stop_tree({"pid": 20, "name": "vllm"}, stop_timeout=1, kill_grace=2)
    gave_up = fake.clock.now
    kills = fake.sent(signal.SIGKILL)
    assert [s[0] for s in kills[:2]] == [20, 21] and {s[0] for s in kills[2:]} == {21}
    assert len(kills) > 3, "SIGKILL sent again at every look"
    assert 2 <= gave_up - kills[0][2] < 2 + 3 * 0.12345, "gave up once kill_grace had passed"
    assert err.value.msg.startswith("Stopping vllm left processes running after SIGTERM, 1s, SIGKILL and 2s more: 21.")
    assert err.value.details["pids"] == [21] and "state D" in err.value.fix
    assert len(fake.scope_kills) == 1 and 20 in fake.reaped and 21 in fake.reaped


def test_a_runtime_without_a_name_is_called_the_runtime_in_a_failed_stop(monkeypatch):
    _FakeTree(monkeypatch, [30], deaf=[30], stuck=[30])
    with pytest.raises(RuntimeControlError) as err:
        P.stop_tree({"pid": 30}, stop_timeout=0.5, kill_grace=0.25)
    assert err.value.msg == ("Stopping the runtime left processes running after SIGTERM, 0.5s, SIGKILL and 0.25s "
                             "more: 30.")


def test_after_the_tree_is_gone_the_port_is_waited_for_on_the_recorded_address(monkeypatch):
    _FakeTree(monkeypatch, [40])
    asked = []

    def port_in_use(host, port):
        asked.append((host, port))
        return len(asked) < 3
    monkeypatch.setattr(P, "port_in_use", port_in_use)
    res = P.stop_tree({"pid": 40}, port=8000, host="127.0.0.2")
    assert res.port_free is True and asked == [("127.0.0.2", 8000)] * 4
    asked.clear()
    res = P.stop_tree({"pid": 40}, port=8000)
    assert res.port_free is True and {a[0] for a in asked} == {"127.0.0.1"}, "no host: the loopback address"


def test_a_port_that_stays_taken_fails_the_stop_once_port_grace_has_passed(monkeypatch):
    fake = _FakeTree(monkeypatch, [50])
    looks = []
    monkeypatch.setattr(P, "port_in_use", lambda host, port: looks.append(fake.clock.now) or True)
    monkeypatch.setattr(P, "port_holders", lambda port: [])
    with pytest.raises(RuntimeControlError) as err:
        P.stop_tree({"pid": 50, "name": "rt"}, port=8000, port_grace=1.0)
    assert err.value.msg == "rt stopped, but port 8000 is still in use."
    assert 1.0 <= looks[-1] - looks[0] < 1.0 + 3 * 0.12345
    assert err.value.details["pids"] == [] and "choose another 'port'" in err.value.fix


# -- spawn_detached's options (issue 20, round 3) ---------------------------------------------------

REPORTER = textwrap.dedent("""
    import json, os, sys
    fds = [os.readlink(f"/proc/self/fd/{i}") for i in range(3)]
    flags = [int(open(f"/proc/self/fdinfo/{i}").read().split("flags:")[1].split()[0], 8) & 3 for i in range(3)]
    with open("/proc/self/cmdline", "rb") as fh:
        argv = fh.read().split(b"\\0")[:-1]
    report = {"sid": os.getsid(0), "pid": os.getpid(), "pgid": os.getpgid(0), "cwd": os.getcwd(), "fds": fds,
              "flags": flags, "stdin": sys.stdin.read(), "env": dict(os.environ),
              "argv": [a.decode() for a in argv], "cpus": sorted(os.sched_getaffinity(0))}
    print("to stdout", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    with open(sys.argv[1] + ".tmp", "w") as fh:
        json.dump(report, fh)
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
""")


def _spawn_report(tmp_path, **kwargs) -> dict:
    out = tmp_path / "report.json"
    env = {"PATH": os.defpath, "LC_ALL": "C.UTF-8", "VENOM_ONLY": "this"}
    pid = spawn.spawn_detached(sys.executable, ["reporter", "-c", REPORTER, str(out)], env, **kwargs)
    _done, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    report = json.loads(out.read_text())
    assert report["pid"] == pid
    return report


def test_a_detached_child_leads_its_own_session_in_the_root_directory_with_only_the_given_env(tmp_path):
    report = _spawn_report(tmp_path)
    assert report["sid"] == report["pid"] == report["pgid"] and report["sid"] != os.getsid(0)
    assert report["cwd"] == "/", "the root directory unless told"
    assert report["env"] == {"PATH": os.defpath, "LC_ALL": "C.UTF-8", "VENOM_ONLY": "this"}, "nothing inherited"
    assert report["argv"][0] == "reporter", "argv as given, apart from the executable"
    assert report["cpus"] == sorted(os.sched_getaffinity(0)), "no CPUs given: the caller's"


def test_a_detached_child_without_stdio_reads_nothing_and_writes_to_dev_null(tmp_path):
    report = _spawn_report(tmp_path)
    assert report["fds"] == [os.devnull] * 3
    assert report["flags"] == [os.O_RDONLY, os.O_WRONLY, os.O_WRONLY]
    assert report["stdin"] == ""


def test_a_detached_child_gets_the_descriptors_it_is_given_as_stdin_stdout_and_stderr(tmp_path):
    in_r, in_w = os.pipe()
    os.write(in_w, b"from the caller")
    os.close(in_w)
    out_file = tmp_path / "out"
    err_file = tmp_path / "err"
    out_fd = os.open(out_file, os.O_WRONLY | os.O_CREAT, 0o600)
    err_fd = os.open(err_file, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        report = _spawn_report(tmp_path, stdin=in_r, stdout=out_fd, stderr=err_fd, cwd=str(tmp_path))
    finally:
        for fd in (in_r, out_fd, err_fd):
            os.close(fd)
    assert report["stdin"] == "from the caller" and report["cwd"] == str(tmp_path)
    assert out_file.read_text() == "to stdout\n" and err_file.read_text() == "to stderr\n"
    assert report["fds"][1:] == [str(out_file), str(err_file)]


def test_a_detached_child_given_cpus_runs_only_on_them(tmp_path):
    last = max(os.sched_getaffinity(0))
    assert _spawn_report(tmp_path, cpus=[last])["cpus"] == [last]
    assert _spawn_report(tmp_path, cpus=[])["cpus"] == sorted(os.sched_getaffinity(0)), "no CPUs: the caller's"


# -- the tree, the PID record and the helpers around them (issue 20, round 3) -----------------------

def test_processes_started_in_the_same_tick_as_the_runtime_are_part_of_it(table):
    procs = [_p(100, 1, 100, 50), _p(101, 1, 100, 50), _p(300, 1, 300, 50), _p(301, 1, 301, 49)]
    table.update({300: {P.MARKER_ENV: "vllm:abc"}, 301: {P.MARKER_ENV: "vllm:abc"}})
    assert sorted(P.find_tree(REC, procs)) == [100, 101, 300], "not before the runtime, but in its first tick"


def test_a_record_from_an_unknown_boot_or_a_host_without_a_boot_id_is_trusted_by_its_start(table, monkeypatch):
    procs = [_p(100, 1, 100, 50), _p(101, 100, 100, 51)]
    assert sorted(P.find_tree(dict(REC, boot_id=None), procs)) == [100, 101]
    monkeypatch.setattr(P, "boot_id", lambda: None)
    assert sorted(P.find_tree(dict(REC, boot_id="boot-0"), procs)) == [100, 101]


def test_a_session_whose_leader_was_recycled_is_not_searched(table):
    procs = [_p(100, 1, 100, 70), _p(101, 1, 100, 71)]   # pid 100 is someone else now, leading its own session
    assert P.find_tree(REC, procs) == {}
    assert sorted(P.find_tree(REC, [_p(101, 1, 100, 71)])) == [101], "a session whose leader is gone stays ours"


def test_a_parent_loop_in_the_process_table_ends_the_search():
    procs = [_p(1, 2, 1, 1), _p(2, 1, 1, 1), _p(3, 2, 1, 1)]
    assert P.descendants(1, procs) == {1, 2, 3} and P.descendants(3, procs) == set()


def test_a_process_describes_itself_by_pid_name_and_state_and_dead_ones_are_zombies():
    assert P.Proc(pid=7, comm="vllm", state="disk-sleep", ppid=1, sid=7, start=3).describe() == \
        "7 (vllm, state disk-sleep)"
    assert P.Proc(7, "x", "dead", 1, 7, 3).zombie and P.Proc(7, "x", "zombie", 1, 7, 3).zombie
    assert not P.Proc(7, "x", "disk-sleep", 1, 7, 3).zombie


def test_pids_that_are_not_numbers_name_no_process():
    assert P.have_psutil() is True
    assert P.read_proc("x") is None and P.proc_environ("x") is None and P.proc_cmdline("x") == []
    assert P.read_proc(os.getpid()).pid == os.getpid()
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
                             env={"VENOM_PROBE": "started-with", "PATH": "/usr/bin"},
                             stdout=subprocess.PIPE, text=True)
    try:
        # read only after the child has exec'd: before that /proc shows the forking parent's environment
        assert child.stdout.readline() == "up\n"
        assert P.proc_environ(child.pid)["VENOM_PROBE"] == "started-with", "the environment it started with"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_the_secrets_a_run_masks_are_the_api_key_and_every_env_value():
    assert P.run_secrets("k", {"A": "x", "B": 5, "C": ""}) == ["k", "x", "5"]
    assert P.run_secrets(None, None) == [] and P.run_secrets("", {}) == []


def test_an_executable_is_looked_up_on_the_path_of_the_runtimes_env(tmp_path, monkeypatch):
    bin1, bin2 = tmp_path / "bin1", tmp_path / "bin2"
    bin1.mkdir()
    bin2.mkdir()
    (bin1 / "srv").write_text("#!/bin/sh\n")   # not executable: skipped
    (bin2 / "srv").write_text("#!/bin/sh\n")
    (bin2 / "srv").chmod(0o755)
    (bin1 / "dir").mkdir()
    env = {"PATH": f"{bin1}:{bin2}"}
    assert P.find_executable("srv", env) == str(bin2 / "srv")
    assert P.find_executable("dir", env) is None and P.find_executable("none", env) is None
    assert P.find_executable(str(bin1 / "srv"), env) is None, "a path that is not executable"
    assert P.find_executable(str(bin2 / "srv"), {}) == str(bin2 / "srv")
    monkeypatch.chdir(bin2)
    assert P.find_executable("srv", {"PATH": f"{bin1}:"}) == "./srv", "an empty PATH entry is the working directory"
    assert P.find_executable("sh", {}) == os.path.join(next(d for d in os.defpath.split(":") if d and
                                                            os.access(os.path.join(d, "sh"), os.X_OK)), "sh"), \
        "no PATH: the default one"


def test_an_address_that_is_not_local_is_no_port_in_use():
    assert P.port_in_use("192.0.2.1", free_port()) is False


def test_the_pid_record_names_the_runtime_its_session_log_and_masked_command(tmp_path):
    pid_file = tmp_path / "run" / "deep" / "rt.pid"
    log_file = tmp_path / "logs" / "rt.log"
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    rec = P.start_process(sleeper + ["--key=s3cret"], pid_file=str(pid_file), log_file=str(log_file),
                          name="sleeper", port=None, host="127.0.0.5", argv_for_record=sleeper + ["--key=***"],
                          startup_check=0.1, log_max_bytes=None, scope=None)
    try:
        assert rec["kind"] == P.PID_FILE_KIND and rec["name"] == "sleeper" and rec["sid"] == rec["pid"]
        assert rec["host"] == "127.0.0.5" and rec["port"] is None and rec["scope"] is None and rec["cgroup"] is None
        assert rec["log_file"] == str(log_file) and rec["argv"] == sleeper + ["--key=***"]
        assert rec["marker"].startswith("sleeper:") and len(rec["marker"]) == len("sleeper:") + 32
        assert rec["boot_id"] == P.boot_id() and rec["started_at"]
        assert P.proc_cmdline(rec["pid"]) == sleeper + ["--key=s3cret"]
        assert stat_mode(pid_file.parent) == 0o750 and stat_mode(log_file.parent) == 0o750
        assert stat_mode(log_file) == 0o640
        log = log_file.read_text()
        assert f"{P.LOG_START_MARK}sleeper at " in log
        assert log.rstrip().endswith(": " + " ".join(sleeper) + " --key=***")
        assert "s3cret" not in log and "s3cret" not in pid_file.read_text()
        assert P.proc_environ(rec["pid"])[P.MARKER_ENV] == rec["marker"], "env None: the caller's, with the marker"
    finally:
        P.stop_tree(rec, stop_timeout=5)


def stat_mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_start_without_a_command_is_refused():
    with pytest.raises(RuntimeControlError, match="No command to start") as err:
        P.start_process([], pid_file="/nonexistent/p", log_file="/nonexistent/l")
    assert err.value.fix == "Set 'command'."


def test_a_log_that_is_a_symlink_or_a_fifo_has_no_tail_and_never_blocks(tmp_path):
    target = tmp_path / "secret"
    target.write_text("not a log\n")
    (tmp_path / "link.log").symlink_to(target)
    assert P.tail_file(str(tmp_path / "link.log")) == []
    os.mkfifo(tmp_path / "fifo.log")
    assert P.tail_file(str(tmp_path / "fifo.log")) == []
    (tmp_path / "empty.log").write_text("")
    assert P.tail_file(str(tmp_path / "empty.log")) == []


def test_only_a_listening_socket_on_the_port_holds_it():
    import psutil  # pylint: disable=import-outside-toplevel

    class Conn:  # pylint: disable=too-few-public-methods
        def __init__(self, status, port):
            self.status = status
            self.laddr = type("Addr", (), {"port": port})() if port else ()
    assert P._listens([Conn(psutil.CONN_LISTEN, 8000)], 8000) is True
    assert P._listens([Conn(psutil.CONN_ESTABLISHED, 8000)], 8000) is False
    assert P._listens([Conn(psutil.CONN_LISTEN, 8001)], 8000) is False
    assert P._listens([Conn(psutil.CONN_LISTEN, None)], 8000) is False
    assert P._listens([Conn(psutil.CONN_ESTABLISHED, 8000), Conn(psutil.CONN_LISTEN, 8000)], 8000) is True
    assert P._listens([], 8000) is False


def test_a_port_nobody_listens_on_has_no_holders_even_with_a_connection_on_it():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _addr = server.accept()
            with conn:
                assert P.port_holders(port) == [os.getpid()]
                client_port = client.getsockname()[1]
                assert P.port_holders(client_port) == [], "a connected socket does not hold its port"
                assert P._listener_on(client_port) is False


def test_the_holders_of_a_port_are_every_listener_by_pid_skipping_processes_that_cannot_be_read(monkeypatch):
    import psutil  # pylint: disable=import-outside-toplevel

    class Listening(_Psutil6Process):
        def __init__(self, pid, port, status=psutil.CONN_LISTEN):
            super().__init__([type("Conn", (), {"status": status, "laddr": type("Addr", (), {"port": port})()})()])
            self.pid = pid

    class Hidden(Listening):
        def net_connections(self, kind="inet"):  # pylint: disable=unused-argument
            raise psutil.AccessDenied(self.pid)
    procs = [Listening(30, 8000), Hidden(5, 8000), Listening(12, 8000), Listening(7, 9000),
             Listening(8, 8000, psutil.CONN_ESTABLISHED)]
    monkeypatch.setattr(P.psutil, "process_iter", lambda: iter(procs))
    monkeypatch.setattr(P, "_listener_on", lambda port: port == 8000)
    assert P.port_holders(8000) == [12, 30]
    assert P.port_holders(9000) == [], "no listener in the kernel's tables: no process is asked"
    assert all(p.kinds in ([], ["tcp"]) for p in procs)


def test_a_stop_checks_the_port_on_the_address_it_is_given_over_the_recorded_one(tmp_path, monkeypatch):
    pid_file = tmp_path / "p"
    P.atomic_write_json(str(pid_file), {"kind": P.PID_FILE_KIND, "pid": 4242, "pid_start": 1, "port": 8000,
                                        "host": "127.0.0.2"})
    stops = []
    monkeypatch.setattr(P, "stop_tree", lambda rec, **kw: stops.append(kw) or P.StopResult())
    P.stop_pid_file(str(pid_file), host="127.0.0.3")
    P.atomic_write_json(str(pid_file), {"kind": P.PID_FILE_KIND, "pid": 4242, "pid_start": 1, "port": 8000,
                                        "host": "127.0.0.2"})
    P.stop_pid_file(str(pid_file), port=9000)
    assert [(s["host"], s["port"]) for s in stops] == [("127.0.0.3", 8000), ("127.0.0.2", 9000)]
    assert not pid_file.exists()


def test_a_port_bound_by_another_socket_that_does_not_listen_is_in_use():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        assert P.port_in_use("127.0.0.1", other.getsockname()[1]) is True


def test_a_signal_goes_through_a_pidfd_where_the_kernel_has_them(monkeypatch):
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd in this Python")
    sent = []
    real = signal.pidfd_send_signal
    monkeypatch.setattr(signal, "pidfd_send_signal", lambda fd, sig: sent.append(sig) or real(fd, sig))
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert P._signal(P.read_proc(child.pid), signal.SIGTERM) is True
        assert sent == [signal.SIGTERM] and child.wait(timeout=10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
