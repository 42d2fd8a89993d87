# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of ``venom.models.venom_model``: the module, with its progress on the console.

A download of many GB runs for minutes or hours. This plugin runs the module in the background on
the host (Ansible's own async wrapper, over any connection: local, SSH) and, while it runs, reads
the running records of the host's operations journal (``<models_dir>/.venom/operations``) and
prints, at least every ``venom_models_progress_interval`` seconds (a variable, default 5; 0 runs the
module in the foreground without progress), one line per model being installed: percent, bytes
done and total, rate and ETA. The task's result is the module's own, unchanged: the background job's
bookkeeping (job id, results file, started/finished) is removed and its status file is cleaned up.

The module runs in the foreground, exactly as without this plugin, in check mode, with
``state: absent`` (no download), when the task sets ``async`` itself, and when the task has
``no_log`` (then nothing about it is printed).
"""
from __future__ import annotations

import time

from ansible.playbook.task import Task
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.venom.models.plugins.module_utils.store.paths import DEFAULT_MODELS_DIR
from ansible_collections.venom.models.plugins.plugin_utils.progress import (
    ProgressTracker, journal_command, parse_records, pick_operation)

display = Display()

DEFAULT_INTERVAL = 5.0
BACKGROUND_LIMIT = 7 * 24 * 3600  # the async wrapper's time limit: longer than any download
POLL_STEPS = (0.3, 0.7, 1.0, 2.0)  # quick first polls, so a task with nothing to do stays quick
# what the async wrapper and async_status add to a module's result
_JOB_KEYS = ("ansible_job_id", "started", "finished", "results_file")


class ActionModule(ActionBase):
    """Run venom_model in the background and print its progress from the journal."""

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        interval = self._interval(task_vars)
        if (self._task.async_val or self._task.check_mode or self._task.no_log or interval <= 0
                or self._task.args.get("state") == "absent" or self._connection.has_native_async
                or self._connection.always_pipeline_modules):
            return self._foreground(result, task_vars)
        return self._background(result, task_vars, interval)

    def _interval(self, task_vars) -> float:
        value = task_vars.get("venom_models_progress_interval", DEFAULT_INTERVAL)
        try:
            return float(self._templar.template(value))
        except (TypeError, ValueError):
            display.warning(f"venom_models_progress_interval must be a number of seconds, not {value!r}; "
                            f"using {DEFAULT_INTERVAL:g}.")
            return DEFAULT_INTERVAL

    def _foreground(self, result, task_vars):
        """What the 'normal' action plugin does (with the task's own async, if any)."""
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _background(self, result, task_vars, interval: float):
        self._task.async_val = BACKGROUND_LIMIT
        try:
            started = self._execute_module(task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = 0
        jid = started.get("ansible_job_id")
        if started.get("failed") or not jid:
            return merge_hash(result, started)
        status = self._poll(jid, task_vars, interval)
        for key in _JOB_KEYS:
            status.pop(key, None)
        for key in ("stdout", "stderr", "stdout_lines", "stderr_lines"):  # async_status adds them empty
            if status.get(key) in ("", []):
                status.pop(key)
        return merge_hash(result, status)

    def _async_status(self, jid: str, mode: str, task_vars) -> dict:
        task = Task.load({"action": "async_status", "args": {"jid": jid, "mode": mode},
                          "check_mode": False, "environment": self._task.environment})
        handler = self._shared_loader_obj.action_loader.get(
            "ansible.legacy.async_status", task=task, connection=self._connection, play_context=self._play_context,
            loader=self._loader, templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        try:
            return handler.run(task_vars=task_vars)
        finally:
            handler.cleanup(force=True)

    def _poll(self, jid: str, task_vars, interval: float) -> dict:
        args = self._task.args
        name, provider = str(args.get("name")), str(args.get("provider") or "huggingface")
        command = journal_command(str(args.get("models_dir") or DEFAULT_MODELS_DIR))
        host = task_vars.get("inventory_hostname", "?")
        tracker, printed, step = ProgressTracker(), None, 0
        t_start = time.monotonic()
        while True:
            time.sleep(POLL_STEPS[min(step, len(POLL_STEPS) - 1)])
            step += 1
            try:
                status = self._async_status(jid, "status", task_vars)
            except Exception as exc:  # pylint: disable=broad-except  # a network blip: poll again
                display.vvvv(f"venom_model: polling job {jid} failed, retrying: {exc}")
                self._reset_connection()
                continue
            if status.get("finished") or (status.get("failed") and status.get("_ansible_parsed")):
                break
            if time.monotonic() - t_start > BACKGROUND_LIMIT:
                return {"failed": True, "msg": f"venom_model did not finish within {BACKGROUND_LIMIT}s"}
            rec = self._running_operation(command, name, provider)
            if rec is None:
                continue
            tracker.add(rec)
            now = time.monotonic()
            if printed is None or now - printed >= interval:
                display.display(tracker.line(rec, host))
                printed = now
        try:
            self._async_status(jid, "cleanup", task_vars)
        except Exception as exc:  # pylint: disable=broad-except  # the result is there; the status file stays
            display.vvvv(f"venom_model: removing the status file of job {jid} failed: {exc}")
        return status

    def _running_operation(self, command: str, name: str, provider: str) -> dict | None:
        try:
            res = self._low_level_execute_command(command, sudoable=True)
        except Exception as exc:  # pylint: disable=broad-except  # progress is best effort
            display.vvvv(f"venom_model: reading the journal failed: {exc}")
            return None
        return pick_operation(parse_records(res.get("stdout") or ""), name, provider)

    def _reset_connection(self) -> None:
        try:
            self._connection.reset()
        except Exception:  # pylint: disable=broad-except  # not every connection can reset
            pass
