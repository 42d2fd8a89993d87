# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet playbooks (site, activate, report) on three real systemd hosts.

Every host runs Ollama under the role's hardened unit (the Ollama test double as the server: no
Ollama binary can be had here) and pulls its models from the test OCI registry on this machine.
Group ``alpha`` (hosts 1, 2) gets tiny-chat and tiny-nosys and serves tiny-chat; group ``beta``
(host 3) gets tiny-nosys and tiny-chat:v2 and serves tiny-nosys. In order:

1. ``site`` converges the fleet (roles, models, activation through the unit: venom_runtime in
   systemd mode); a second run changes nothing.
2. ``site --check`` with a changed model list prints the plan per host (what is downloaded with
   its bytes, removed, switched) and changes nothing.
3. ``activate`` switches every host to tiny-nosys, one host per batch, with host 2's copy broken
   behind venom's back: host 1 switches, host 2 rolls back to tiny-chat and fails, and the play
   stops there: host 3 is never touched.
4. ``report`` writes the fleet report; its content is checked against what happened.
"""
from __future__ import annotations

import json
import os

import pytest
import requests
import yaml

from tests.lib import ollama_env
from tests.lib.ansible_run import run_playbook
from tests.lib.fleet_env import start_fleet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOUBLE = os.environ.get("VENOM_OLLAMA_DOUBLE") or ollama_env.OLLAMA_DOUBLE
VENV = "/opt/venom-py"  # the modules' Python on the hosts (requirements-target.txt), apt bindings visible


def _changed(res) -> list:
    return [(r["host"], r["task"]) for r in res.results if r["result"].get("changed")]


def _failed(res) -> list:
    return [(r["host"], r["task"]) for r in res.results if r["status"] == "failed"]


def _item_results(res, task: str, host: str) -> list:
    return res.task(task, host=host).get("results", [])


@pytest.fixture(scope="module")
def site(tmp_path_factory, oci_registry, ollama_models):  # pylint: disable=redefined-outer-name
    work = tmp_path_factory.mktemp("site")
    exe = work / "ollama"
    with open(DOUBLE, encoding="utf-8") as fh:
        exe.write_text("#!/usr/bin/env python3\n" + fh.read().split("\n", 1)[1])
    exe.chmod(0o755)
    names = {k: m.name for k, m in ollama_models.items()}
    with start_fleet(count=3, name="venom-site", ssh_port=2241, ollama_port=11541, vllm_port=8141,
                     groups={"alpha": [1, 2], "beta": [3]}) as env:
        for h in env.hosts:  # the modules' requirements, as an operator installs them
            env.ssh(h, "python3", "-m", "venv", "--system-site-packages", VENV, timeout=120)
        for h in env.hosts:
            env.ssh(h, f"{VENV}/bin/pip", "install", "-q", "requests", "psutil", timeout=300)
        yield {"env": env, "work": work, "exe": str(exe), "names": names}


def _inventory(site, alpha_models, alpha_active, beta_models, beta_active, name="groups.yml") -> str:  # pylint: disable=redefined-outer-name
    n = site["names"]

    def models(keys):
        return [{"name": n[k.lstrip("-")], "provider": "ollama", "insecure": True,
                 **({"state": "absent"} if k.startswith("-") else {})} for k in keys]

    doc = {"all": {"children": {
        "fleet": {"vars": {
            "ansible_python_interpreter": f"{VENV}/bin/python",
            "venom_install_runtimes": ["ollama"],
            "ollama_install_method": "controller", "ollama_src": site["exe"],
            "ollama_keep_alive": "10m"}},
        "alpha": {"vars": {"venom_models": models(alpha_models), "venom_active_models": {"ollama": n[alpha_active]}}},
        "beta": {"vars": {"venom_models": models(beta_models), "venom_active_models": {"ollama": n[beta_active]}}},
    }}}
    path = site["work"] / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _run(site, playbook, groups_inventory, check=False, extra=()):  # pylint: disable=redefined-outer-name
    return run_playbook([{"import_playbook": f"venom.models.{playbook}"}], inventory=site["env"].inventory,
                        check=check, extra_args=["-i", groups_inventory, *extra], timeout=1500)


def _tags(site, index):  # pylint: disable=redefined-outer-name
    port = site["env"].host(index).ollama_port
    return sorted(m["name"] for m in requests.get(f"http://127.0.0.1:{port}/api/tags", timeout=10).json()["models"])


def _loaded(site, index):  # pylint: disable=redefined-outer-name
    port = site["env"].host(index).ollama_port
    return sorted(m["name"] for m in requests.get(f"http://127.0.0.1:{port}/api/ps", timeout=10).json()["models"])


def test_site_converges_the_fleet_and_a_second_run_changes_nothing(site):  # pylint: disable=redefined-outer-name
    n, env = site["names"], site["env"]
    inv = _inventory(site, ["chat", "nosys"], "chat", ["nosys", "chat_v2"], "nosys")
    res = _run(site, "site", inv)
    assert res.rc == 0, res.stdout[-6000:] + res.stderr[-3000:]
    for i, (models, active) in ((1, ({"chat", "nosys"}, "chat")), (2, ({"chat", "nosys"}, "chat")),
                                (3, ({"nosys", "chat_v2"}, "nosys"))):
        host = env.host(i).name
        assert _tags(site, i) == sorted(n[k] for k in models), host
        assert _loaded(site, i) == [n[active]], host
        act = _item_results(res, "Serve the active models, gated on health with rollback", host)
        assert act[0]["changed"] is True and act[0]["mode"] == "systemd" and act[0]["model"] == n[active]
        summary = "\n".join(res.task("What this run did, or in check mode would do", host=host)["msg"])
        assert summary.startswith("applied") and f"runtime ollama: nothing -> {n[active]}" in summary, summary
        for k in models:
            assert f"model {n[k]}: install" in summary, summary

    again = _run(site, "site", inv)
    assert again.rc == 0, again.stdout[-6000:]
    assert _changed(again) == [], _changed(again)
    for i in (1, 2, 3):
        summary = again.task("What this run did, or in check mode would do", host=env.host(i).name)["msg"]
        assert summary[0] == "applied" and "download: nothing" in summary, summary


def test_site_check_mode_is_the_fleet_wide_plan(site):  # pylint: disable=redefined-outer-name
    n, env = site["names"], site["env"]
    before = {i: (_tags(site, i), _loaded(site, i)) for i in (1, 2, 3)}
    inv = _inventory(site, ["chat", "-nosys", "chat_v2"], "chat", ["nosys", "chat_v2"], "chat_v2", name="plan.yml")
    res = _run(site, "site", inv, check=True)
    assert res.rc == 0, res.stdout[-6000:]
    size_v2 = ollama_env.standard_specs()["chat_v2"].size
    for i in (1, 2):
        plan = res.task("What this run did, or in check mode would do", host=env.host(i).name)["msg"]
        assert plan[0].startswith("check mode"), plan
        assert any(line.startswith(f"model {n['chat_v2']}: install (") for line in plan), plan
        assert f"model {n['nosys']}: remove" in plan, plan
        assert not any(line.startswith("runtime ") for line in plan), "alpha keeps serving tiny-chat"
        fetch = next(line for line in plan if line.startswith("download: "))
        assert int(fetch.split("(")[1].split()[0]) >= size_v2, plan
        assert any(line.startswith("quota: ") and "headroom after this run" in line for line in plan), plan
    plan3 = res.task("What this run did, or in check mode would do", host=env.host(3).name)["msg"]
    assert f"runtime ollama: {n['nosys']} -> {n['chat_v2']}" in plan3, plan3
    assert "download: nothing" in plan3, plan3
    assert {i: (_tags(site, i), _loaded(site, i)) for i in (1, 2, 3)} == before, "check mode changed nothing"


def test_rolling_activation_stops_at_the_broken_host_which_rolls_back(site):  # pylint: disable=redefined-outer-name
    n, env = site["names"], site["env"]
    # host 2's copy of tiny-nosys disappears from its server behind venom's back: it cannot load
    port2 = env.host(2).ollama_port
    assert requests.delete(f"http://127.0.0.1:{port2}/api/delete", json={"model": n["nosys"]}, timeout=10).status_code == 200
    inv = _inventory(site, ["chat", "nosys"], "chat", ["nosys", "chat_v2"], "nosys")
    res = _run(site, "activate", inv, extra=["-e", "venom_activate_runtime=ollama", "-e", f"venom_activate_model={n['nosys']}"])
    assert res.rc != 0
    task = "Activate, gated on health, with rollback"
    ok1 = _item_results(res, task, env.host(1).name)[0]
    assert ok1["changed"] is True and ok1["previous_model"] == n["chat"] and ok1["model"] == n["nosys"]
    bad = _item_results(res, task, env.host(2).name)[0]
    assert bad["failed"] is True and bad["rolled_back"] is True and "Rolled back" in bad["msg"], bad
    assert not [r for r in res.results if r["host"] == env.host(3).name], "the play stopped before host 3"
    assert "NO MORE HOSTS LEFT" in res.stdout
    assert _loaded(site, 1) == [n["nosys"]]
    assert _loaded(site, 2) == [n["chat"]], "host 2 rolled back: tiny-chat serves again"
    assert _loaded(site, 3) == [n["nosys"]]


def test_report_describes_the_fleet(site):  # pylint: disable=redefined-outer-name
    n, env = site["names"], site["env"]
    out_dir = site["work"] / "report"
    inv = _inventory(site, ["chat", "nosys"], "chat", ["nosys", "chat_v2"], "nosys")
    res = _run(site, "report", inv, extra=["-e", f"venom_report_dir={out_dir}"])
    assert res.rc == 0, res.stdout[-6000:]
    report = json.loads((out_dir / "fleet-report.json").read_text())
    md = (out_dir / "fleet-report.md").read_text()
    hosts = {h["host"]: h for h in report["hosts"]}
    h1, h2, h3 = (hosts[env.host(i).name] for i in (1, 2, 3))
    assert report["summary"]["hosts"] == 3 and report["summary"]["reachable"] == 3
    assert {m["name"] for m in h1["models"]} == {n["chat"], n["nosys"]}
    assert {m["name"] for m in h3["models"]} == {n["nosys"], n["chat_v2"]}
    assert h1["active_models"] == {"ollama": n["nosys"]} and h2["active_models"] == {"ollama": n["chat"]}
    assert h3["active_models"] == {"ollama": n["nosys"]}
    assert h1["runtimes"]["ollama"]["mode"] == "systemd" and h1["runtimes"]["ollama"]["healthy"] is True
    assert h1["usage"]["models_count"] == 2 and h1["usage"]["disk_free_gb"] > 0
    failed = h2["failed_operations"]
    assert failed and failed[0]["type"] == "activate" and failed[0]["model"] == n["nosys"], failed
    assert env.host(2).name in report["summary"]["hosts_with_problems"]
    assert not h1["failed_operations"] and not h3["failed_operations"]
    assert f"| {env.host(2).name} | activate | {n['nosys']} |" in md
