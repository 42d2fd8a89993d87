# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' logrotate rule with the real logrotate (Debian package logrotate).

A writer holds its log open in append mode, as systemd does for ``StandardOutput=append:``;
the rule the role renders (roles/common/templates/logrotate.j2, through Ansible's template
module) rotates the file once it is past its size, and the writer keeps logging into the
truncated file without a restart.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.lib.ansible_run import run_playbook
from tests.lib.tools import require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRITER = ("import os, sys, time\n"
          "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)\n"
          "for i in range(10 ** 9):\n"
          "    os.write(fd, f'line {i:08d} '.encode() + b'x' * 200 + b'\\n')\n"
          "    time.sleep(0.001)\n")


def _logrotate() -> str:
    return require("logrotate", "logrotate")


def test_role_rule_rotates_a_log_past_its_size_and_the_writer_keeps_logging(tmp_path):
    log = tmp_path / "vllm.log"
    rule = tmp_path / "venom-models-vllm"
    play = {"name": "render", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "rule", "ansible.builtin.template": {
            "src": os.path.join(REPO, "roles", "common", "templates", "logrotate.j2"), "dest": str(rule), "mode": "0644"},
        "vars": {"_common_logrotate": {"name": "vllm", "path": str(log), "size": "64k", "keep": 2}}}]}
    res = run_playbook([play])
    assert res.rc == 0, res.stdout[-3000:]
    state = tmp_path / "logrotate.state"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log)])  # pylint: disable=consider-using-with
    try:
        debug = subprocess.run([_logrotate(), "-d", "-s", str(state), str(rule)], capture_output=True, text=True,
                               check=False)
        assert debug.returncode == 0, debug.stdout + debug.stderr
        deadline = time.monotonic() + 20
        while (not log.exists() or log.stat().st_size <= 64 * 1024) and time.monotonic() < deadline:
            time.sleep(0.05)
        run = subprocess.run([_logrotate(), "-s", str(state), str(rule)], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        rotated = tmp_path / "vllm.log.1"
        assert rotated.exists() and rotated.stat().st_size > 64 * 1024
        last_rotated = int(rotated.read_text().rstrip("\n").rsplit("\n", 1)[-1].split()[1])
        time.sleep(0.5)
        text = log.read_text(errors="replace")
        numbers = [int(line.split()[1]) for line in text.splitlines() if line.startswith("line ")]
        assert numbers and numbers[0] > last_rotated, "the live file was truncated: it starts after the rotated lines"
        assert text.startswith("line "), "no hole of NUL bytes: the writer appends at the new end"
        assert numbers[-1] > last_rotated + 50, "the writer keeps logging into the truncated file"
        assert writer.poll() is None
        for _round in range(3):  # more rotations: at most "keep" old files, the older ones compressed
            time.sleep(0.6)
            subprocess.run([_logrotate(), "-s", str(state), str(rule)], check=True, capture_output=True)
        assert sorted(p.name for p in tmp_path.glob("vllm.log*")) == ["vllm.log", "vllm.log.1", "vllm.log.2.gz"]
    finally:
        writer.kill()
        writer.wait()
