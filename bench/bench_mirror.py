# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet mirror (venom.models.mirror): bytes from outside and install time, per fleet size.

Run: ``scripts/bench.sh mirror``. Starts a second olah playing the Hub behind a byte counter
(tests/lib/hub_upstream.py) and an olah mirror exactly as the role runs it (the role's helper
``roles/mirror/files/venom_mirror.py serve`` with the role's settings, in olah's venv from
scripts/setup-olah.sh).

Simulated hosts: N processes, each installing the model with the venom_model library (resolve,
quota pre-flight, download, verification, manifest) into its own models directory, all at once.
For N in BENCH_MIRROR_HOSTS (default 1,3,8), in the same run:

* per-host downloads: every host fetches from the upstream directly (what a fleet does without a
  mirror);
* through a cold mirror: every host fetches from the mirror, which fetches from the upstream.

Figures: egress = bytes the upstream sent / model size (target with the mirror: <= 1.05x of one
host's download for any N; per-host downloads grow with N), and wall time of the whole fleet's
install against one host's direct install (information: on this 2-core machine N simulated hosts
share the CPU, which real hosts do not). The real-host figures (1 and 3 nspawn hosts over SSH,
through site.yml) come from tests/fleet/test_mirror.py, which asserts egress == one copy.
"""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import REPO, import_collection, table

import_collection()

# pylint: disable=wrong-import-position
from tests.lib.hub_upstream import Hub  # noqa: E402
from tests.lib.olah_env import safetensors_bytes  # noqa: E402
from tests.lib.olah_mirror import olah_venv  # noqa: E402
from tests.lib.ports import free_port  # noqa: E402
from tests.lib.servers import stop_process, wait_http  # noqa: E402

HOSTS = [int(n) for n in os.environ.get("BENCH_MIRROR_HOSTS", "1,3,8").split(",")]
MODEL_MB = int(os.environ.get("BENCH_MIRROR_MB", "24"))
NAME = "venom-bench/fleet-model"
HELPER = os.path.join(REPO, "roles", "mirror", "files", "venom_mirror.py")


def _install(args: tuple) -> float:
    """One simulated host: install NAME from ``endpoint`` into ``models_dir``; seconds taken."""
    endpoint, models_dir = args
    import_collection()
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.models.operations import ModelOperations
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
    start = time.perf_counter()
    out = ModelOperations(ModelRequest(name=NAME, revision="main", endpoint=endpoint, models_dir=models_dir)).run()
    assert out["changed"], out
    return time.perf_counter() - start


class Mirror:
    """olah as the role runs it: the helper's serve, the role's settings, a fresh cache."""

    def __init__(self, venv: str, upstream: str, root: str):
        self.port = free_port(range(18170, 18199))
        self.root = root
        cfg = os.path.join(root, "mirror.toml")
        with open(cfg, "w", encoding="utf-8") as fh:
            fh.write(f'[basic]\nhost = "127.0.0.1"\nport = {self.port}\nrepos-path = "{root}/cache"\n'
                     f'hf-scheme = "http"\nhf-netloc = "{upstream}"\nhf-lfs-netloc = "{upstream}"\n'
                     f'mirror-scheme = "http"\nmirror-netloc = "127.0.0.1:{self.port}"\n'
                     f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\nmirrors-path = ["{root}/repos"]\n'
                     '[accessibility]\noffline = false\n'
                     '[[accessibility.proxy]]\nrepo = "*"\nallow = true\n'
                     '[[accessibility.proxy]]\nrepo = "*/*"\nallow = true\n')
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["HOME"] = root
        log_path = os.path.join(root, "mirror.log")
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [os.path.join(venv, "bin", "python"), HELPER, "serve", cfg, os.path.join(root, "logs")],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:  # olah answers 404 for an unknown path once it serves
            wait_http(f"{self.url}/venom-mirror-ready", 60, exited=self.proc.poll, log=log_path,
                      ready=lambda status: status == 404, interval=0.5)
        except Exception:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)


def _fleet(pool, endpoint: str, n: int, work: str) -> tuple:
    dirs = [tempfile.mkdtemp(dir=work) for _host in range(n)]
    start = time.perf_counter()
    list(pool.map(_install, [(endpoint, d) for d in dirs]))
    took = time.perf_counter() - start
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    return took


def main() -> int:
    venv = olah_venv()
    work = tempfile.mkdtemp(prefix="venom-bench-mirror-")
    egress_rows, time_rows = [], []
    try:
        with Hub(root=os.path.join(work, "hub"), venv=venv) as hub:
            size = hub.create(NAME, {"config.json": b'{"model_type": "llama"}\n',
                                     "model.safetensors": safetensors_bytes(MODEL_MB * 1024 * 1024 // 4, seed=17)})
            with concurrent.futures.ProcessPoolExecutor(max(HOSTS)) as pool:
                _fleet(pool, hub.url, 1, work)  # warm-up: the upstream's first reads, imports
                hub.counter.reset()
                one = _fleet(pool, hub.url, 1, work)
                one_egress = hub.counter.reset() / size
                base_e, base_t = "baseline: 1 host, direct from the upstream", "baseline: 1 host, direct"
                egress_rows.append(dict(case=base_e, median=one_egress, min=one_egress, unit="x size"))
                time_rows.append(dict(case=base_t, median=one, min=one))
                for n in HOSTS:
                    took = _fleet(pool, hub.url, n, work)
                    got = hub.counter.reset() / size
                    egress_rows.append(dict(case=f"{n} simulated hosts, per-host downloads", median=got, min=got,
                                            unit="x size", baseline=base_e))
                    time_rows.append(dict(case=f"{n} simulated hosts, per-host downloads", median=took, min=took,
                                          baseline=base_t))
                    root = tempfile.mkdtemp(dir=work)
                    mirror = Mirror(venv, hub.netloc, root)
                    try:
                        hub.counter.reset()
                        took = _fleet(pool, mirror.url, n, work)
                        got = hub.counter.reset() / size
                    finally:
                        mirror.stop()
                    egress_rows.append(dict(case=f"{n} simulated hosts, through a cold mirror", median=got, min=got,
                                            unit="x size", baseline=base_e, target=1.05))
                    time_rows.append(dict(case=f"{n} simulated hosts, through a cold mirror", median=took, min=took,
                                          baseline=base_t))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmodel: {size / 1e6:.1f} MB; hosts: {HOSTS}; one run each (a fleet install is long and "
          "deterministic in bytes)")
    ok = table("Fleet egress: bytes from the upstream / model size (target: one copy for any N)", egress_rows)
    table("Fleet install wall time against one host's direct install (information)", time_rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
