# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/examples/inventory.yml against real hosts: the role venom.models.host and site --check.

Three fleet hosts stand in for gpu-1 (vllm_gpu), cpu-1 (ollama_cpu) and mirror-1 (venom_mirror) of
the example; a second inventory source (as an operator's own overrides would be) gives them their
SSH address, points the hosts at the test olah mirror (venom_mirror_url: the fleet's mirror is
already running, as on a fleet's second run) and the Ollama models at the test registry, and
installs the Ollama test double from the controller (no Ollama binary can be had here).
Everything else - groups, runtimes, the virtualenv interpreter, become - is the example's.

1. ``site --tags venom_host`` bootstraps the hosts: the example names /opt/venom/venv/bin/python
   as the interpreter, which does not exist yet; the role creates it with the host's Python and
   installs requirements-target.txt. A second run changes nothing.
2. The Ollama hosts get their server (the role venom.models.ollama, for real): check mode asks an
   Ollama host's server what it has, so it cannot plan Ollama models before the server runs.
3. ``site --check`` then prints each host's plan (the mirror role's in check mode on the mirror
   host, the MiniLM download on the GPU host, the Ollama model on the Ollama host, nothing to
   download on the mirror host) and changes nothing.
"""
from __future__ import annotations

import os

import pytest
import requests
import yaml

from tests.integration.test_example_inventory import EXAMPLE
from tests.lib import ollama_env
from tests.lib.ansible_run import run_playbook
from tests.lib.fleet_env import start_fleet
from tests.lib.olah_mirror import MINILM

DOUBLE = os.environ.get("VENOM_OLLAMA_DOUBLE") or ollama_env.OLLAMA_DOUBLE
HOSTS = {"gpu-1.llm.internal": 1, "cpu-1.llm.internal": 2, "mirror-1.llm.internal": 3}
SUMMARY = "What this run did, or in check mode would do"


@pytest.fixture(scope="module")
def example(tmp_path_factory, olah, oci_registry, ollama_models):  # pylint: disable=redefined-outer-name
    work = tmp_path_factory.mktemp("example")
    exe = work / "ollama"
    with open(DOUBLE, encoding="utf-8") as fh:
        exe.write_text("#!/usr/bin/env python3\n" + fh.read().split("\n", 1)[1])
    exe.chmod(0o755)
    chat = ollama_models["chat"].name
    with start_fleet(count=3, name="venom-example", ssh_port=2261, ollama_port=11561, vllm_port=8161) as env:
        with open(env.inventory, encoding="utf-8") as fh:
            connection = yaml.safe_load(fh)["all"]["vars"]
        connection.pop("ansible_python_interpreter")  # the example's own (the virtualenv) applies
        overrides = {"all": {
            "vars": {**connection, "venom_hf_endpoint": olah.endpoint, "venom_mirror_url": olah.endpoint},
            "hosts": {name: {"ansible_port": env.host(i).ssh_port, "ollama_port": env.host(i).ollama_port,
                             "vllm_port": env.host(i).vllm_port} for name, i in HOSTS.items()},
            "children": {"ollama_cpu": {"vars": {
                "ollama_install_method": "controller", "ollama_src": str(exe),
                "venom_models": [{"name": chat, "provider": "ollama", "insecure": True}],
                "venom_active_models": {"ollama": chat}}}},
        }}
        path = work / "overrides.yml"
        path.write_text(yaml.safe_dump(overrides))
        yield {"env": env, "overrides": str(path), "chat": chat}


def _site(example, *args, check=False):  # pylint: disable=redefined-outer-name
    return run_playbook([{"import_playbook": "venom.models.site"}], inventory=EXAMPLE, check=check,
                        extra_args=["-i", example["overrides"], "--limit", ",".join(HOSTS), *args], timeout=1500)


def _changed(res) -> list:
    return [(r["host"], r["task"]) for r in res.results if r["result"].get("changed")]


def test_the_host_role_bootstraps_the_modules_python(example):  # pylint: disable=redefined-outer-name
    env = example["env"]
    res = _site(example, "--tags", "venom_host")
    assert res.rc == 0, res.stdout[-6000:] + res.stderr[-3000:]
    for name in HOSTS:
        assert (name, "venom.models.host : Install the requirements into the virtualenv") in _changed(res), _changed(res)
    for i in HOSTS.values():
        out = env.ssh(i, "/opt/venom/venv/bin/python", "-c",
                      "import huggingface_hub, requests, psutil, jinja2, pynvml, apt; print('ok')").stdout
        assert out.strip() == "ok"
    again = _site(example, "--tags", "venom_host")
    assert again.rc == 0, again.stdout[-6000:]
    assert _changed(again) == []


def test_site_check_mode_on_the_example_fleet_is_a_plan(example):  # pylint: disable=redefined-outer-name
    env = example["env"]
    server = run_playbook([{"name": "The Ollama servers", "hosts": "ollama_cpu", "gather_facts": False, "become": True,
                            "roles": ["venom.models.ollama"]}], inventory=EXAMPLE,
                          extra_args=["-i", example["overrides"], "--limit", ",".join(HOSTS)], timeout=900)
    assert server.rc == 0, server.stdout[-6000:] + server.stderr[-3000:]
    res = _site(example, check=True)
    assert res.rc == 0, res.stdout[-8000:] + res.stderr[-3000:]
    gpu = res.task(SUMMARY, host="gpu-1.llm.internal")["msg"]
    assert gpu[0].startswith("check mode"), gpu
    assert any(line.startswith(f"model {MINILM}: install (") for line in gpu), gpu
    cpu = res.task(SUMMARY, host="cpu-1.llm.internal")["msg"]
    assert any(line.startswith(f"model {example['chat']}: install (") for line in cpu), cpu
    mirror = res.task(SUMMARY, host="mirror-1.llm.internal")["msg"]
    assert mirror[0].startswith("check mode") and "download: nothing" in mirror, mirror
    for i in HOSTS.values():  # nothing was written
        gone = env.ssh(i, "sh", "-c", "ls -d /opt/vllm /var/lib/venom/models 2>/dev/null || true").stdout
        assert gone.strip() == "", gone
    tags = requests.get(f"http://127.0.0.1:{env.host(HOSTS['cpu-1.llm.internal']).ollama_port}/api/tags", timeout=10)
    assert tags.json()["models"] == [], "nothing was pulled"
