# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers of the benchmarks: timing with repeats and a table with ratios to a baseline.

Every benchmark measures its baseline in the same run, on the same machine, and prints
``case | median | min | ratio to baseline | target | verdict``.
"""
from __future__ import annotations

import importlib
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_collection() -> None:
    """Make ``ansible_collections.venom.models`` importable from the checkout."""
    sys.path.insert(0, REPO)
    importlib.import_module("tests.conftest")  # its import makes the collection importable


def timeit(fn, repeat: int = 5, warmup: int = 1) -> dict:
    for _i in range(warmup):
        fn()
    samples = []
    for _i in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {"median": statistics.median(samples), "min": min(samples), "samples": samples}


def table(title: str, rows: list) -> bool:
    """Print rows of {case, median, min, baseline (case name or None), target (max ratio or None)}.

    Returns True if every row with a target meets it.
    """
    by_case = {r["case"]: r for r in rows}
    print(f"\n## {title}\n")
    print(f"| {'case':<56} | {'median':>10} | {'min':>10} | {'ratio':>7} | {'target':>8} | verdict |")
    print(f"|{'-' * 58}|{'-' * 12}|{'-' * 12}|{'-' * 9}|{'-' * 10}|---------|")
    ok = True
    for r in rows:
        base = by_case.get(r.get("baseline")) if r.get("baseline") else None
        ratio = r["median"] / base["median"] if base and base["median"] > 0 else None
        target = r.get("target")
        if target is not None and ratio is not None:
            verdict = "ok" if (ratio <= target if not r.get("higher_is_better") else ratio >= target) else "MISSED"
            ok = ok and verdict == "ok"
        else:
            verdict = "baseline" if r.get("baseline") is None else ""
        cmp = ">=" if r.get("higher_is_better") else "<="
        print(f"| {r['case']:<56} | {fmt(r['median'], r.get('unit', 's')):>10} | {fmt(r['min'], r.get('unit', 's')):>10} | "
              f"{('%.2fx' % ratio) if ratio is not None else '':>7} | "
              f"{(cmp + '%.2fx' % target) if target is not None else '':>8} | {verdict:<7} |")
    return ok


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.1f} {unit}"
