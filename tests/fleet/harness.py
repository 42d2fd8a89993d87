# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet harness: real Debian hosts, systemd as PID 1, reached by Ansible over SSH.

Each host is a copy (an overlay, or a plain copy where overlayfs is unavailable) of one cached
``debootstrap --variant=minbase`` base, booted with ``systemd-nspawn -b``. The hosts share the
machine's network (no ``--private-network``), so each gets its own ports on 127.0.0.1: SSH, and
the service ports it should use (host variables ``ollama_port`` and ``vllm_port``). Host keys and
root's login key are generated per fleet; the inventory pins the host keys (strict checking).

Commands (also through ``scripts/fleet.sh``)::

    harness.py base                       build the cached base (once), print its path
    harness.py up [-n 3] [--state-dir D]  start N hosts, write D/inventory.yml, wait until booted
    harness.py down [--state-dir D]       power off and remove every host recorded in D/state.json
    harness.py status [--state-dir D]     what D/state.json records and whether it still runs
    harness.py wheelhouse SPEC...         download wheels for SPECs once (cached), print the dir

``up`` first tears down whatever a previous run left in the same state directory, records each
host in ``state.json`` before it starts it, and tears everything down again if any host fails to
boot. ``down`` is idempotent and works from the state file alone (a run that died is cleaned up
by the next ``down`` or ``up``).

Environment: ``VENOM_CACHE_DIR`` (default /var/cache/venom-models) holds the base and the
wheelhouses; ``VENOM_FLEET_MIRROR`` overrides the Debian mirror (default: the machine's own apt
source, else debootstrap's default).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:  # run as a script (scripts/fleet.sh): the checkout's tests.lib
    sys.path.insert(0, REPO)
importlib.import_module("tests.conftest")  # its import makes ansible_collections.venom.models importable

# pylint: disable=wrong-import-position
from ansible_collections.venom.models.plugins.module_utils.errors import LockTimeout  # noqa: E402
from ansible_collections.venom.models.plugins.module_utils.store.locks import FileLock  # noqa: E402
from ansible_collections.venom.models.plugins.module_utils.store.procinfo import is_alive, proc_start_ticks  # noqa: E402
from tests.lib.ports import port_is_free  # noqa: E402

SUITE = "bookworm"
VARIANT = "minbase"
# What every host has. python3 runs Ansible's modules; python3-venv makes the virtualenvs the
# roles create (ensurepip); python3-apt lets ansible.builtin.apt work without installing it first;
# ca-certificates for HTTPS downloads (get_url, pip); procps/iproute2 for ps/ss in verify steps;
# xz-utils/zstd for the release archives the ollama role unpacks; python3-psutil for venom_runtime's
# process discovery on the bare system Python; docker-registry for the mirror role's registry cache.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "python3", "python3-venv",
    "python3-apt", "python3-psutil", "ca-certificates", "docker-registry", "iproute2", "procps", "xz-utils",
    "zstd",
)
# Bump when the steps that prepare the base (below) change: the cache key changes with it.
BASE_RECIPE = 2
# Units that would only add noise or load to a test host. docker-registry.service: the package's
# own registry listens on :5000 of every interface, which the hosts share (the mirror role runs
# its own unit).
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
                "apt-daily-upgrade.service", "systemd-timesyncd.service", "e2scrub_all.timer",
                "fstrim.timer", "getty@tty1.service", "console-getty.service", "docker-registry.service")
DEBIAN_DEPS = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
               "ssh": "openssh-client", "ssh-keygen": "openssh-client"}

DEFAULT_HOSTS = 3
DEFAULT_NAME = "venom-fleet"
DEFAULT_SSH_PORT = 2201
DEFAULT_OLLAMA_PORT = 11501
DEFAULT_VLLM_PORT = 8101
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
GUEST_PIP_CACHE = "/root/.cache/pip"
GUEST_WHEELS = "/srv/venom-wheels"


class FleetError(Exception):
    """A harness failure: the message says what happened and what to do."""


def log(msg: str) -> None:
    print(f"fleet: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> str:
    return os.environ.get("VENOM_CACHE_DIR") or "/var/cache/venom-models"


def default_state_dir(name: str = DEFAULT_NAME) -> str:
    return os.path.join(tempfile.gettempdir(), f"{name}-{os.getuid()}")


def run(argv: list, check: bool = True, timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run(argv, check=False, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check and proc.returncode != 0:
        out = ((proc.stderr or "") + (proc.stdout or "")).strip()
        raise FleetError(f"'{' '.join(map(str, argv))}' failed (rc {proc.returncode}): {out[-3000:]}")
    return proc


# --------------------------------------------------------------------------- machine set-up

def ensure_debian_deps() -> None:
    """Install the machine's Debian packages the harness uses (as root), or say which are missing."""
    missing = sorted({pkg for cmd, pkg in DEBIAN_DEPS.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise FleetError(f"missing Debian packages {' '.join(missing)}; run: sudo apt-get install -y {' '.join(missing)}")
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, timeout=1200)


def require_root() -> None:
    if os.geteuid() != 0:
        raise FleetError("the fleet harness needs root (debootstrap, systemd-nspawn, mounts); run it as root")


def machine_mirror() -> str | None:
    """The Debian mirror this machine's apt uses for the suite, so the base comes from the same place."""
    if os.environ.get("VENOM_FLEET_MIRROR"):
        return os.environ["VENOM_FLEET_MIRROR"]
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        # deb822 stanzas
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.M))
            suites = fields.get("Suites", "").split()
            if SUITE in suites and "deb" in fields.get("Types", "").split():
                for uri in fields.get("URIs", "").split():
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
        # one-line format
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", text, re.M):
            if m.group(2) == SUITE and m.group(1).rstrip("/").endswith("/debian"):
                return m.group(1)
    return None


def base_key() -> str:
    spec = json.dumps({"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES),
                       "masked": sorted(MASKED_UNITS), "recipe": BASE_RECIPE})
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def base_dir() -> str:
    return os.path.join(cache_dir(), f"fleet-base-{base_key()}")


@contextlib.contextmanager
def file_lock(path: str, timeout: float):
    """The library's inter-process lock (its holder is written in the file and named on a timeout)."""
    try:
        with FileLock(path, timeout=timeout, purpose="fleet harness", poll_interval=0.5, remove_on_release=False):
            yield
    except LockTimeout as exc:
        raise FleetError(f"{exc} Another harness run holds it: wait for it to finish.") from None


def _base_ready(path: str) -> bool:
    try:
        with open(os.path.join(path, ".venom-ready"), encoding="utf-8") as fh:
            return fh.read().strip() == base_key()
    except OSError:
        return False


def ensure_base() -> str:
    """The cached base root file system; built once with debootstrap (~60-90 s)."""
    target = base_dir()
    if _base_ready(target):
        return os.path.join(target, "rootfs")
    require_root()
    ensure_debian_deps()
    with file_lock(os.path.join(cache_dir(), ".fleet-base.lock"), timeout=1800):
        if _base_ready(target):
            return os.path.join(target, "rootfs")
        start = time.monotonic()
        tmp = f"{target}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        rootfs = os.path.join(tmp, "rootfs")
        os.makedirs(tmp)
        mirror = machine_mirror()
        log(f"building the host base ({SUITE}, {VARIANT}) in {target}; this takes about a minute, once")
        argv = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}", SUITE, rootfs]
        if mirror:
            argv.append(mirror)
        proc = run(argv, check=False, timeout=1800)
        if proc.returncode != 0:
            tail = ((proc.stdout or "") + (proc.stderr or ""))[-3000:]
            log_file = os.path.join(rootfs, "debootstrap", "debootstrap.log")
            if os.path.exists(log_file):
                with open(log_file, encoding="utf-8", errors="replace") as fh:
                    tail += "\n" + fh.read()[-3000:]
            shutil.rmtree(tmp, ignore_errors=True)
            raise FleetError(f"debootstrap failed (rc {proc.returncode}); check that the Debian mirror "
                             f"{mirror or '(debootstrap default)'} is reachable (VENOM_FLEET_MIRROR overrides it):\n{tail}")
        _prepare_base(rootfs)
        with open(os.path.join(tmp, ".venom-ready"), "w", encoding="utf-8") as fh:
            fh.write(base_key() + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
        for old in glob.glob(os.path.join(cache_dir(), "fleet-base-*")):
            if old != target and not old.endswith(".lock"):
                shutil.rmtree(old, ignore_errors=True)
        log(f"base ready in {time.monotonic() - start:.0f}s ({_du(target)})")
    return os.path.join(target, "rootfs")


def _du(path: str) -> str:
    proc = run(["du", "-sh", path], check=False)
    return proc.stdout.split()[0] if proc.stdout else "?"


def _prepare_base(rootfs: str) -> None:
    """What every host shares: no host keys (each host gets its own), an empty machine id (each
    boot gets its own), quiet timers masked, apt caches dropped."""
    for key in glob.glob(os.path.join(rootfs, "etc/ssh/ssh_host_*")):
        os.unlink(key)
    with open(os.path.join(rootfs, "etc/machine-id"), "w", encoding="ascii"):
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(rootfs, "var/lib/dbus/machine-id"))
    for unit in MASKED_UNITS:
        link = os.path.join(rootfs, "etc/systemd/system", unit)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink("/dev/null", link)
    # sshd: only keys, root by key only; the port and address come per host (test.conf)
    with open(os.path.join(rootfs, "etc/ssh/sshd_config.d/00-venom-fleet.conf"), "w", encoding="utf-8") as fh:
        fh.write("PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                 "UseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n")
    for d in glob.glob(os.path.join(rootfs, "var/cache/apt/archives/*.deb")):
        os.unlink(d)
    for d in glob.glob(os.path.join(rootfs, "var/lib/apt/lists/*_Packages")):
        os.unlink(d)


# --------------------------------------------------------------------------- hosts

@dataclasses.dataclass
class Host:
    name: str
    index: int
    ssh_port: int
    ollama_port: int
    vllm_port: int
    dir: str
    rootfs: str
    overlay: bool = False
    pid: int | None = None
    pid_start: int | None = None  # start time, clock ticks since boot (store/procinfo.py)
    init_pid: int | None = None
    init_start: int | None = None
    pidns: str | None = None
    log: str = ""

    def __post_init__(self):
        # state files of harness versions that recorded the start time as text
        self.pid_start, self.init_start = (int(v) if isinstance(v, str) else v for v in (self.pid_start, self.init_start))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _alive(pid: int | None, start: int | None) -> bool:
    """The process that was recorded (same start time) still runs. A child of this process that
    exited is reaped here (it would stay a zombie otherwise)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    return is_alive({"pid": pid, "pid_start": start}, strict=True)


def _pidns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _container_init(nspawn_pid: int) -> int | None:
    """The host-side pid of the container's PID 1: nspawn's child in another pid namespace."""
    own = _pidns(os.getpid())
    try:
        children = psutil.Process(nspawn_pid).children()
    except psutil.Error:
        return None
    return next((c.pid for c in children if _pidns(c.pid) not in (None, own)), None)


def _processes_in_pidns(pidns: str | None) -> list[int]:
    if not pidns:
        return []
    return [pid for pid in psutil.pids() if _pidns(pid) == pidns]


def _mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return any(line.split()[4] == real for line in fh)


def _processes_rooted_in(path: str) -> list[int]:
    """Processes whose root directory is ``path`` (a host's processes that outlived nspawn)."""
    real = os.path.realpath(path)
    pids = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):  # psutil has no root directory: the link is read here
            if os.readlink(f"/proc/{pid}/root") == real:
                pids.append(pid)
    return pids


class Fleet:
    """The hosts recorded in one state directory."""

    def __init__(self, state_dir: str | None = None, name: str = DEFAULT_NAME):
        self.state_dir = os.path.abspath(state_dir or default_state_dir(name))
        self.name = name
        self.state_file = os.path.join(self.state_dir, "state.json")
        self.inventory = os.path.join(self.state_dir, "inventory.yml")
        self.key = os.path.join(self.state_dir, "id_ed25519")
        self.known_hosts = os.path.join(self.state_dir, "known_hosts")
        self.hosts: list[Host] = []
        self._lock = threading.Lock()

    # state file ----------------------------------------------------------
    def load(self) -> dict:
        try:
            with open(self.state_file, encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise FleetError(f"cannot read {self.state_file}: {exc}; remove the hosts by hand "
                             f"(kill the systemd-nspawn processes, unmount and delete {self.state_dir}/hosts)") from exc
        self.hosts = [Host(**h) for h in doc.get("hosts", [])]
        return doc

    def save(self) -> None:
        with self._lock:
            doc = {"name": self.name, "state_dir": self.state_dir, "inventory": self.inventory,
                   "key": self.key, "known_hosts": self.known_hosts, "hosts": [h.to_dict() for h in self.hosts]}
            tmp = self.state_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2)
            os.replace(tmp, self.state_file)

    # up ------------------------------------------------------------------
    def up(self, count: int = DEFAULT_HOSTS, ssh_port: int = DEFAULT_SSH_PORT, ollama_port: int = DEFAULT_OLLAMA_PORT,
           vllm_port: int = DEFAULT_VLLM_PORT, wheels: str | None = None, timeout: float = BOOT_TIMEOUT,
           groups: dict | None = None) -> dict:
        require_root()
        if count < 1:
            raise FleetError("the number of hosts must be at least 1")
        base = ensure_base()
        self.down(quiet=True)  # whatever a previous run in this state directory left behind
        os.makedirs(self.state_dir, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        busy = [p for i in range(count) for p in (ssh_port + i, ollama_port + i, vllm_port + i) if not port_is_free(p)]
        if busy:
            raise FleetError(f"ports {busy} on 127.0.0.1 are in use; stop what holds them (ss -ltnp) or "
                             "choose other port bases (--ssh-port, --ollama-port, --vllm-port)")
        start = time.monotonic()
        self._keys()
        os.makedirs(os.path.join(self.state_dir, "hosts"), exist_ok=True)
        wheels = wheels or os.path.join(cache_dir(), "fleet-wheels")
        os.makedirs(wheels, exist_ok=True)
        pip_cache = os.path.expanduser("~/.cache/pip")
        os.makedirs(pip_cache, exist_ok=True)
        self.hosts = []
        for i in range(count):
            name = f"{self.name}-{i + 1}"
            hdir = os.path.join(self.state_dir, "hosts", name)
            self.hosts.append(Host(name=name, index=i + 1, ssh_port=ssh_port + i, ollama_port=ollama_port + i,
                                   vllm_port=vllm_port + i, dir=hdir, rootfs=os.path.join(hdir, "root"),
                                   log=os.path.join(self.state_dir, f"{name}.log")))
        self.save()
        try:
            errors: list = []
            threads = [threading.Thread(target=self._start_host, args=(h, base, wheels, pip_cache, errors)) for h in self.hosts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise FleetError("; ".join(errors))
            self._write_inventory(groups or {})
            self._wait_booted(timeout)
        except BaseException:
            log("start-up failed: tearing the fleet down")
            with contextlib.suppress(Exception):
                self.down(quiet=True)
            raise
        took = time.monotonic() - start
        log(f"{count} host(s) up in {took:.1f}s; inventory {self.inventory}")
        return {"inventory": self.inventory, "state_dir": self.state_dir, "seconds": round(took, 1),
                "hosts": [h.to_dict() for h in self.hosts]}

    def _keys(self) -> None:
        if not os.path.exists(self.key):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.name}-harness", "-f", self.key])
        with open(self.known_hosts, "w", encoding="utf-8"):
            pass

    def _start_host(self, host: Host, base: str, wheels: str, pip_cache: str, errors: list) -> None:
        try:
            self._make_rootfs(host, base)
            self._customize(host)
            self._boot(host, wheels, pip_cache)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(f"{host.name}: {exc}")

    def _make_rootfs(self, host: Host, base: str) -> None:
        os.makedirs(host.dir, exist_ok=True)
        upper, work = os.path.join(host.dir, "upper"), os.path.join(host.dir, "work")
        for d in (upper, work, host.rootfs):
            os.makedirs(d, exist_ok=True)
        proc = run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={work}",
                    host.rootfs], check=False)
        if proc.returncode == 0:
            host.overlay = True
        else:  # no overlayfs here: a full copy (a few seconds per host)
            log(f"{host.name}: overlayfs unavailable ({proc.stderr.strip()}); copying the base")
            os.rmdir(host.rootfs)
            run(["cp", "-a", "--reflink=auto", base, host.rootfs], timeout=600)
        self.save()

    def _customize(self, host: Host) -> None:
        r = host.rootfs
        with open(os.path.join(r, "etc/hostname"), "w", encoding="utf-8") as fh:
            fh.write(host.name + "\n")
        with open(os.path.join(r, "etc/hosts"), "w", encoding="utf-8") as fh:
            fh.write(f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        with open(os.path.join(r, "etc/ssh/sshd_config.d/test.conf"), "w", encoding="utf-8") as fh:
            fh.write(f"Port {host.ssh_port}\nListenAddress 127.0.0.1\n")
        hostkey = os.path.join(r, "etc/ssh/ssh_host_ed25519_key")
        for f in (hostkey, hostkey + ".pub"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", hostkey])
        with open(hostkey + ".pub", encoding="ascii") as fh:
            pub = fh.read().split()
        with self._lock, open(self.known_hosts, "a", encoding="ascii") as fh:
            fh.write(f"[127.0.0.1]:{host.ssh_port} {pub[0]} {pub[1]}\n")
        ssh_dir = os.path.join(r, "root/.ssh")
        os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
        os.chmod(ssh_dir, 0o700)
        shutil.copyfile(self.key + ".pub", os.path.join(ssh_dir, "authorized_keys"))
        os.chmod(os.path.join(ssh_dir, "authorized_keys"), 0o600)
        # The machine's TLS trust (a mirror or an egress proxy may use a local CA): HTTPS from the
        # hosts (pip, get_url) trusts what the machine trusts, and pip uses that bundle.
        bundle = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
        if os.path.isfile(bundle):
            shutil.copyfile(bundle, os.path.join(r, "etc/ssl/certs/ca-certificates.crt"))
            with open(os.path.join(r, "etc/pip.conf"), "w", encoding="utf-8") as fh:
                fh.write("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        for d in (GUEST_PIP_CACHE, GUEST_WHEELS):
            os.makedirs(os.path.join(r, d.lstrip("/")), exist_ok=True)

    def _boot(self, host: Host, wheels: str, pip_cache: str) -> None:
        os.makedirs("/run/systemd/nspawn", exist_ok=True)  # nspawn needs it; the machine may not run systemd
        argv = ["systemd-nspawn", "-D", host.rootfs, "--boot", f"--machine={host.name}", "--register=no",
                "--keep-unit", "--console=passive", "--resolv-conf=copy-host", "--timezone=off",
                f"--bind={pip_cache}:{GUEST_PIP_CACHE}", f"--bind-ro={wheels}:{GUEST_WHEELS}"]
        with open(host.log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                    start_new_session=True)
        host.pid, host.pid_start = proc.pid, proc_start_ticks(proc.pid)
        self.save()

    def _ssh_argv(self, host: Host, *command: str, connect_timeout: int = 5) -> list:
        return ["ssh", "-q", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"ConnectTimeout={connect_timeout}",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-i", self.key, "-p", str(host.ssh_port), "root@127.0.0.1", *command]

    def ssh(self, host: Host, *command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command on ``host`` as root: one argument is a shell command line, several are
        an argv (quoted for the remote shell)."""
        line = command[0] if len(command) == 1 else " ".join(shlex.quote(c) for c in command)
        return run(self._ssh_argv(host, line), check=check, timeout=timeout)

    def _wait_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.hosts)
        states: dict = {}
        while pending and time.monotonic() < deadline:
            for host in list(pending):
                if not _alive(host.pid, host.pid_start):
                    raise FleetError(f"{host.name}: systemd-nspawn exited during boot; its log {host.log}:\n{_tail(host.log)}")
                if host.init_pid is None:
                    init = _container_init(host.pid)
                    if init is not None:
                        host.init_pid, host.init_start, host.pidns = init, proc_start_ticks(init), _pidns(init)
                        self.save()
                try:
                    proc = self.ssh(host, "systemctl", "is-system-running", timeout=15, check=False)
                except subprocess.TimeoutExpired:
                    continue
                state = proc.stdout.strip()
                states[host.name] = state or f"ssh rc {proc.returncode}"
                if state == "degraded":
                    state = self._repair(host)
                if state in ("running", "degraded"):
                    pending.remove(host)
            if pending:
                time.sleep(0.5)
        if pending:
            raise FleetError(f"hosts not booted after {timeout:.0f}s: "
                             + ", ".join(f"{h.name} ({states.get(h.name, 'no answer')}; log {h.log})" for h in pending))

    def _repair(self, host: Host, rounds: int = 3) -> str:
        """Start the units that failed during boot again. Booting several guests at once on a
        sandboxed kernel sometimes fails a unit's start with status 219/CGROUP; a second start
        succeeds. Returns the final state; a unit that keeps failing is named in the log."""
        failed = ""
        for _attempt in range(rounds):
            failed = self.ssh(host, "systemctl --failed --no-legend --plain | awk '{print $1}'", check=False).stdout.split()
            if not failed:
                break
            log(f"{host.name}: starting again the units that failed at boot: {' '.join(failed)}")
            self.ssh(host, "systemctl", "reset-failed", check=False)
            self.ssh(host, "systemctl", "restart", *failed, timeout=60, check=False)
        state = self.ssh(host, "systemctl", "is-system-running", check=False).stdout.strip()
        if state != "running":
            log(f"{host.name}: {state} after boot; failed units: {' '.join(failed)}")
        return state

    def _write_inventory(self, groups: dict) -> None:
        common = (f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes")
        hosts = {h.name: {"ansible_port": h.ssh_port, "ollama_port": h.ollama_port, "vllm_port": h.vllm_port,
                          "fleet_index": h.index} for h in self.hosts}
        doc = {"all": {
            "vars": {"ansible_host": "127.0.0.1", "ansible_user": "root", "ansible_connection": "ssh",
                     "ansible_ssh_private_key_file": self.key, "ansible_ssh_common_args": common,
                     "ansible_python_interpreter": "/usr/bin/python3", "ansible_pipelining": True,
                     "fleet_wheel_dir": GUEST_WHEELS, "fleet_pip_cache": GUEST_PIP_CACHE},
            "children": {"fleet": {"hosts": hosts}},
        }}
        for group, indexes in groups.items():
            doc["all"]["children"][group] = {"hosts": {self.hosts[i - 1].name: None for i in indexes}}
        text = "# Written by the venom.models fleet harness (tests/fleet/harness.py); removed by 'down'.\n"
        text += _to_yaml(doc)
        with open(self.inventory, "w", encoding="utf-8") as fh:
            fh.write(text)

    # down ----------------------------------------------------------------
    def down(self, quiet: bool = False) -> list:
        """Power off, stop and remove every recorded host; idempotent. Returns the names removed."""
        self.load()
        if not self.hosts and not os.path.isdir(os.path.join(self.state_dir, "hosts")):
            for f in (self.state_file, self.inventory):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f)
            return []
        require_root()
        # 1. ask each running host to power off: SIGTERM to nspawn makes it shut the guest down in
        #    order; a guest whose nspawn died gets systemd's own poweroff signal (SIGRTMIN+4)
        for host in self.hosts:
            if _alive(host.pid, host.pid_start):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host.pid, signal.SIGTERM)
            elif _alive(host.init_pid, host.init_start):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host.init_pid, signal.SIGRTMIN + 4)

        def running(h: Host) -> bool:
            return _alive(h.pid, h.pid_start) or _alive(h.init_pid, h.init_start)

        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and any(running(h) for h in self.hosts):
            time.sleep(0.2)
        # 2. whatever did not stop in time: the guest's PID 1 (its whole pid namespace dies with
        #    it), then nspawn, then anything left in that namespace
        for host in self.hosts:
            if running(host):
                log(f"{host.name}: did not power off within {STOP_TIMEOUT:.0f}s; killing it")
            for pid, start in ((host.init_pid, host.init_start), (host.pid, host.pid_start)):
                if _alive(pid, start):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            _kill_all(lambda h=host: _processes_in_pidns(h.pidns), host.name)
        host_dirs = sorted(set([h.dir for h in self.hosts] + glob.glob(os.path.join(self.state_dir, "hosts", "*"))))
        for hdir in host_dirs:
            _kill_all(lambda d=hdir: _processes_rooted_in(os.path.join(d, "root")), os.path.basename(hdir))
        # 3. unmount and remove
        removed = []
        for hdir in host_dirs:
            root = os.path.join(hdir, "root")
            for _attempt in range(20):
                if not _mounted(root):
                    break
                run(["umount", root], check=False)
                if _mounted(root):
                    time.sleep(0.25)
            if _mounted(root):
                run(["umount", "-l", root], check=False)
            shutil.rmtree(hdir, ignore_errors=True)
            if os.path.exists(hdir):
                raise FleetError(f"could not remove {hdir}; check 'grep {hdir} /proc/self/mountinfo' and remove it by hand")
            removed.append(os.path.basename(hdir))
        for f in (self.state_file, self.inventory, self.known_hosts):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        for f in glob.glob(os.path.join(self.state_dir, "*.log")):
            os.unlink(f)
        if removed and not quiet:
            log(f"removed {', '.join(removed)}")
        self.hosts = []
        return removed

    def status(self) -> dict:
        doc = self.load()
        return {"state_dir": self.state_dir, "inventory": doc.get("inventory"),
                "hosts": [dict(h.to_dict(), running=_alive(h.pid, h.pid_start)) for h in self.hosts]}


def _kill_all(find, what: str) -> None:
    """SIGKILL what ``find()`` lists until it lists nothing (a host's leftover processes)."""
    for _attempt in range(50):
        left = find()
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise FleetError(f"{what}: processes {find()} survive SIGKILL; stop them by hand, then run 'down' again")


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _to_yaml(doc) -> str:
    try:
        import yaml  # pylint: disable=import-outside-toplevel
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    except ImportError:  # JSON is YAML
        return json.dumps(doc, indent=2) + "\n"


# --------------------------------------------------------------------------- wheelhouse

def wheelhouse(specs: list, python: str | None = None, link: str | None = None) -> str:
    """Download wheels for ``specs`` (and their dependencies) once into the cache, with this
    machine's pip configuration (its index, find-links, certificates); return the directory.
    Hosts see ``<cache>/fleet-wheels`` read-only at /srv/venom-wheels, so a role can install from
    it with ``--no-index --find-links`` as on an air-gapped host. ``link`` also names it by a
    stable relative symbolic link ``<cache>/fleet-wheels/<link>`` (seen by the hosts too)."""
    target = _wheelhouse(specs, python)
    if link:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", link):
            raise FleetError(f"--link {link!r}: use a plain name (letters, digits, . _ -)")
        path = os.path.join(os.path.dirname(target), link)
        if not (os.path.islink(path) and os.readlink(path) == os.path.basename(target)):
            tmp = f"{path}.tmp-{os.getpid()}"
            os.symlink(os.path.basename(target), tmp)
            os.replace(tmp, path)
    return target


def _wheelhouse(specs: list, python: str | None) -> str:
    python = python or shutil.which("python3.11") or sys.executable
    pyver = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    key = hashlib.sha256(json.dumps({"specs": sorted(specs), "python": pyver}).encode()).hexdigest()[:12]
    root = os.path.join(cache_dir(), "fleet-wheels")
    target = os.path.join(root, key)
    ready = os.path.join(target, ".venom-ready")
    if os.path.exists(ready):
        return target
    with file_lock(os.path.join(cache_dir(), ".fleet-wheels.lock"), timeout=3600):
        if os.path.exists(ready):
            return target
        start = time.monotonic()
        log(f"downloading wheels for {' '.join(specs)} into {target} (once)")
        tmp = target + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        proc = run([python, "-m", "pip", "download", "-q", "--progress-bar", "off", "--only-binary=:all:",
                    "-d", tmp, *specs], check=False, timeout=3600)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            err = "\n".join(line for line in (proc.stderr or "").splitlines() if "is ignored: it is neither" not in line)
            raise FleetError(f"pip download {' '.join(specs)} failed (rc {proc.returncode}): {err[-3000:]}\n"
                             "A '+cpu' torch is on no public index: put its wheel in a directory named in pip's "
                             "find-links (pip.conf or PIP_FIND_LINKS).")
        with open(os.path.join(tmp, ".venom-ready"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(specs) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
        log(f"wheelhouse ready in {time.monotonic() - start:.0f}s ({_du(target)})")
    return target


# --------------------------------------------------------------------------- CLI

def _parse_groups(values: list) -> dict:
    groups = {}
    for value in values or []:
        name, _sep, idx = value.partition("=")
        if not name or not idx:
            raise FleetError(f"--group {value!r}: use NAME=1,2 (host numbers from 1)")
        groups[name] = [int(i) for i in idx.split(",")]
    return groups


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("base", help="build the cached host base (once) and print its path")
    for cmd in ("up", "down", "status"):
        p = sub.add_parser(cmd)
        p.add_argument("--state-dir", help="where the state file, keys, inventory and host trees live")
        p.add_argument("--name", default=DEFAULT_NAME, help="host name prefix (hosts are NAME-1..N)")
        if cmd == "up":
            p.add_argument("-n", "--hosts", type=int, default=DEFAULT_HOSTS)
            p.add_argument("--ssh-port", type=int, default=DEFAULT_SSH_PORT, help="SSH port of host 1 (host i: +i-1)")
            p.add_argument("--ollama-port", type=int, default=DEFAULT_OLLAMA_PORT)
            p.add_argument("--vllm-port", type=int, default=DEFAULT_VLLM_PORT)
            p.add_argument("--wheels", help="directory shown read-only to the hosts at /srv/venom-wheels")
            p.add_argument("--group", action="append", help="extra inventory group: NAME=1,3")
            p.add_argument("--timeout", type=float, default=BOOT_TIMEOUT)
    p = sub.add_parser("wheelhouse")
    p.add_argument("specs", nargs="+")
    p.add_argument("--python", help="the Python whose pip downloads (and whose version the wheels are for)")
    p.add_argument("--link", help="also make <cache>/fleet-wheels/LINK point at the wheelhouse")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "base":
            print(ensure_base())
        elif args.cmd == "wheelhouse":
            print(wheelhouse(args.specs, args.python, args.link))
        else:
            fleet = Fleet(args.state_dir, args.name)
            if args.cmd == "up":
                out = fleet.up(args.hosts, args.ssh_port, args.ollama_port, args.vllm_port, args.wheels,
                               args.timeout, _parse_groups(args.group))
                print(json.dumps(out, indent=2))
            elif args.cmd == "down":
                fleet.down()
            else:
                print(json.dumps(fleet.status(), indent=2))
    except FleetError as exc:
        log(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
