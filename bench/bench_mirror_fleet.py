# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet mirror on real hosts: bytes from outside and install time for 1 and 3 hosts.

Run: ``scripts/bench.sh mirror_fleet`` as root (systemd-nspawn; the fleet harness of tests/fleet).
bench_mirror.py measures N simulated hosts (processes on this machine); this one measures real
hosts: four nspawn containers over SSH, host 1 the mirror (role ``venom.models.mirror``: olah from
the fleet wheelhouse as a hardened systemd unit), hosts 2-4 installing with ``venom_model`` over
SSH. The upstream is a second olah on this machine playing the Hub behind a byte counter
(tests/lib/hub_upstream.py).

For N in BENCH_MIRROR_FLEET_HOSTS (default 1,3), in the same run:

* per-host downloads: N hosts install the model from the upstream directly (``endpoint`` = the
  upstream), what a fleet does without a mirror;
* through a cold mirror: the mirror's cache is emptied (unit stopped, cache removed, started) and
  N hosts install through it (``endpoint`` = the mirror).

Each case starts from hosts without the model (``state: absent`` first) and is one ansible-playbook
run over all N hosts at once. Figures: egress = bytes the upstream sent / model size (target with
the mirror: <= 1.05x, one copy, for any N; per-host downloads grow with N), and the fleet's wall
time against one host's direct install (information: the four hosts share this machine's cores and
disk, which real hosts do not).
"""
from __future__ import annotations

import concurrent.futures
import os
import sys
import tempfile
import time

import yaml

from benchlib import REPO, import_collection, table

import_collection()

# pylint: disable=wrong-import-position
from tests.fleet import harness  # noqa: E402
from tests.lib.ansible_run import run_playbook  # noqa: E402
from tests.lib.fleet_env import start_fleet  # noqa: E402
from tests.lib.hub_upstream import Hub  # noqa: E402
from tests.lib.olah_env import safetensors_bytes  # noqa: E402
from tests.lib.servers import wait_http  # noqa: E402

HOSTS = [int(n) for n in os.environ.get("BENCH_MIRROR_FLEET_HOSTS", "1,3").split(",")]
MODEL_MB = int(os.environ.get("BENCH_MIRROR_MB", "24"))
NAME = "venom-bench/fleet-model"
VENV = "/opt/venom-py"  # the modules' Python on the model hosts (requirements-target.txt)
MIRROR_PORT = 18260
MIRROR_URL = f"http://127.0.0.1:{MIRROR_PORT}"
MODELS_DIR = "/srv/venom-bench-models"


def _target_specs() -> list:
    with open(os.path.join(REPO, "requirements-target.txt"), encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]


def _play(env, hosts: list, tasks: list):
    res = run_playbook([{"hosts": ",".join(env.host(i).name for i in hosts), "gather_facts": False,
                         "tasks": tasks}], inventory=env.inventory,
                       extra_args=["-e", f"ansible_python_interpreter={VENV}/bin/python"], timeout=1800)
    if res.rc != 0:
        raise RuntimeError(f"the play on hosts {hosts} failed:\n{res.stdout[-4000:]}")
    return res


def _model(state: str, endpoint: str | None = None) -> dict:
    args = {"name": NAME, "revision": "main", "models_dir": MODELS_DIR, "state": state}
    if endpoint:
        args["endpoint"] = endpoint
    return {"name": f"model {state}", "venom.models.venom_model": args}


def _install(env, hub, hosts: list, endpoint: str) -> tuple:
    """Remove the model from ``hosts``, then install it on all of them at once; (seconds, bytes
    the upstream sent during the install)."""
    _play(env, hosts, [_model("absent")])
    hub.counter.reset()
    start = time.perf_counter()
    res = _play(env, hosts, [_model("present", endpoint)])
    took = time.perf_counter() - start
    sent = hub.counter.reset()
    changed = [r for r in res.results if r["task"] == "model present" and r["result"].get("changed")]
    if len(changed) != len(hosts):
        raise RuntimeError(f"expected {len(hosts)} installs, got {len(changed)}:\n{res.stdout[-4000:]}")
    return took, sent


def _cold_mirror(env) -> None:
    """Empty the mirror's cache: stop the unit, remove the cache, start it, wait until it answers."""
    env.ssh(1, "systemctl stop venom-mirror.service && rm -rf /var/lib/venom-mirror/cache/* && "
               "systemctl start venom-mirror.service")
    wait_http(f"{MIRROR_URL}/venom-mirror-ready", 90, ready=lambda status: status == 404, interval=1)


def _deploy_mirror(env, hub, work: str) -> None:
    inv = os.path.join(work, "mirror.yml")
    with open(inv, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"all": {"children": {"venom_mirror": {"vars": {
            "mirror_port": MIRROR_PORT, "mirror_public_url": MIRROR_URL,
            "mirror_upstream_url": hub.url, "mirror_pip_no_index": True,
            "mirror_pip_find_links": ["/srv/venom-wheels/olah"]}}}}}, fh)
    res = run_playbook([{"hosts": "venom_mirror", "gather_facts": True,
                         "roles": [{"role": "venom.models.mirror"}]}],
                       inventory=env.inventory, extra_args=["-i", inv], timeout=900)
    if res.rc != 0:
        raise RuntimeError(f"the mirror role failed:\n{res.stdout[-4000:]}")


def main() -> int:
    if os.geteuid() != 0:
        print("bench mirror_fleet: NOT RUN: real hosts need root (systemd-nspawn); run it as root "
              "(bench/bench_mirror.py measures simulated hosts without root)", file=sys.stderr)
        return 1
    if max(HOSTS) > 3:
        print("bench mirror_fleet: at most 3 model hosts (BENCH_MIRROR_FLEET_HOSTS)", file=sys.stderr)
        return 2
    harness.wheelhouse(["olah==0.5.4"], link="olah")
    harness.wheelhouse(_target_specs(), link="venom-target")
    work = tempfile.mkdtemp(prefix="venom-bench-mirror-fleet-")
    egress_rows, time_rows = [], []
    fleet_start = time.perf_counter()
    with Hub(root=os.path.join(work, "hub")) as hub:
        size = hub.create(NAME, {"config.json": b'{"model_type": "llama"}\n',
                                 "model.safetensors": safetensors_bytes(MODEL_MB * 1024 * 1024 // 4, seed=23)})
        with start_fleet(count=4, name="venom-benchm", ssh_port=2271, ollama_port=11571, vllm_port=8171,
                         groups={"venom_mirror": [1], "models": [2, 3, 4]}) as env:
            def prepare(index):
                env.ssh(index, f"python3 -m venv --system-site-packages {VENV} && {VENV}/bin/pip install -q "
                               "--no-index --find-links /srv/venom-wheels/venom-target "
                               + " ".join(f"'{s}'" for s in _target_specs()), timeout=300)
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                list(pool.map(prepare, [2, 3, 4]))
            _deploy_mirror(env, hub, work)
            print(f"fleet ready (4 hosts, mirror deployed) in {time.perf_counter() - fleet_start:.0f} s",
                  flush=True)
            _install(env, hub, [2], hub.url)  # warm-up: the upstream's first reads, the hosts' imports
            one, sent = _install(env, hub, [2], hub.url)
            base_e, base_t = "baseline: 1 host, direct from the upstream", "baseline: 1 host, direct"
            egress_rows.append(dict(case=base_e, median=sent / size, min=sent / size, unit="x size"))
            time_rows.append(dict(case=base_t, median=one, min=one))
            for n in HOSTS:
                hosts = list(range(2, 2 + n))
                took, sent = _install(env, hub, hosts, hub.url)
                egress_rows.append(dict(case=f"{n} real hosts, per-host downloads", median=sent / size,
                                        min=sent / size, unit="x size", baseline=base_e))
                time_rows.append(dict(case=f"{n} real hosts, per-host downloads", median=took, min=took,
                                      baseline=base_t))
                _cold_mirror(env)
                took, sent = _install(env, hub, hosts, MIRROR_URL)
                egress_rows.append(dict(case=f"{n} real hosts, through a cold mirror", median=sent / size,
                                        min=sent / size, unit="x size", baseline=base_e, target=1.05))
                time_rows.append(dict(case=f"{n} real hosts, through a cold mirror", median=took, min=took,
                                      baseline=base_t))
    print(f"\nmodel: {size / 1e6:.1f} MB; model hosts: {HOSTS}; one run each (bytes are deterministic; "
          f"the whole bench took {time.perf_counter() - fleet_start:.0f} s)")
    ok = table("Fleet egress on real hosts: bytes from the upstream / model size (target: one copy)", egress_rows)
    table("Fleet install wall time on real hosts against one host's direct install (information)", time_rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
