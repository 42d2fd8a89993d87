# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model's progress on the console (its action plugin), through ansible-playbook.

A real olah mirror behind a rate-limiting proxy on loopback (tests/lib/throttle_proxy.py) makes a
6 MB model download for about 12 seconds; the play prints progress lines (percent, bytes done and
total, rate, ETA) while it runs, with no async/poll in the task. The result of the task is the
same as in the foreground (``venom_models_progress_interval: 0``), with a diff too, and a
``no_log`` task prints nothing about the model. (Check mode always runs in the foreground.)

Over SSH the plugin does the same through the connection (Ansible's async wrapper and a shell
command reading the journal); this file runs the local connection, the fleet tier runs playbooks
over SSH.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.lib.ansible_run import run_playbook, run_task
from tests.lib.olah_env import running_mirror, slow_model_files, tiny_gemma_files
from tests.lib.throttle_proxy import ThrottleProxy

MODULE = "venom.models.venom_model"
SLOW = "venom-test/slow-progress"
SLOW_BYTES = 6 * 1024 * 1024
RATE = 512 * 1024  # bytes per second through the proxy
LINE = re.compile(r"^venom_model \[localhost\] venom-test/slow-progress: install (\d+\.\d)% "
                  r"([\d.]+ [kMG]?B) / ([\d.]+ [kMG]?B), (rate measuring|[\d.]+ [kMG]?B/s)(, ETA \w+)?$", re.M)
VOLATILE = ("operation",)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    with running_mirror(str(tmp_path_factory.mktemp("olah")), {
            SLOW: slow_model_files(SLOW_BYTES, seed=7), "venom-test/progress-gemma": tiny_gemma_files()}) as m:
        yield m


def test_progress_lines_while_a_throttled_download_runs(mirror, tmp_path):
    with ThrottleProxy(mirror.endpoint, RATE) as proxy:
        t0 = time.monotonic()
        res = run_task(MODULE, {"name": SLOW, "endpoint": proxy.endpoint, "models_dir": str(tmp_path / "models")},
                       task_extra={"vars": {"venom_models_progress_interval": 1}})
        seconds = time.monotonic() - t0
    out = res.stdout
    assert res.rc == 0, out[-4000:] + res.stderr[-3000:]
    assert res.task()["changed"] is True and res.task()["action"] == "install"
    assert proxy.bytes_sent >= SLOW_BYTES and seconds >= SLOW_BYTES / RATE
    lines = LINE.findall(out)
    assert len(lines) >= 3, f"{len(lines)} progress lines:\n{out[-4000:]}"
    percents = [float(line[0]) for line in lines]
    assert percents == sorted(percents) and percents[0] < 100.0 and percents[-2] < 100.0, percents
    assert len(set(percents)) >= 3, percents  # the download moved between the lines: printed while it ran
    assert all(line[2].endswith("MB") and line[2].startswith("6.") for line in lines), lines
    rates = [line[3] for line in lines if line[3].endswith("B/s")]
    assert rates and all(line[4].startswith(", ETA ") for line in lines if line[3].endswith("B/s")), lines
    # the throttle is 512 KiB/s (0.52 MB/s): the measured rate is near it
    assert any(300 <= _kb(r) <= 800 for r in rates), rates
    # progress lines come before the task's result line
    assert out.index("venom_model [localhost]") < out.index("changed: [localhost]")


def _kb(rate: str) -> float:
    value, unit = rate.split()
    return float(value) * {"B/s": 0.001, "kB/s": 1, "MB/s": 1000, "GB/s": 10 ** 6}[unit]


def _comparable(result: dict, models_dir: str) -> dict:
    out = {k: v for k, v in result.items() if k not in VOLATILE and not k.startswith("_")}
    text = repr(out).replace(models_dir, "MODELS")
    text = re.sub(r"'(installed_at|updated_at)': '[^']*'", r"'\1': 'T'", text)
    text = re.sub(r"'disk_free(_after)?_bytes': \d+", r"'disk_free\1_bytes': 0", text)
    return text


@pytest.fixture(scope="module")
def three_ways(mirror, tmp_path_factory):
    """One play: the same install in the foreground, in the background, and with no_log."""
    root = str(tmp_path_factory.mktemp("three-ways"))
    tasks = []
    for mode, interval, extra in (("foreground", 0, {}), ("background", 5, {}), ("no_log", 0.1, {"no_log": True})):
        args = {"name": "venom-test/progress-gemma", "endpoint": mirror.endpoint, "models_dir": f"{root}/{mode}"}
        if mode == "no_log":
            args["name"] = SLOW
        tasks.append({"name": mode, MODULE: args, "vars": {"venom_models_progress_interval": interval}, **extra})
    res = run_playbook([{"name": "three ways", "hosts": "localhost", "gather_facts": False, "tasks": tasks}], diff=True)
    assert res.rc == 0, res.stdout[-3000:]
    return root, res


def test_result_is_the_modules_own(three_ways):
    """The background run returns what the foreground run returns, diff included."""
    root, res = three_ways
    results = {}
    for mode in ("foreground", "background"):
        result = res.task(mode)
        for key in ("ansible_job_id", "results_file", "started", "finished", "stdout", "stderr"):
            assert key not in result, f"{mode}: {key} in the result"
        assert "diff" in result and result["changed"] is True
        results[mode] = _comparable(result, f"{root}/{mode}")
    assert results["background"] == results["foreground"]


def test_no_log_prints_nothing_about_the_model(three_ways):
    _root, res = three_ways
    assert res.task("no_log")["changed"] is True
    assert SLOW not in res.stdout
    # the no_log task's part of the output (the background task before it may print a line of its
    # own small install when a poll finds it running)
    part = res.stdout.split("TASK [no_log]", 1)[1].split("PLAY RECAP", 1)[0]
    assert "venom_model [" not in part, part
