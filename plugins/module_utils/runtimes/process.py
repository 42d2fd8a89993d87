# SPDX-License-Identifier: GPL-3.0-or-later
"""Local runtime processes: start detached, find the whole tree, stop it completely.

This is the one implementation of process-mode start and of the process-tree stop that every
part of venom.models uses (the runtime module, the tests, the benchmarks). Linux only. psutil
finds and describes the processes (parents, names, states, environments, command lines, memory,
listening sockets); what psutil lacks is here or in ``store/procinfo.py``: the start time in clock
ticks that identifies a process, the session (``getsid``), the marker variable, the control
group, and signals through a pidfd. Without psutil, starting or stopping a runtime raises
``MissingDependencyError`` naming the package; the facts' figures that need it are null.

Start (``start_process``): the runtime runs in its own session and process group (``fork``,
``setsid``, ``execve``: ``spawn.spawn_detached``), stdin from /dev/null, stdout and stderr appended to
a log file (through a pipe to a size rotator, ``logsize``), with an explicit environment plus a marker variable ``VENOM_RUNTIME_ID`` that every
descendant inherits. A PID file (JSON, mode 0640) records pid, start time (clock ticks since
boot), boot id, session, marker, port and log path.

Identity: a PID is never trusted alone. A recorded process is "ours" only while its start time
and the boot id match the PID file, so a recycled PID is never signalled. Signals go through a
pidfd where the kernel has them, which closes the remaining check-then-kill race.

Scope: where systemd is PID 1 and the run is root's, the tree runs in a transient systemd
scope (``systemd-run --scope --collect --quiet --unit=venom-runtime-<name>-<random>``, which
registers itself in the new scope and then executes the runtime: the pid stays the same). The
PID file records the scope unit and its control group. A process cannot leave its control group
unprivileged, so a child that double-forks, calls ``setsid`` and clears its environment is still
found there. Elsewhere the tree runs as before, without a scope (see docs/runtime.md).

Stop (``stop_tree``): the tree is every process that descends from the recorded one, every
process in its session, every process carrying its marker, and every process in its scope's
control group. Session and marker find children that were re-parented after their parent died
(vLLM's EngineCore after a ``kill -9`` of the API server); the scope finds those that also left
the session and dropped the marker. SIGTERM to all of them, wait ``stop_timeout``, SIGKILL what
remains (and the scope's ``cgroup.kill`` where the kernel has it), reap our own children, then
confirm that no process of the tree is left and that the port is free. A stop that leaves
anything behind raises ``RuntimeControlError`` naming the pids.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field

from ansible_collections.venom.models.plugins.module_utils.store.safeio import open_state_file, read_state_json
from ansible_collections.venom.models.plugins.module_utils.errors import (
    MissingDependencyError, RuntimeControlError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.runtimes import logsize
from ansible_collections.venom.models.plugins.module_utils.runtimes.spawn import spawn_detached
from ansible_collections.venom.models.plugins.module_utils.runtimes.systemd import (
    cgroup_dir, cgroup_pids, systemd_booted)
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_json
from ansible_collections.venom.models.plugins.module_utils.store.procinfo import boot_id, is_alive, proc_start_ticks
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso

try:
    import psutil
except ImportError as _exc:  # reported by _need_psutil() when a process must be found
    psutil = None
    PSUTIL_IMPORT_ERROR: ImportError | None = _exc
else:
    PSUTIL_IMPORT_ERROR = None

MARKER_ENV = "VENOM_RUNTIME_ID"
PID_FILE_KIND = "venom.models/runtime-pid"
MAX_PID_FILE_BYTES = 64 * 1024
LOG_START_MARK = "=== venom.models: starting "
DEFAULT_STOP_TIMEOUT = 30.0
KILL_GRACE = 30.0  # after SIGKILL: time for the kernel to tear the processes down (slow on a starved CPU)
PORT_GRACE = 5.0  # after the processes are gone: time for their sockets to close
SCOPE_WAIT = 10.0  # after the start: time for systemd-run to move the process into its scope
SYSTEMD_RUN_DIRS = ("/usr/bin", "/bin", "/usr/local/bin")
_POLL = 0.05


# ---------------------------------------------------------------------------------------------
# processes (psutil)


def _need_psutil() -> None:
    """Raise a clear error if psutil, which finds and describes the processes, is not installed."""
    if psutil is None:
        raise MissingDependencyError(
            "psutil", "to find the processes of a runtime and what holds its port (venom_runtime; "
            "Debian and Ubuntu package it as python3-psutil)", PSUTIL_IMPORT_ERROR)


def have_psutil() -> bool:
    return psutil is not None


@dataclass(frozen=True)
class Proc:
    """One process, as psutil describes it, with the start time its identity is recorded by."""

    pid: int
    comm: str
    state: str  # psutil's status: "running", "sleeping", "disk-sleep", "zombie", ...
    ppid: int
    sid: int
    start: int  # start time in clock ticks since boot (store/procinfo.py: why not psutil's float)

    @property
    def zombie(self) -> bool:
        """A zombie (or dead) process holds no memory, files or ports; only its parent can reap it."""
        return self.state in ("zombie", "dead")  # psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD

    def describe(self) -> str:
        return f"{self.pid} ({self.comm}, state {self.state})"


def _snapshot(p) -> Proc | None:
    """``Proc`` of the psutil process ``p``; None if it is gone. The session comes from
    ``getsid(2)`` (psutil has no session id), the start ticks from the store's identity."""
    try:
        with p.oneshot():
            name, status, ppid = p.name(), p.status(), p.ppid()
        sid = os.getsid(p.pid)
    except (psutil.Error, OSError):
        return None
    start = proc_start_ticks(p.pid)
    return None if start is None else Proc(pid=p.pid, comm=name, state=status, ppid=ppid, sid=sid, start=start)


def read_proc(pid: int) -> Proc | None:
    """The process ``pid`` or None if it does not exist (any more)."""
    _need_psutil()
    try:
        return _snapshot(psutil.Process(int(pid)))
    except (psutil.Error, ValueError):
        return None


def all_procs() -> list[Proc]:
    _need_psutil()
    return [proc for proc in map(_snapshot, psutil.process_iter()) if proc is not None]


def proc_environ(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` was started with (None if unreadable: gone, or another user's)."""
    _need_psutil()
    try:
        return psutil.Process(int(pid)).environ()
    except (psutil.Error, ValueError):
        return None


def proc_cmdline(pid: int) -> list[str]:
    _need_psutil()
    try:
        return psutil.Process(int(pid)).cmdline()
    except (psutil.Error, ValueError):
        return []


def tree_rss_bytes(pids) -> int | None:
    """Resident memory of the processes ``pids`` together (the gone ones count 0); None without psutil."""
    if psutil is None:
        return None
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(int(pid)).memory_info().rss
        except (psutil.Error, ValueError):
            continue
    return total


def descendants(root: int, procs: list[Proc]) -> set[int]:
    """Pids below ``root`` by parent links (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


# ---------------------------------------------------------------------------------------------
# ports


def _listens(conns, port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def _listener_on(port: int) -> bool:
    """True if any TCP socket listens on ``port`` (any address). Read from the kernel's socket
    tables, which psutil offers only through ``net_connections()``: that maps every socket to its
    pid by reading every process's file descriptors, too costly for a check polled every 50 ms."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    cols = line.split()  # local_address is HEXIP:HEXPORT; state 0A is LISTEN
                    if len(cols) > 3 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def tcp_connections(p) -> list:
    """The TCP sockets of the psutil process ``p``: ``net_connections`` since psutil 6.0,
    ``connections`` before (Debian 12's python3-psutil is 5.9)."""
    method = getattr(p, "net_connections", None) or p.connections
    return method(kind="tcp")


def port_holders(port: int) -> list[int]:
    """Pids of the processes that hold a listening TCP socket on ``port`` (any address): every
    one of them (a socket inherited by a child has two holders; ``psutil.net_connections`` names
    only one, so each process is asked)."""
    _need_psutil()
    if not _listener_on(port):
        return []
    holders = []
    for p in psutil.process_iter():
        try:
            if _listens(tcp_connections(p), port):
                holders.append(p.pid)
        except psutil.Error:
            continue
    return sorted(holders)


def port_in_use(host: str, port: int) -> bool:
    """True if a server could not bind ``host:port`` now (a listener holds it)."""
    if _listener_on(port):  # a listener on any address
        return True
    family = socket.AF_INET6 if ":" in (host or "") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return False


def describe_pids(pids) -> str:
    parts = []
    for pid in sorted(pids):
        proc = read_proc(pid)
        cmd = " ".join(proc_cmdline(pid))[:120]
        state = f", state {proc.state}" if proc else ""
        parts.append(f"{pid} ({proc.comm if proc else '?'}{state}{': ' + cmd if cmd else ''})")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# PID files


def read_pid_file(path: str) -> dict | None:
    """The record in the PID file ``path``; None if there is none. A broken file raises; a
    symlink in its place is refused (ValidationError), never followed."""
    try:
        rec = read_state_json(path, MAX_PID_FILE_BYTES, "PID file")
    except FileNotFoundError:
        return None
    if (not isinstance(rec, dict) or rec.get("kind") != PID_FILE_KIND or not isinstance(rec.get("pid"), int)
            or not isinstance(rec.get("pid_start"), int)):
        raise RuntimeControlError(
            f"The PID file {path} is not a venom.models PID file (unreadable or missing pid/pid_start).",
            fix="Make sure no runtime started from it still runs (ps -ef), then delete the file.")
    return rec


def remove_pid_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def record_alive(rec: dict | None) -> bool:
    """True if the process of PID-file record ``rec`` is still the one that was started."""
    return is_alive(rec, strict=True)


# ---------------------------------------------------------------------------------------------
# start


def _tail_bytes(path: str, max_bytes: int) -> bytes:
    """The last ``max_bytes`` of a log; empty if it cannot be read or is a symlink (never followed)."""
    try:
        fd = open_state_file(path, os.O_RDONLY | os.O_NONBLOCK, what="runtime log")  # a FIFO: no hang
    except (OSError, ValidationError):
        return b""
    with os.fdopen(fd, "rb") as fh:
        try:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return fh.read()
        except OSError:
            return b""


def tail_file(path: str | None, lines: int = 40, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of a log file (empty if it cannot be read)."""
    if not path:
        return []
    text = _tail_bytes(path, max_bytes).decode("utf-8", "replace")
    return text.splitlines()[-lines:]


def find_executable(argv0: str, env: dict) -> str | None:
    """The file ``argv0`` runs as (a name is looked up on the PATH of ``env``), if it is executable."""
    if os.sep in argv0:
        path = argv0
    else:
        path = None
        for d in (env.get("PATH") or os.defpath).split(os.pathsep):
            cand = os.path.join(d or ".", argv0)
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                path = cand
                break
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def _resolve_executable(argv0: str, env: dict) -> str:
    path = find_executable(argv0, env)
    if path is None:
        raise RuntimeControlError(f"The runtime command '{argv0}' is not an executable file.",
                                  fix="Set 'command' to the absolute path of the runtime's executable "
                                      "(for vLLM: the venv's bin/python).")
    return path


def start_process(argv: list[str], *, pid_file: str, log_file: str, env: dict | None = None,
                  cwd: str = "/", name: str = "runtime", port: int | None = None, host: str | None = None,
                  argv_for_record: list[str] | None = None, startup_check: float = 0.3,
                  log_max_bytes: int | None = logsize.DEFAULT_MAX_BYTES, log_keep: int = logsize.DEFAULT_KEEP,
                  scope: str | None = "auto", cpus=None) -> dict:
    """Start ``argv`` detached (own session), log to ``log_file``; write and return the PID record.

    ``env`` is the complete environment of the process (the caller decides what to inherit);
    the marker variable is added. ``argv_for_record`` is what the PID file shows (pass a copy
    with secrets masked). Refuses to start when the port is taken, and raises with the log's
    tail when the process exits within ``startup_check`` seconds. The log is rotated by size
    (``log_max_bytes``, ``log_keep`` old files; see ``logsize``); ``log_max_bytes=None`` appends
    to it without limit. ``scope``: ``"auto"`` runs the tree in a transient systemd scope where
    ``scope_runner()`` finds one, a path names the ``systemd-run`` to use, None runs it without.
    ``cpus``: the CPUs the whole tree may run on (its affinity, set before the exec; None: all).
    """
    if not argv:
        raise RuntimeControlError("No command to start.", fix="Set 'command'.")
    _need_psutil()
    env = dict(os.environ if env is None else env)
    exe = _resolve_executable(argv[0], env)
    if port is not None and port_in_use(host or "127.0.0.1", port):
        holders = port_holders(port)
        raise RuntimeControlError(
            f"Cannot start {name}: port {port} is already in use"
            + (f" by {describe_pids(holders)}." if holders else "."),
            fix="Stop what holds the port, or choose another 'port'.")
    marker = f"{name}:{uuid.uuid4().hex}"
    env[MARKER_ENV] = marker
    systemd_run = scope_runner() if scope == "auto" else scope
    unit = scope_unit_name(name, marker) if systemd_run else None
    for path in (pid_file, log_file):
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
    log_fd = open_state_file(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640, what="runtime log")
    rotator = None
    try:
        shown = " ".join(argv_for_record or argv)
        os.write(log_fd, f"\n{LOG_START_MARK}{name} at {iso()}: {shown}\n".encode())
        if log_max_bytes:  # the runtime writes into the size rotator's pipe
            sink, rotator = logsize.start_rotator(log_file, log_max_bytes, log_keep)
            os.close(log_fd)
            log_fd = sink
        if unit:
            pid = spawn_detached(systemd_run, scope_argv(systemd_run, unit, exe, argv), env, cwd=cwd,
                                 stdout=log_fd, stderr=log_fd, cpus=cpus)
        else:
            pid = spawn_detached(exe, list(argv), env, cwd=cwd, stdout=log_fd, stderr=log_fd, cpus=cpus)
    except BaseException:
        os.close(log_fd)
        if rotator is not None:  # its pipe is closed now: it ends; reap it so no zombie is left
            logsize.wait_rotator(rotator)
        raise
    os.close(log_fd)
    rec = {"kind": PID_FILE_KIND, "name": name, "pid": pid, "pid_start": proc_start_ticks(pid),
           "boot_id": boot_id(), "sid": pid, "marker": marker, "port": port, "host": host,
           "log_file": os.path.abspath(log_file), "argv": list(argv_for_record or argv), "started_at": iso(),
           "scope": unit, "cgroup": None}
    if rec["pid_start"] is None:  # exited before we could read it: reap and report
        _reap(pid)
        raise _died_error(name, log_file, rotator)
    if unit:
        rec["cgroup"] = _wait_for_scope(pid, unit)
        if rec["cgroup"] is None:  # systemd-run failed (its message is in the log) or never placed it
            if record_alive(rec):
                stop_tree(rec, stop_timeout=1.0)
            _reap(pid)
            err = _died_error(name, log_file, rotator)
            raise RuntimeControlError(
                f"{name} was not placed in its systemd scope {unit} within {SCOPE_WAIT:g}s. " + err.msg,
                fix="Check that systemd answers (systemctl is-system-running) and read the log; "
                    "systemd-run's own error is there.", log_tail=err.details.get("log_tail"))
    atomic_write_json(pid_file, rec, mode=0o640)
    deadline = time.monotonic() + startup_check
    while time.monotonic() < deadline:
        if not record_alive(rec):
            _reap(pid)
            remove_pid_file(pid_file)
            raise _died_error(name, log_file, rotator)
        time.sleep(_POLL)
    return rec


def scope_runner(euid: int | None = None, booted: bool | None = None, dirs=SYSTEMD_RUN_DIRS) -> str | None:
    """The ``systemd-run`` that puts a runtime in a transient scope, or None where that is not
    possible: systemd is not PID 1, the run is not root's (the system manager would ask polkit),
    or ``systemd-run`` is not installed."""
    euid = os.geteuid() if euid is None else euid
    booted = systemd_booted() if booted is None else booted
    if euid != 0 or not booted:
        return None
    for d in dirs:
        path = os.path.join(d, "systemd-run")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def scope_unit_name(name: str, marker: str) -> str:
    """``venom-runtime-<name>-<12 hex of the marker>.scope``: unique per start, valid as a unit name."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64]
    return f"venom-runtime-{safe}-{marker.rsplit(':', 1)[-1][:12]}.scope"


def scope_argv(systemd_run: str, unit: str, exe: str, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` (its executable resolved to ``exe``) in the new scope ``unit``."""
    return [systemd_run, "--scope", "--collect", "--quiet", f"--unit={unit}", "--", exe, *argv[1:]]


def proc_cgroup(pid: int) -> str | None:
    """The control group of ``pid`` (cgroup v2; on v1 the systemd hierarchy's), None if unreadable."""
    try:
        with open(f"/proc/{int(pid)}/cgroup", encoding="utf-8") as fh:
            return parse_proc_cgroup(fh.read())
    except OSError:
        return None


def parse_proc_cgroup(text: str) -> str | None:
    """The group of a ``/proc/<pid>/cgroup`` text that systemd manages: ``name=systemd`` (v1,
    hybrid) or the unified hierarchy's ``0::`` line (v2)."""
    groups = dict(line.split(":", 2)[1:] for line in text.splitlines() if line.count(":") >= 2)
    return groups.get("name=systemd") or groups.get("") or None


def _wait_for_scope(pid: int, unit: str, timeout: float = SCOPE_WAIT) -> str | None:
    """The control group of ``pid`` once it is the scope ``unit``'s; None if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        group = proc_cgroup(pid)
        if group and group.rstrip("/").rsplit("/", 1)[-1] == unit:
            return group
        proc = read_proc(pid)
        if group is None or proc is None or proc.zombie or time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def _died_error(name: str, log_file: str, rotator: int | None = None) -> RuntimeControlError:
    if rotator is not None:
        logsize.wait_rotator(rotator)  # its last lines reach the file
    tail = tail_file(log_file, 20)
    return RuntimeControlError(
        f"{name} exited right after it was started. Last lines of {log_file}:\n" + "\n".join(tail),
        fix="Read the log, fix the command, arguments or model, and run again.", log_tail=tail)


def _reap(pid: int) -> bool:
    """Collect ``pid``'s exit status if it is our child; True if it was reaped or is not ours."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return True


# ---------------------------------------------------------------------------------------------
# stop


def find_tree(rec: dict, procs: list[Proc] | None = None) -> dict[int, Proc]:
    """Every live process that belongs to the runtime of PID-file record ``rec``."""
    procs = all_procs() if procs is None else procs
    by_pid = {p.pid: p for p in procs}
    members: set[int] = set()
    root = by_pid.get(rec["pid"])
    root_ok = root is not None and root.start == rec.get("pid_start") and (
        not rec.get("boot_id") or not boot_id() or rec["boot_id"] == boot_id())
    if root_ok:
        members.add(root.pid)
        members |= descendants(root.pid, procs)
    # The session stays ours while its leader is ours or gone (not recycled into someone else).
    sid = rec.get("sid")
    leader = by_pid.get(sid) if sid else None
    if sid and (root_ok or leader is None):
        members |= {p.pid for p in procs if p.sid == sid and p.start >= rec.get("pid_start", 0)}
    marker = rec.get("marker")
    if marker:
        for p in procs:
            if p.pid not in members and p.start >= rec.get("pid_start", 0):
                env = proc_environ(p.pid)
                if env and env.get(MARKER_ENV) == marker:
                    members.add(p.pid)
    members |= set(scope_pids(rec))  # every process of its scope: no escape by setsid or a cleared env
    for pid in list(members):  # descendants of every member (a marker-found orphan's children)
        members |= descendants(pid, procs)
    members.discard(os.getpid())
    return {pid: by_pid[pid] for pid in members if pid in by_pid and not by_pid[pid].zombie}


def scope_pids(rec: dict) -> list[int]:
    """The pids in the control group of the runtime's scope (none without a scope, or once it is gone).

    The group's name holds a random part of this start's marker, so its members are this
    runtime's processes and never a stranger's; a recycled pid cannot be in it.
    """
    group, unit = rec.get("cgroup"), rec.get("scope")
    if not group or not unit or group.rstrip("/").rsplit("/", 1)[-1] != unit:
        return []
    return cgroup_pids(group)


def kill_scope(rec: dict) -> bool:
    """SIGKILL every process of the scope at once through ``cgroup.kill`` (Linux >= 5.14, cgroup v2),
    which also catches a process forked meanwhile; False where there is none."""
    if not scope_pids(rec):
        return False
    path = os.path.join(cgroup_dir(rec["cgroup"]) or "", "cgroup.kill")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, b"1")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _signal(proc: Proc, sig: int) -> bool:
    """Send ``sig`` to ``proc`` only if that pid is still the same process. True if sent."""
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            return False
        except OSError:
            fd = None  # kernel without pidfd: fall back to kill()
    try:
        if not is_alive({"pid": proc.pid, "pid_start": proc.start}, strict=True):
            return False
        try:
            if fd is not None:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True
    finally:
        if fd is not None:
            os.close(fd)


@dataclass
class StopResult:
    """What ``stop_tree`` did."""

    found: list[int] = field(default_factory=list)      # pids of the tree when the stop began
    terminated: list[int] = field(default_factory=list)  # exited after SIGTERM
    killed: list[int] = field(default_factory=list)      # needed SIGKILL
    duration: float = 0.0
    port_free: bool | None = None

    def as_dict(self) -> dict:
        return {"found": self.found, "terminated": self.terminated, "killed": self.killed,
                "duration": round(self.duration, 3), "port_free": self.port_free}


def stop_tree(rec: dict, stop_timeout: float = DEFAULT_STOP_TIMEOUT, port: int | None = None,
              host: str | None = None, kill_grace: float = KILL_GRACE, port_grace: float = PORT_GRACE) -> StopResult:
    """Stop every process of the runtime ``rec`` and prove nothing is left (see module doc)."""
    t0 = time.monotonic()
    res = StopResult()
    tree = find_tree(rec)
    res.found = sorted(tree)
    signalled: dict[int, Proc] = {}

    def term_new(current: dict[int, Proc]) -> None:
        # leader first: vLLM's API server then shuts its engine down in order
        for pid in sorted(current, key=lambda p: (p != rec["pid"], p)):
            if pid not in signalled and _signal(current[pid], signal.SIGTERM):
                signalled[pid] = current[pid]

    term_new(tree)
    deadline = t0 + max(0.0, stop_timeout)
    while tree and time.monotonic() < deadline:
        time.sleep(_POLL)
        for pid in list(tree):
            _reap(pid)
        tree = find_tree(rec)
        term_new(tree)  # a process forked during shutdown gets its SIGTERM too
    if tree:
        for proc in tree.values():
            if _signal(proc, signal.SIGKILL):
                res.killed.append(proc.pid)
        kill_scope(rec)
        kill_deadline = time.monotonic() + kill_grace
        while tree and time.monotonic() < kill_deadline:
            time.sleep(_POLL)
            for pid in list(tree):
                _reap(pid)
            tree = find_tree(rec)
            for proc in tree.values():
                _signal(proc, signal.SIGKILL)
    for pid in res.found:
        _reap(pid)
    res.terminated = sorted(set(signalled) - set(res.killed))
    res.killed.sort()
    if tree:
        res.duration = time.monotonic() - t0
        raise RuntimeControlError(
            f"Stopping {rec.get('name', 'the runtime')} left processes running after SIGTERM, "
            f"{stop_timeout:g}s, SIGKILL and {kill_grace:g}s more: {describe_pids(tree)}.",
            fix="These processes are probably stuck in the kernel (state D, e.g. a hung GPU driver call). "
                "Inspect them (cat /proc/<pid>/stack) and reboot the host if they do not go away.",
            pids=sorted(tree))
    if port is not None:
        port_deadline = time.monotonic() + port_grace
        while port_in_use(host or "127.0.0.1", port) and time.monotonic() < port_deadline:
            time.sleep(_POLL)
        res.port_free = not port_in_use(host or "127.0.0.1", port)
        if not res.port_free:
            holders = port_holders(port)
            res.duration = time.monotonic() - t0
            raise RuntimeControlError(
                f"{rec.get('name', 'The runtime')} stopped, but port {port} is still in use"
                + (f" by {describe_pids(holders)}" if holders else "") + ".",
                fix="Another process holds the runtime's port; stop it or choose another 'port'.",
                pids=holders)
    res.duration = time.monotonic() - t0
    return res


def stop_pid_file(pid_file: str, stop_timeout: float = DEFAULT_STOP_TIMEOUT, port: int | None = None,
                  host: str | None = None, **kwargs) -> StopResult | None:
    """Stop the runtime recorded in ``pid_file`` (also when its main process is already gone:
    orphans are found by session and marker) and remove the file. None if there was no file."""
    rec = read_pid_file(pid_file)
    if rec is None:
        return None
    port = rec.get("port") if port is None else port
    host = rec.get("host") if host is None else host
    res = stop_tree(rec, stop_timeout=stop_timeout, port=port, host=host, **kwargs)
    remove_pid_file(pid_file)
    return res


def run_secrets(api_key: str | None, env: dict | None) -> list:
    """The secrets of a runtime run that the journal masks: the API key and every ``env`` value."""
    return [v for v in [api_key] + [str(x) for x in (env or {}).values()] if v]
