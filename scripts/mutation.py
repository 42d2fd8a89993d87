# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mutation testing of plugins/module_utils against the unit tier, with mutmut.

    scripts/mutation.py [SUBSYSTEM ...] [--floor PCT] [--max-children N] [--only MODULES] [--mutants PATTERNS]
                        [--retest]

SUBSYSTEM is one of store, models, runtimes, capabilities, host, top (errors.py, timeutil.py,
module_support.py) or all (the default). ``store`` is the CI-sized run: the five store modules of
issue 20 (manifest, locks, journal, quota, validation) against the store's unit tests.

mutmut derives a mutant's module name from its file path, while the tests import the library as
``ansible_collections.venom.models.plugins.module_utils...``. So the run happens in a scratch tree
(``$VENOM_MUTATION_DIR``, default in the temp dir) laid out as ``ansible_collections/venom/models``
with a copy of plugins/ and the unit tests: the path and the import name then agree.

Equivalent mutants (a change no test can observe, because the behaviour is the same) are listed in
scripts/mutation-equivalent.txt with the reason; they are counted apart, not hidden. The score is
killed / (mutants - equivalent). With --floor, the run fails when any subsystem scores below it.

--retest reuses the scratch tree of the previous run with the same arguments: it copies the current
unit tests in and runs again only the mutants that were not killed. That is sound only while the
library and the subsystem's test list are those of that run (tests are only added), so it refuses
when either changed.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import heapq
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PKG = Path("ansible_collections/venom/models")
LIB = PKG / "plugins/module_utils"
UNIT = "tests/unit/plugins/module_utils/"

# subsystem -> (modules to mutate, relative to plugins/module_utils; unit test files that exercise them)
SUBSYSTEMS = {
    "store": (["store/manifest.py", "store/locks.py", "store/journal.py", "store/quota.py", "store/validation.py"],
              ["test_manifest.py", "test_locks.py", "test_journal.py", "test_quota.py", "test_validation.py",
               "test_files.py", "test_model_ops.py", "test_store_boundaries.py", "test_hardening.py",
               "test_manifest_operations.py"]),
    "store-rest": (["store/atomic.py", "store/paths.py", "store/procinfo.py", "store/manifest_state.py",
                    "store/ownership.py", "store/safeio.py"],
                   ["test_manifest.py", "test_locks.py", "test_journal.py", "test_files.py", "test_model_ops.py",
                    "test_facts_usage.py", "test_runtime.py", "test_manifest_state.py", "test_ownership.py",
                    "test_hardening.py", "test_discovery.py", "test_filetree.py", "test_manifest_operations.py",
                    "test_state_files.py", "test_process_identity.py"]),
    "models": (["models/*"],
               ["test_available.py", "test_discovery.py", "test_hf_provider.py", "test_model_ops.py", "test_ollama.py",
                "test_files.py", "test_manifest.py", "test_filetree.py", "test_hardening.py", "test_health.py",
                "test_hf_http.py", "test_locks.py", "test_ollama_api.py", "test_ownership.py", "test_tls.py",
                "test_top_level.py", "test_local_provider.py", "test_hf_install.py", "test_ollama_provider.py"]),
    "runtimes": (["runtimes/*"],
                 ["test_process.py", "test_runtime.py", "test_systemd.py", "test_health.py", "test_gpu_placement.py",
                  "test_preflight.py", "test_process_logs.py", "test_runtime_options.py", "test_available.py",
                  "test_ollama_api.py", "test_hardening.py", "test_locks.py", "test_runtime_backends.py",
                  "test_runtime_ollama.py", "test_runtime_spec.py", "test_runtime_controller.py",
                  "../filter/test_envfile.py"]),
    "capabilities": (["capabilities/*"],
                     ["test_capabilities.py", "test_chat.py", "test_chat_turns.py", "test_gguf.py", "../filter/",
                      "test_hf_provider.py", "test_ollama.py", "test_model_ops.py", "test_available.py"]),
    "host": (["host/*"], ["test_facts_usage.py", "test_metrics.py", "test_gpu_placement.py", "test_available.py"]),
    "top": (["errors.py", "timeutil.py", "module_support.py", "httpclient.py"], [""]),
}
# multi-process stress tests: timing-bound under a loaded machine and slow (each re-runs for every
# mutant of the functions it touches); what they check (atomicity, exclusion) has logic tests too
# Property tests (hypothesis) are left out too: each runs for seconds per mutant it reaches, and
# the behaviour they sample is pinned by example tests.
DESELECT = ["test_parallel_writers_lose_nothing", "test_sigkill_at_random_points_never_leaves_unreadable_manifest",
            "test_mutual_exclusion_across_processes_with_removal", "test_round_trip_property",
            "test_select_paths_properties", "test_any_text_is_accepted_only_if_safe",
            "test_local_names_accepted_exactly_when_grammar_allows",
            "test_the_manifest_reader_accepts_only_documents_confined_to_models_dir",
            "test_any_conversation_renders_with_all_text_or_fails_clearly",
            "test_gemma_accepts_every_conversation_that_does_not_start_with_the_assistant",
            "test_writer_reader_round_trip", "test_random_bytes_never_crash_nor_allocate",
            "test_corrupted_valid_files_never_crash"]
ALL = ["store", "store-rest", "models", "runtimes", "capabilities", "host", "top"]
# failed test, pytest error, timeout, crash; 127: the test process itself ended in a child's
# exec-failure exit (a mutant that made the caller run the child's side of a fork): not a pass
KILLED = {1, 3, 36, -24, 24, 127, 152, 255, -11, -9}
SURVIVED = 0
EQUIVALENT_FILE = REPO / "scripts/mutation-equivalent.txt"


def subsystem_of(module: str) -> str:
    rel = module.split("plugins.module_utils.", 1)[1]
    head = rel.split(".", 1)[0]
    if head == "store":
        return "store" if rel.split(".")[1] in {"manifest", "locks", "journal", "quota", "validation"} else "store-rest"
    return head if head in SUBSYSTEMS else "top"


def load_equivalents() -> dict:
    """{(function, removed line, added line): reason} from scripts/mutation-equivalent.txt.

    Format, one mutant per block, blank-line separated:
        fn: <module>.<function>           (as mutmut names it, without __mutmut_N)
        -   <original line, stripped>
        +   <mutated line, stripped>
        why: <reason>
    Keyed by text, not by mutmut's number, so the list survives edits elsewhere in the function.
    """
    out = {}
    if not EQUIVALENT_FILE.exists():
        return out
    block: dict = {}
    for line in EQUIVALENT_FILE.read_text().splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if block:
                out[(block["fn"], block.get("-", ""), block.get("+", ""))] = block.get("why", "")
            block = {}
            continue
        key, _sep, val = line.partition(":" if line[:1] not in "-+" else " ")
        block[key.strip() if line[:1] not in "-+" else line[:1]] = val.strip()
    return out


def _diffs_cli(names: list[str]) -> int:
    """Print ``{mutant: diff}`` (JSON) of ``names``, run in the scratch tree: what ``mutmut show``
    prints, from one process instead of one per mutant (each costs a second under load)."""
    from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant   # pylint: disable=import-outside-toplevel
    print(json.dumps({name: get_diff_for_mutant(name, path=find_mutant(name).path) for name in names}))
    return 0


def mutant_diffs(work: Path, names: list[str]) -> dict:
    """{mutant: (removed, added)} of ``names`` (see ``mutant_diff``), in one subprocess."""
    if not names:
        return {}
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--diffs", *names], cwd=work,
                         capture_output=True, text=True, check=False)
    try:
        diffs = json.loads(res.stdout)
    except ValueError:   # fall back to one mutmut show per mutant
        return {name: mutant_diff(work, name) for name in names}
    return {name: _split_diff(diff) for name, diff in diffs.items()}


def mutant_diff(work: Path, name: str) -> tuple[str, str]:
    """The (removed, added) source lines of one mutant, joined and stripped."""
    res = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, capture_output=True, text=True,
                         check=False)
    return _split_diff(res.stdout)


def _split_diff(text: str) -> tuple[str, str]:
    minus, plus = [], []
    for line in text.splitlines():
        if line.startswith("---") or line.startswith("+++"):
            continue
        if line.startswith("-"):
            minus.append(line[1:].strip())
        elif line.startswith("+"):
            plus.append(line[1:].strip())
    return " ".join(minus), " ".join(plus)


def _copy_tests(pkg: Path) -> None:
    if (pkg / "tests").exists():
        shutil.rmtree(pkg / "tests")
    (pkg / "tests").mkdir(parents=True)
    shutil.copy2(REPO / "tests/conftest.py", pkg / "tests/conftest.py")
    shutil.copytree(REPO / "tests/lib", pkg / "tests/lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tests/unit", pkg / "tests/unit", ignore=shutil.ignore_patterns("__pycache__", "roles"))


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def refresh_tests(work: Path, subsystems: list[str], only_modules: list[str] | None = None) -> str | None:
    """Copy the current unit tests into the scratch tree of a finished run (--retest); the reason it
    cannot be reused, or None."""
    pkg = work / PKG
    if not (work / "mutants").is_dir() or not results(work):
        return f"no finished run in {work}; run without --retest first"
    if _tree_digest(pkg / "plugins") != _tree_digest(REPO / "plugins"):
        return "the library changed since that run; run without --retest"
    old_cfg = (work / "setup.cfg").read_text()
    write_config(work, subsystems, only_modules)
    if (work / "setup.cfg").read_text() != old_cfg:
        (work / "setup.cfg").write_text(old_cfg)
        return "the subsystem's test list changed since that run; run without --retest"
    _copy_tests(pkg)
    return None


def build_tree(work: Path, subsystems: list[str], only_modules: list[str] | None = None) -> None:
    if work.exists():
        shutil.rmtree(work)
    pkg = work / PKG
    shutil.copytree(REPO / "plugins", pkg / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    _copy_tests(pkg)
    write_config(work, subsystems, only_modules)


def write_config(work: Path, subsystems: list[str], only_modules: list[str] | None = None) -> None:
    only = sorted({f"{LIB}/{m}" for s in subsystems for m in (only_modules or SUBSYSTEMS[s][0])})
    tests = sorted({str(PKG / (UNIT + t)) for s in subsystems for t in SUBSYSTEMS[s][1]})
    if any(t.endswith("/module_utils/") for t in tests):   # "top" needs the whole unit tier
        tests = [str(PKG / "tests/unit/plugins")]

    def lst(items):
        return "\n".join("    " + i for i in items)
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths =\n{lst([str(PKG / 'plugins')])}\n"
        f"only_mutate =\n{lst(only)}\n"
        f"also_copy =\n{lst([str(PKG / 'tests')])}\n"
        f"pytest_add_cli_args =\n{lst(['-p', 'no:cacheprovider', '--no-header', '-k', ' and '.join(f'not {t}' for t in DESELECT)])}\n"
        f"pytest_add_cli_args_test_selection =\n{lst(tests)}\n"
        "use_git_change_detection = false\n"
        "timeout_multiplier = 10\n"
        "timeout_constant = 5\n")


def _reap_only_workers() -> None:
    """mutmut's fork runner collects results with ``os.wait()`` and fails with a KeyError when the pid
    is not one of its workers. A unit test that starts a real process (the runtimes' and the GPU
    placement tests do) in mutmut's own process, during its stats run, leaves such a child: its exit
    is skipped here instead of ending the whole run."""
    from mutmut.workers import isolation   # pylint: disable=import-outside-toplevel

    def wait_for_result(self, timeout=None):   # pylint: disable=unused-argument
        if self._no_tests_results:   # pylint: disable=protected-access
            return self._no_tests_results.pop(0)   # pylint: disable=protected-access
        while True:
            pid, wait_status = os.wait()
            worker = self._running.pop(pid, None)   # pylint: disable=protected-access
            if worker is not None:
                break
        duration = (isolation.datetime.now() - worker.start_time).total_seconds()
        return isolation.MutantResult(mutant_name=worker.mutant_name,
                                      exit_code=os.waitstatus_to_exitcode(wait_status), duration=duration)
    isolation.ForkRunner.wait_for_result = wait_for_result


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), None when there is no such process.
    A pid and its start time name one process: a pid reused later has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


class StaleSafeTimeouts:
    """mutmut's wall-clock timeouts, without its stray signals.

    mutmut registers a deadline for every mutant's test process and, when the deadline passes,
    sends SIGXCPU to that pid, whether the process ended long ago or not. The pid is reused by then
    (pid_max is 32,768 here and a run starts thousands of processes): the signal ends a later
    mutant's process (a false "timeout" kill that inflates the score), a process a unit test
    started, or any process of the machine. Here a deadline remembers the process's start time and
    signals the pid only while it is still that process."""

    def __init__(self, start_of=process_start, kill=os.kill, clock=time.time):
        self._heap: list[tuple[float, int, int]] = []
        self._cond = threading.Condition()
        self._start_of, self._kill, self._clock = start_of, kill, clock
        self._thread: threading.Thread | None = None

    def register(self, pid: int, timeout_s: float) -> None:
        start = self._start_of(pid)
        if start is None:
            return   # already gone and reaped: nothing to time out
        with self._cond:
            heapq.heappush(self._heap, (self._clock() + timeout_s, pid, start))
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="venom-mutation-timeouts", daemon=True)
                self._thread.start()

    def fire_due(self) -> float | None:
        """Signal every process whose deadline passed and that is still the one registered; the
        seconds until the next deadline (None when none is left). Call with the condition held."""
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            _deadline, pid, start = heapq.heappop(self._heap)
            if self._start_of(pid) == start:
                try:
                    self._kill(pid, signal.SIGXCPU)
                except ProcessLookupError:
                    pass
        return max(0.0, self._heap[0][0] - now) if self._heap else None

    def _watch(self) -> None:
        with self._cond:
            while True:
                self._cond.wait(timeout=self.fire_due())


def _guard_stale_timeouts() -> None:
    from mutmut.workers import isolation   # pylint: disable=import-outside-toplevel
    isolation.register_timeout = StaleSafeTimeouts().register


def mutmut_cli(argv: list[str]) -> int:
    """mutmut's command line, with prose strings left alone.

    mutmut mutates every string literal ('XX' + s + 'XX', upper, lower). A string with whitespace
    in it is prose here (an error message, its fix, a log line): what matters about it is tested
    as behaviour (the error names the problem and the fix), not letter by letter, and mutating
    each costs three mutants and a test run apiece. Keys, statuses, units, formats and paths (no
    whitespace) are still mutated.
    """
    from mutmut.__main__ import cli   # pylint: disable=import-outside-toplevel
    from mutmut.mutation import mutators   # pylint: disable=import-outside-toplevel
    plain = mutators.operator_string

    def operator_string(node):
        if re.search(r"\s", getattr(node, "value", "").strip("\"'")):
            return
        yield from plain(node)
    _reap_only_workers()
    _guard_stale_timeouts()
    ops = mutators.mutation_operators
    ops[:] = [(t, operator_string if op is plain else op) for t, op in ops]
    sys.argv = ["mutmut"] + argv
    try:
        cli()   # pylint: disable=no-value-for-parameter
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def memory_bound(mib: int):
    """A ``preexec_fn`` that bounds the address space of mutmut and of every mutant's test process
    (they inherit it) to ``mib`` MiB. A mutant can make a bound check count too little (the chat
    sandbox's size accounting, say): a hostile test then builds its huge value for real, and on a
    shared machine one mutant took 8.7 GB before it was killed. Bounded, it fails with a MemoryError
    in its own process instead: the test fails, the mutant counts as killed, the machine is spared."""
    def bound():
        resource.setrlimit(resource.RLIMIT_AS, (mib * 1024 * 1024, mib * 1024 * 1024))
    return bound


def run(work: Path, max_children: int, names: list[str] | None = None) -> int:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", VENOM_NO_SKIP="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--mutmut", "run", "--max-children", str(max_children)]
    cmd += names or []
    log = work / "mutmut-run.log"
    with open(log, "w") as fh:
        bound = memory_bound(int(os.environ.get("VENOM_MUTATION_MEMORY_MIB", "4096")))
        # pylint: disable-next=subprocess-popen-preexec-fn
        rc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False,
                            preexec_fn=bound).returncode
    if rc != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
    return rc


def results(work: Path) -> dict:
    """{mutant name: exit code} from mutmut's .meta files."""
    out = {}
    for meta in (work / "mutants").rglob("*.py.meta"):
        out.update(json.loads(meta.read_text()).get("exit_code_by_key", {}))
    return out


def main() -> int:
    if sys.argv[1:2] == ["--mutmut"]:
        return mutmut_cli(sys.argv[2:])
    if sys.argv[1:2] == ["--diffs"]:
        return _diffs_cli(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("subsystems", nargs="*", default=["all"], choices=["all"] + list(SUBSYSTEMS))
    ap.add_argument("--floor", type=float, default=None, help="fail if a subsystem's score is below this percent")
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--show-survivors", action="store_true", help="print each surviving mutant's diff")
    ap.add_argument("--workdir", default=os.environ.get("VENOM_MUTATION_DIR"))
    ap.add_argument("--only", default=None,
                    help="comma-separated modules of the subsystem to mutate (e.g. store/quota.py,store/locks.py)")
    ap.add_argument("--mutants", default=None,
                    help="comma-separated fnmatch patterns of mutant names: run and score only those (e.g. "
                         "'*ModelOperations*_apply_repair__mutmut_*' after that method changed)")
    ap.add_argument("--retest", action="store_true",
                    help="run again only the mutants the previous run with the same arguments did not kill, "
                         "against the current unit tests")
    args = ap.parse_args()
    subsystems = ALL if "all" in args.subsystems else list(dict.fromkeys(args.subsystems))
    tag = hashlib.sha256(f"{REPO}:{','.join(subsystems)}:{args.only}"
                         f"{':' + args.mutants if args.mutants else ''}".encode()).hexdigest()[:10]
    patterns = args.mutants.split(",") if args.mutants else None
    work = Path(args.workdir or Path(tempfile.gettempdir()) / f"venom-mutation-{os.getuid()}-{tag}")

    start = time.monotonic()
    only_modules = args.only.split(",") if args.only else None
    names = None
    if args.retest:
        why = refresh_tests(work, subsystems, only_modules)
        if why:
            print(f"mutation: cannot retest: {why}", file=sys.stderr)
            return 2
        names = sorted(name for name, code in results(work).items() if code not in KILLED
                       and (patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)))
        print(f"mutation: retesting the {len(names)} mutants not killed by the previous run")
    else:
        build_tree(work, subsystems, only_modules)
        names = patterns
    rc = run(work, args.max_children, names) if names != [] else 0
    codes = {name: code for name, code in results(work).items()
             if patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)}
    if rc != 0 or not codes:
        print(f"mutation: mutmut failed (exit {rc}); log: {work / 'mutmut-run.log'}", file=sys.stderr)
        return 1

    equivalents = load_equivalents()
    stats = defaultdict(lambda: defaultdict(int))
    survivors, other, matched_equiv = [], [], set()
    diffs = mutant_diffs(work, [name for name, code in sorted(codes.items()) if code not in KILLED])
    for name, code in sorted(codes.items()):
        fn = name.rsplit("__mutmut_", 1)[0]
        module = fn.rsplit(".", 1)[0]
        sub = subsystem_of(module)
        s = stats[sub]
        s["total"] += 1
        if code in KILLED:
            s["killed"] += 1
            continue
        removed, added = diffs[name]
        key = (re.sub(r"^ansible_collections\.venom\.models\.plugins\.module_utils\.", "", fn), removed, added)
        if code == SURVIVED and key in equivalents:
            s["equivalent"] += 1
            matched_equiv.add(key)
        elif code == SURVIVED:
            s["survived"] += 1
            survivors.append((name, removed, added))
        else:   # no tests (5/33), skipped, suspicious, not checked: not killed
            s["not_covered"] += 1
            other.append((name, code, removed, added))

    print(f"\nmutation score (mutmut, unit tier) in {work}")
    print(f"{'subsystem':<14}{'mutants':>8}{'killed':>8}{'survived':>9}{'no test':>8}{'equiv.':>7}{'score':>8}")
    below = []
    tot = defaultdict(int)
    for sub in [s for s in ALL if s in stats]:
        s = stats[sub]
        for k, v in s.items():
            tot[k] += v
        denom = s["total"] - s["equivalent"]
        score = 100.0 * s["killed"] / denom if denom else 100.0
        print(f"{sub:<14}{s['total']:>8}{s['killed']:>8}{s['survived']:>9}{s['not_covered']:>8}{s['equivalent']:>7}{score:>7.1f}%")
        if args.floor is not None and score < args.floor:
            below.append(f"{sub} {score:.1f}% < {args.floor}%")
    denom = tot["total"] - tot["equivalent"]
    print(f"{'total':<14}{tot['total']:>8}{tot['killed']:>8}{tot['survived']:>9}{tot['not_covered']:>8}"
          f"{tot['equivalent']:>7}{(100.0 * tot['killed'] / denom if denom else 100.0):>7.1f}%")
    if survivors and (args.show_survivors or below):
        print("\nsurvivors (no unit test fails when this change is made):")
        for name, removed, added in survivors:
            print(f"  {name}\n    - {removed}\n    + {added}")
    if other and (args.show_survivors or below):
        print("\nnot killed for another reason (no test reaches it, timeout not reached, ...):")
        for name, code, removed, added in other:
            print(f"  {name} (mutmut exit {code})\n    - {removed}\n    + {added}")
    only = {m.removesuffix(".py") for m in args.only.split(",")} if args.only else None
    stale = [k for k in equivalents if patterns is None and k not in matched_equiv
             and subsystem_of("plugins.module_utils." + k[0].rsplit(".", 1)[0]) in subsystems
             and (only is None or k[0].rsplit(".", 1)[0].replace(".", "/") in only)]
    if stale:
        print(f"\nnote: {len(stale)} listed equivalent mutant(s) not produced by this run (code changed?):")
        for fn, removed, added in stale:
            print(f"  {fn}: - {removed} / + {added}")
    print(f"\nmutation: {len(codes)} mutants in {time.monotonic() - start:.0f}s")
    if below:
        print("mutation: below the floor: " + "; ".join(below), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
