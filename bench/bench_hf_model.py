# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model: install throughput and the cost of an idempotent re-run.

Run: ``make bench`` or ``scripts/bench.sh hf_model``. Starts a real olah mirror (scripts/setup-olah.sh).

1. Install throughput from the same olah mirror, in the same run, alternating: raw
   ``huggingface_hub.snapshot_download(local_dir=...)`` (the baseline) against a venom_model
   install (the library the module runs: resolve, quota pre-flight, download into staging,
   verification of every file, move into place, manifest, journal). Target: >= 0.95x the
   baseline's MB/s. The same install through ansible-playbook is shown for information (it adds
   the fixed cost of starting ansible-playbook).
2. Idempotent re-run through ansible-playbook: ``venom_model state=present`` on an installed model
   against a bare ``ansible.builtin.stat`` task on the same host. Target: <= 1.5x, and flat as the
   model grows (0.26 MB, 48 MB, 91 MB from the mirror and a 4 GB local model).

Every measurement alternates with its baseline (one of each per round), so that the load of a
shared machine hits both alike. Environment: BENCH_REPEAT (rounds, default 5).
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

from benchlib import import_collection, table

import_collection()

# pylint: disable=wrong-import-position
from ansible_collections.venom.models.plugins.module_utils.models.operations import ModelOperations  # noqa: E402
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest  # noqa: E402
from tests.lib.ansible_run import run_task  # noqa: E402
from tests.lib.olah_env import running_mirror  # noqa: E402
from tests.lib.olah_mirror import MINILM  # noqa: E402

REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
MB = 10 ** 6


def _throughput(olah, name: str) -> list:
    from huggingface_hub import snapshot_download  # pylint: disable=import-outside-toplevel
    from huggingface_hub.utils import disable_progress_bars  # pylint: disable=import-outside-toplevel
    disable_progress_bars()
    repo = olah.repos[name]
    size = sum(len(d) for d in repo.files.values())
    work = tempfile.mkdtemp(prefix="venom-bench-hf-")
    samples = {"snap": [], "lib": [], "module": []}

    def snap():
        d = tempfile.mkdtemp(dir=work)
        start = time.perf_counter()
        snapshot_download(name, revision=repo.head, local_dir=d, endpoint=olah.endpoint)
        samples["snap"].append(time.perf_counter() - start)
        shutil.rmtree(d)

    def lib():
        d = tempfile.mkdtemp(dir=work)
        start = time.perf_counter()
        out = ModelOperations(ModelRequest(name=name, revision=repo.head, endpoint=olah.endpoint, models_dir=d)).run()
        samples["lib"].append(time.perf_counter() - start)
        assert out["changed"] and out["size_bytes"] == size
        shutil.rmtree(d)

    def module():
        d = tempfile.mkdtemp(dir=work)
        start = time.perf_counter()
        args = {"name": name, "revision": repo.head, "endpoint": olah.endpoint, "models_dir": d}
        res = run_task("venom.models.venom_model", args)
        samples["module"].append(time.perf_counter() - start)
        assert res.task()["changed"], res.task()
        shutil.rmtree(d)

    snap()  # warm-up: olah's first reads of the repository, the page cache
    samples["snap"].clear()
    for _i in range(REPEAT):  # alternate, so that load changes on the machine hit both alike
        snap()
        lib()
        module()
    shutil.rmtree(work, ignore_errors=True)

    def row(case, key, baseline=None, target=None):
        speeds = sorted(size / MB / t for t in samples[key])
        return dict(case=case, baseline=baseline, target=target, higher_is_better=True, unit="MB/s",
                    median=speeds[len(speeds) // 2], min=speeds[0])

    fixed = statistics.median(samples["module"]) - statistics.median(samples["lib"])
    print(f"\n{name}: the module through ansible-playbook takes {fixed:.1f} s longer than the library call "
          "(a fixed cost: ansible-playbook start-up, AnsiballZ, imports; it does not grow with the model)")
    base = f"baseline: snapshot_download {name} ({size / MB:.0f} MB)"
    return [row(base, "snap"),
            row("venom_model install (library, verified, staged)", "lib", base, 0.95),
            row("venom_model install via ansible-playbook (info)", "module", base)]


def _make_sparse_model(root: str, gigabytes: int) -> str:
    src = os.path.join(root, "big-local-src")
    os.makedirs(src)
    with open(os.path.join(src, "config.json"), "w", encoding="utf-8") as fh:
        fh.write('{"model_type": "llama", "max_position_embeddings": 4096}\n')
    with open(os.path.join(src, "model.safetensors"), "wb") as fh:
        fh.truncate(gigabytes * 10 ** 9)  # sparse: reads as zeros, takes no disk
    return src


def _rerun(olah) -> list:
    models = tempfile.mkdtemp(prefix="venom-bench-rerun-")
    cases = []
    for name in ("venom-test/tiny-gemma", "venom-test/big", MINILM):
        args = {"name": name, "endpoint": olah.endpoint, "models_dir": models}
        out = run_task("venom.models.venom_model", args).task()
        assert out["changed"], out
        cases.append((f"{name.split('/')[1]} ({out['size_bytes'] / MB:.2f} MB)", args))
    src = _make_sparse_model(models, 4)
    args = {"name": "big-local", "provider": "local", "source": src, "models_dir": models, "quota_gb": 100,
            "adopt_mode": "hardlink"}
    out = run_task("venom.models.venom_model", args, timeout=3600).task()
    assert out["changed"], out
    cases.append((f"local big-local ({out['size_bytes'] / MB:.0f} MB)", args))

    def stat_task():
        assert run_task("ansible.builtin.stat", {"path": models}).rc == 0

    def rerun(args):
        out = run_task("venom.models.venom_model", args).task()
        assert out["changed"] is False and not out["failed"], out

    stat_task()
    for _label, args in cases:
        rerun(args)  # warm-up
    samples = {"stat": []}
    samples.update({label: [] for label, _args in cases})
    for _i in range(REPEAT):  # one of each per round
        for key, fn in [("stat", stat_task)] + [(label, lambda a=args: rerun(a)) for label, args in cases]:
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)

    def stats(key):
        return {"median": statistics.median(samples[key]), "min": min(samples[key])}

    base = "baseline: ansible.builtin.stat task"
    rows = [dict(case=base, baseline=None, **stats("stat"))]
    for label, _args in cases:
        rows.append(dict(case=f"venom_model present, installed: {label}", baseline=base, target=1.5, **stats(label)))
    shutil.rmtree(models, ignore_errors=True)
    return rows


def main() -> int:
    with running_mirror() as olah:
        ok = True
        for name in (MINILM, "venom-test/big"):
            ok = table(f"install throughput from olah ({olah.endpoint}), {REPEAT} alternating runs",
                       _throughput(olah, name)) and ok
        rows = _rerun(olah)
        ok = table("idempotent re-run through ansible-playbook on localhost", rows) and ok
        times = [r["median"] for r in rows[1:]]
        spread = max(times) / min(times)
        flat = spread <= 1.25
        print(f"\nre-run cost from the smallest to the largest model: x{spread:.2f} "
              f"({'flat' if flat else 'NOT flat'}: target <= x1.25)")
    return 0 if ok and flat else 1


if __name__ == "__main__":
    sys.exit(main())
