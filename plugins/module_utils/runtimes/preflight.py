# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check mode of ``venom_runtime``: can the runtime's command start at all on this host?

``command_problem(argv, env, run)`` answers without starting anything: the executable is found (on the
PATH the process would get, or as a path) and executable, and for ``python -m package.module`` the
top-level package is importable by that Python (``importlib.util.find_spec`` of the top-level name
only: nothing is imported, so it takes milliseconds even for vLLM). It returns the problem as the
real run would meet it (``No module named 'vllm'``), or None. Whether the runtime then becomes
healthy (the model loads, the GPU has room) cannot be known without starting it.

``run(args, env)`` runs a command that ends and returns ``(rc, stdout, stderr)``: in a module,
``AnsibleModule.run_command`` (the only way module code may run a command).
"""
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from ansible_collections.venom.models.plugins.module_utils.runtimes.process import find_executable
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import DEFAULTS

STARTS = ("start", "restart", "restart-unhealthy", "recover")  # the plan's actions that start the runtime
FIND_SPEC = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 3)"


def command_problem(argv: list, env: dict | None, run) -> str | None:
    """Why ``argv`` cannot start on this host, or None (see the module docstring)."""
    if not argv:
        return "the command is empty"
    exe = find_executable(str(argv[0]), os.environ if env is None else env)  # as start_process finds it
    if exe is None:
        where = "" if os.sep in str(argv[0]) else " on the PATH"
        return f"{argv[0]} is not found{where} or is not executable"
    if len(argv) >= 3 and argv[1] == "-m":
        package = str(argv[2]).split(".", 1)[0]
        try:
            rc, out, err = run([exe, "-c", FIND_SPEC, package], env)
        except OSError as exc:
            return f"{exe} could not be run to look for the module {package}: {exc}"
        if rc == 3:
            return f"{exe}: No module named '{package}'"
        if rc != 0:
            return f"{exe} failed to look for the module {package}: {(err or out or '').strip()[-500:]}"
    return None


def check_mode_preflight(spec, result: dict, run) -> None:
    """Check mode: a run that would start the runtime in process mode fails here, as the real run
    would, when the command cannot start (missing executable or Python module). Health after the
    start cannot be predicted without starting it: the diff says null, not true.

    ``spec`` is the ``RuntimeSpec``, ``result`` what ``RuntimeController.ensure`` planned.
    """
    if not any(a in result["actions"] for a in STARTS):
        return
    if result["mode"] == "process":
        argv = list(spec.command or DEFAULTS[spec.runtime]["command"])
        env = dict(os.environ, **(spec.env or {}))
        problem = command_problem(argv, env, run)
        if problem:
            raise RuntimeControlError(f"{spec.name} cannot start on this host: {problem}. The real run would fail.",
                                      fix=f"Install {spec.runtime} (the venom.models.{spec.runtime} role), or set 'command' "
                                          "to its executable.")
    if result.get("diff"):
        result["diff"]["after"]["healthy"] = None
