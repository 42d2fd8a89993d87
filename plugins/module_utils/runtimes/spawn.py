# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Start a long-lived detached child from module code: the one place that forks and execs.

A fork whose child makes only system calls (setsid, chdir, dup2) until ``execve``: how
ansible-core's own modules detach a daemon (``ansible.module_utils.service.fork_process``).
ansible-test sanity (2.21) refuses ``os.posix_spawn``, ``os.spawn*``, ``os.system`` and
``subprocess`` in module code: those are for commands that end, which a module runs with
``AnsibleModule.run_command``. Used by the runtime start (``process``) and the log rotator
(``logsize``).
"""
from __future__ import annotations

import os


def spawn_detached(exe: str, argv: list[str], env: dict, *, cwd: str = "/", stdin: int | None = None,
                   stdout: int | None = None, stderr: int | None = None, cpus=None) -> int:
    """Start ``exe`` with ``argv`` and ``env`` in a new session in ``cwd``; return its pid once it runs ``exe``.

    ``stdin``, ``stdout`` and ``stderr`` are file descriptors for the child's 0, 1 and 2
    (``None``: /dev/null). ``cpus``: the CPUs the child and everything it starts may run on
    (``sched_setaffinity`` before ``execve``; None: those of the caller). A child that cannot exec reports the error through a close-on-exec
    pipe and the parent raises it as an ``OSError``, as ``posix_spawn`` does.
    """
    read_end, write_end = os.pipe()  # both close-on-exec: EOF in the parent means execve succeeded
    try:
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.setsid()
                os.chdir(cwd)
                if cpus:
                    os.sched_setaffinity(0, cpus)
                fds = [stdin, stdout, stderr]
                modes = [os.O_RDONLY, os.O_WRONLY, os.O_WRONLY]
                # every source is opened or duplicated above 2 first, so no dup2 overwrites another's source
                sources = [os.dup(fd) if fd is not None else os.open(os.devnull, mode) for fd, mode in zip(fds, modes)]
                for target, source in enumerate(sources):
                    os.dup2(source, target)
                os.execve(exe, argv, env)
            except OSError as exc:
                os.write(write_end, f"{exc.errno}:{exc.filename or ''}".encode("utf-8", "replace"))
            finally:
                os._exit(127)  # never return into the caller's code
        os.close(write_end)
        write_end = -1
        report = b""
        while chunk := os.read(read_end, 4096):
            report += chunk
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if report:
        os.waitpid(pid, 0)
        code, _sep, filename = report.decode("utf-8", "replace").partition(":")
        raise OSError(int(code), os.strerror(int(code)), filename or None)
    return pid
