# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One download per fleet: venom.models.mirror and site.yml's mirror play on four real hosts.

Host 1 is the mirror (group ``venom_mirror``: the role installs olah from the fleet wheelhouse,
as on an air-gapped host, and runs it as a hardened unit serving HTTPS with a certificate of a
private CA, tests/lib/private_ca.py); hosts 2-4 install models through it with ``site.yml``,
verifying it with that CA (``venom_ca_path``); the role's readiness check and pre-warming verify it
with ``mirror_tls_ca``. The mirror's upstream is a second olah on this machine playing the Hub
(tests/lib/hub_upstream.py); every byte it sends passes a counter, so ``hub.counter.received``
is what the fleet fetched from outside. In order (each test builds on the one before):

1. ``site`` with a pre-warmed model B and model A on the three hosts: B crosses the counter once
   while the mirror play pre-warms it, A once while three hosts install it. The mirror's token
   goes upstream and nowhere else; ``mirror_facts`` lists both repositories and their size.
   A host without the CA is refused before it installs anything, naming the mirror and the fix.
2. B installed on the three hosts afterwards comes from the warm cache: (almost) nothing from
   outside.
3. The mirror stops in the middle of a rollout: each host fails before installing, naming the
   mirror, and has nothing half-installed; with the mirror back the same run installs model C,
   fetched from outside once (through the URL site.yml derives without mirror_public_url: https).
4. olah's cache size limit (mirror_cache_size_limit) evicts the cache when the mirror restarts.
5. Offline (air-gapped): the mirror serves a git repository seeded into mirror_repos_dir and never
   contacts the upstream; a host installs it through site.yml.
6. Ollama: the mirror also runs the registry cache (mirror_registry_enabled, Debian's
   docker-registry, HTTPS with the same certificate) in front of the tests' seeded registry
   (tests/lib/ollama_env.py, whose blob storage double logs every byte it sends); the mirror play
   pre-warms one tiny Ollama model, the three hosts (Ollama test double under the ollama role,
   ollama_ca_path = the private CA) install it through site.yml by the name site.yml's
   venom_mirror_registry gives: its blobs left the upstream once, every host has it with the
   published digests, and a second run changes and fetches nothing.
"""
from __future__ import annotations

import concurrent.futures
import os

import pytest
import requests
import yaml

from tests.fleet import harness
from tests.lib.ansible_run import run_playbook
from tests.lib.fleet_env import start_fleet
from tests.lib import ollama_env
from tests.lib.hub_upstream import Hub
from tests.lib.olah_env import safetensors_bytes
from tests.lib.olah_mirror import commit_repo
from tests.lib.private_ca import make_private_ca
from tests.lib.servers import wait_http

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = "/opt/venom-py"  # the modules' Python on the model hosts (requirements-target.txt)
MIRROR_PORT = 18160
MIRROR_URL = f"https://127.0.0.1:{MIRROR_PORT}"
REGISTRY_PORT = 15060  # the registry cache on the mirror host
TLS_DIR = "/etc/venom-test-tls"  # on the hosts: ca.pem everywhere, mirror.crt and mirror.key on the mirror
TOKEN = "hf_venomMirrorTestToken0123456789"
MODELS = {  # name -> megabytes of weights
    "venom-fleet/model-a": 3,
    "venom-fleet/model-b": 2,
    "venom-fleet/model-c": 2,
}
# What a mirror fetches beyond the files themselves (API answers, HEADs, HTTP headers), per
# repository: measured about 12 KB for a three-file repository; far below one more copy.
OVERHEAD = 64 * 1024


def _files(name: str, mb: int) -> dict:
    seed = sum(name.encode())
    return {"config.json": f'{{"model_type": "llama", "name": "{name}"}}\n'.encode(),
            "model.safetensors": safetensors_bytes(mb * 1024 * 1024 // 4, seed=seed)}


def _target_specs() -> list:
    with open(os.path.join(REPO, "requirements-target.txt"), encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def mirror_fleet(tmp_path_factory):
    work = tmp_path_factory.mktemp("mirror")
    # wheels once on this machine; hosts install from /srv/venom-wheels/<link> without an index
    harness.wheelhouse(["olah==0.5.4"], link="olah")
    harness.wheelhouse(_target_specs(), link="venom-target")
    with Hub() as hub:
        sizes = {name: hub.create(name, _files(name, mb)) for name, mb in MODELS.items()}
        with start_fleet(count=4, name="venom-mirror", ssh_port=2251, ollama_port=11551, vllm_port=8151,
                         groups={"venom_mirror": [1], "models": [2, 3, 4]}) as env:
            def prepare(h):
                env.ssh(h, f"python3 -m venv --system-site-packages {VENV} && {VENV}/bin/pip install -q --no-index "
                           f"--find-links /srv/venom-wheels/venom-target " + " ".join(f"'{s}'" for s in _target_specs()),
                        timeout=300)
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                list(pool.map(prepare, env.hosts[1:]))
            pki = _install_pki(env, str(work / "pki"))
            yield {"env": env, "hub": hub, "sizes": sizes, "work": work, "ca": pki["ca"]}


def _install_pki(env, directory: str) -> dict:
    """A private CA and a certificate for 127.0.0.1 (the hosts share this machine's network): the
    CA on every host, the certificate and its key on the mirror as an operator puts them there
    (the key readable by root and the service group only)."""
    pki = make_private_ca(directory)
    files = {"ca.pem": pki["ca"], "mirror.crt": pki["cert"], "mirror.key": pki["key"]}
    for host in env.hosts:
        target = os.path.join(env.state_dir, "hosts", host.name, "root", TLS_DIR.lstrip("/"))
        os.makedirs(target, exist_ok=True)
        for name, src in files.items():
            if host.index == 1 or name == "ca.pem":
                with open(src, "rb") as fh, open(os.path.join(target, name), "wb") as out:
                    out.write(fh.read())
        env.ssh(host, f"chown -R root:root {TLS_DIR} && chmod 0755 {TLS_DIR} && chmod 0644 {TLS_DIR}/*.pem")
    env.ssh(1, f"getent group venom-mirror >/dev/null || groupadd --system venom-mirror; "
               f"chown root:venom-mirror {TLS_DIR}/mirror.key && chmod 0640 {TLS_DIR}/mirror.key && "
               f"chmod 0644 {TLS_DIR}/mirror.crt")
    return pki


def _inventory(fx, models: list, name: str, ca: bool = True, public_url: bool = True, **mirror_vars) -> str:
    """An inventory for site.yml: the mirror on HTTPS; ``ca``: the model hosts verify it with the
    private CA (venom_ca_path); ``public_url``: mirror_public_url set (else site.yml derives it)."""
    doc = {"all": {"children": {
        "venom_mirror": {"vars": {
            "mirror_port": MIRROR_PORT,
            **({"mirror_public_url": MIRROR_URL} if public_url else {}),
            "mirror_tls_cert": f"{TLS_DIR}/mirror.crt",
            "mirror_tls_key": f"{TLS_DIR}/mirror.key",
            "mirror_tls_ca": f"{TLS_DIR}/ca.pem",
            "mirror_upstream_url": fx["hub"].url,
            "mirror_hf_token": TOKEN,
            "mirror_pip_no_index": True,
            "mirror_pip_find_links": ["/srv/venom-wheels/olah"],
            "mirror_prewarm_models": [{"name": "venom-fleet/model-b"}],
            **mirror_vars}},
        "models": {"vars": {
            "ansible_python_interpreter": f"{VENV}/bin/python",
            **({"venom_ca_path": f"{TLS_DIR}/ca.pem"} if ca else {}),
            "venom_models": [{"name": m, "revision": "main"} for m in models]}},
    }}}
    path = fx["work"] / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _site(fx, inventory: str, extra: tuple = ()):
    return run_playbook([{"import_playbook": "venom.models.site"}], inventory=fx["env"].inventory,
                        extra_args=["-i", inventory, *extra], timeout=900)


def _installed(fx, index: int) -> list:
    res = run_playbook([{"hosts": fx["env"].host(index).name, "gather_facts": False,
                         "tasks": [{"name": "facts", "venom.models.venom_model_facts": {"gather_subset": ["models"]}}]}],
                       inventory=fx["env"].inventory, extra_args=["-e", f"ansible_python_interpreter={VENV}/bin/python"])
    assert res.rc == 0, res.stdout[-3000:]
    return sorted((m["name"], m["status"]) for m in res.task("facts")["ansible_facts"]["venom_models"])


def _wait_mirror(fx, timeout: float = 90) -> None:
    """Until the mirror answers (olah takes some seconds to start; an unknown path is a 404), its
    certificate verified with the test CA."""
    wait_http(f"{MIRROR_URL}/venom-mirror-ready", timeout, ready=lambda status: status == 404, interval=1,
              cafile=fx["ca"])


def _model_hosts(fx) -> list:
    return [fx["env"].host(i).name for i in (2, 3, 4)]


def test_one_download_for_three_hosts_and_a_prewarmed_model(mirror_fleet):
    fx, hub = mirror_fleet, mirror_fleet["hub"]
    a, b = fx["sizes"]["venom-fleet/model-a"], fx["sizes"]["venom-fleet/model-b"]
    hub.counter.reset()
    res = _site(fx, _inventory(fx, ["venom-fleet/model-a"], "a.yml"))
    assert res.rc == 0, res.stdout[-8000:] + res.stderr[-3000:]
    egress = hub.counter.received
    # A once for three hosts, B once by the pre-warming: not 3 x A
    assert a + b <= egress <= a + b + 2 * OVERHEAD, (egress, a, b)
    for host in _model_hosts(fx):
        item = res.task("Install, verify or update the other models", host=host)["results"][0]
        assert item["changed"] is True and item["item"]["name"] == "venom-fleet/model-a", item
    assert _installed(fx, 2) == [("venom-fleet/model-a", "installed")]

    # the pre-warming changed the mirror; its facts list both repositories and their bytes
    mirror = fx["env"].host(1).name
    prewarm = res.task("venom.models.mirror : Pre-warm the cache with the listed models", host=mirror)
    assert prewarm["results"][0]["changed"] is True, prewarm
    facts = res.task("venom.models.mirror : Set mirror_facts", host=mirror)["ansible_facts"]["mirror_facts"]
    # (read in the mirror play: after the pre-warming, before the fleet installs)
    cached = {r["name"]: r["bytes"] for r in facts["cache"]["repos"]}
    assert set(cached) == {"venom-fleet/model-b"}, facts
    assert cached["venom-fleet/model-b"] >= b and facts["url"] == MIRROR_URL
    summary = res.task("What the mirror holds", host=mirror)["msg"]
    assert "1 repositories" in summary, summary

    # the token went upstream (for requests without one) and nowhere else
    assert any(TOKEN.encode() in head for head in hub.counter.request_heads), "the mirror sent its token upstream"
    assert TOKEN not in res.text
    out = fx["env"].ssh(1, "stat -c '%a %U' /etc/venom-models/venom-mirror.env; "
                           f"grep -rl {TOKEN} /etc/systemd/system /etc/venom-models /var/lib/venom-mirror/logs; "
                           f"journalctl --no-pager | grep -c {TOKEN}", check=False).stdout.split("\n")
    assert out[0] == "600 root", out
    assert out[1:] == ["/etc/venom-models/venom-mirror.env", "0", ""], out

    # the unit is the collection's hardened one, verified by systemd-analyze in the role
    unit = fx["env"].ssh(1, "systemctl cat venom-mirror.service").stdout
    assert "ProtectSystem=strict" in unit and "User=venom-mirror" in unit and "ReadWritePaths=/var/lib/venom-mirror" in unit
    # olah serves HTTPS only: the certificate of the private CA, no plain HTTP on its port
    assert requests.get(f"{MIRROR_URL}/venom-mirror-ready", timeout=10, verify=fx["ca"]).status_code == 404
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{MIRROR_URL}/venom-mirror-ready", timeout=10, verify=True)
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{MIRROR_PORT}/venom-mirror-ready", timeout=10)

    # a second run changes nothing and fetches nothing from outside
    hub.counter.reset()
    again = _site(fx, _inventory(fx, ["venom-fleet/model-a"], "a.yml"))
    assert again.rc == 0, again.stdout[-6000:]
    assert [(r["host"], r["task"]) for r in again.results if r["result"].get("changed")] == []
    assert hub.counter.received <= OVERHEAD, hub.counter.received
    facts = again.task("venom.models.mirror : Set mirror_facts", host=mirror)["ansible_facts"]["mirror_facts"]
    cached = {r["name"]: r["bytes"] for r in facts["cache"]["repos"]}
    assert set(cached) == {"venom-fleet/model-a", "venom-fleet/model-b"}, facts
    assert cached["venom-fleet/model-a"] >= a and facts["cache"]["total_bytes"] >= a + b, facts


def test_a_host_without_the_ca_is_refused_naming_the_mirror(mirror_fleet):
    fx, env = mirror_fleet, mirror_fleet["env"]
    host = env.host(2).name
    res = _site(fx, _inventory(fx, ["venom-fleet/model-c"], "noca.yml", ca=False),
                extra=("--limit", host, "-e", '{"venom_host_bootstrap": false}'))
    assert res.rc != 0
    msg = res.task("Stop here when the mirror does not answer", host=host)["msg"]
    assert msg.startswith(f"The TLS certificate of the model mirror {env.host(1).name} ({MIRROR_URL}) could not be "
                          "verified against the host's trust store (venom_ca_path is not set)"), msg
    assert "CERTIFICATE_VERIFY_FAILED" in msg and "Set venom_ca_path" in msg and "Nothing was installed" in msg, msg
    check = res.task("Check that the mirror answers", host=host)
    assert check.get("attempts", 1) == 1, ("a certificate failure is not retried", check)
    assert not [r for r in res.results if r["task"] == "Install, verify or update the other models"]
    assert _installed(fx, 2) == [("venom-fleet/model-a", "installed")]


def test_a_prewarmed_model_comes_from_the_cache(mirror_fleet):
    fx, hub = mirror_fleet, mirror_fleet["hub"]
    hub.counter.reset()
    res = _site(fx, _inventory(fx, ["venom-fleet/model-a", "venom-fleet/model-b"], "ab.yml"))
    assert res.rc == 0, res.stdout[-8000:]
    assert hub.counter.received <= 2 * OVERHEAD, ("model B was pre-warmed", hub.counter.received)
    for i in (2, 3, 4):
        assert _installed(fx, i) == [("venom-fleet/model-a", "installed"), ("venom-fleet/model-b", "installed")]


def test_the_mirror_down_mid_rollout_fails_clearly_and_resumes(mirror_fleet):
    fx, hub, env = mirror_fleet, mirror_fleet["hub"], mirror_fleet["env"]
    # without mirror_public_url: site.yml derives https://<the mirror's ansible_host>:<mirror_port>
    inv = _inventory(fx, ["venom-fleet/model-a", "venom-fleet/model-b", "venom-fleet/model-c"], "abc.yml",
                     public_url=False)
    env.ssh(1, "systemctl stop venom-mirror.service")
    hub.counter.reset()
    # the rollout of the model hosts (the mirror's own play is not part of it)
    res = _site(fx, inv, extra=("--limit", "models"))
    assert res.rc != 0
    for host in _model_hosts(fx):
        msg = res.task("Stop here when the mirror does not answer", host=host)["msg"]
        assert env.host(1).name in msg and f"({MIRROR_URL})" in msg and "Nothing was installed" in msg, msg
    assert not [r for r in res.results if r["task"] == "Install, verify or update the other models"]
    assert hub.counter.received == 0
    for i in (2, 3, 4):
        assert _installed(fx, i) == [("venom-fleet/model-a", "installed"), ("venom-fleet/model-b", "installed")]

    env.ssh(1, "systemctl start venom-mirror.service")
    _wait_mirror(fx)
    res = _site(fx, inv, extra=("--limit", "models"))
    assert res.rc == 0, res.stdout[-8000:]
    c = fx["sizes"]["venom-fleet/model-c"]
    assert c <= hub.counter.received <= c + OVERHEAD, (hub.counter.received, c)
    for i in (2, 3, 4):
        assert ("venom-fleet/model-c", "installed") in _installed(fx, i)


def test_the_cache_size_limit_evicts(mirror_fleet):
    fx = mirror_fleet
    mirror = fx["env"].host(1).name
    res = _site(fx, _inventory(fx, [], "limit.yml", mirror_cache_size_limit="1M", mirror_prewarm_models=[]),
                extra=("--limit", "venom_mirror"))
    assert res.rc == 0, res.stdout[-6000:]
    restarted = [r for r in res.results if r["task"] == "venom.models.mirror : Restart mirror" and r["host"] == mirror]
    assert restarted and restarted[0]["result"]["changed"], "a new setting restarts the mirror once"
    facts = res.task("venom.models.mirror : Set mirror_facts", host=mirror)["ansible_facts"]["mirror_facts"]
    # olah evicted whole entries at start until the cache fits its limit
    assert facts["cache_size_limit"] == "1M"
    assert facts["cache"]["total_bytes"] <= 1024 * 1024, facts["cache"]
    conf = fx["env"].ssh(1, "cat /etc/venom-models/venom-mirror.toml").stdout
    assert 'cache-size-limit = "1M"' in conf and 'cache-clean-strategy = "LRU"' in conf
    assert f'ssl-cert = "{TLS_DIR}/mirror.crt"' in conf and 'mirror-scheme = "https"' in conf, conf


def test_an_offline_mirror_serves_seeded_repositories(mirror_fleet, tmp_path):
    fx, env, hub = mirror_fleet, mirror_fleet["env"], mirror_fleet["hub"]
    name = "venom-airgap/seeded"
    files = _files(name, 1)
    # seeded as an operator does: a git repository (weights as git-lfs files) copied into place
    rootfs = os.path.join(env.state_dir, "hosts", env.host(1).name, "root")
    repo_dir = os.path.join(rootfs, "var/lib/venom-mirror/repos/models", name)
    commit = commit_repo(repo_dir, files, "seeded for an air-gapped fleet")
    env.ssh(1, "chown -R venom-mirror:venom-mirror /var/lib/venom-mirror/repos")
    inv = _inventory(fx, [name], "offline.yml", mirror_offline=True, mirror_prewarm_models=[])
    hub.counter.reset()
    res = _site(fx, inv, extra=("--limit", f"venom_mirror:{env.host(2).name}"))
    assert res.rc == 0, res.stdout[-8000:] + res.stderr[-2000:]
    item = res.task("Install, verify or update the other models", host=env.host(2).name)["results"][-1]
    assert item["changed"] is True and item["revision"] == commit, item
    assert (name, "installed") in _installed(fx, 2)
    assert hub.counter.received == 0 and hub.counter.connections == 0, "an offline mirror never calls the upstream"
    assert "offline = true" in env.ssh(1, "cat /etc/venom-models/venom-mirror.toml").stdout


def _ollama_inventory(fx, oci_registry, repo_tags: list, name: str) -> str:
    """site.yml's inventory for Ollama models through the registry cache: the mirror runs it in
    front of the tests' seeded registry and pre-warms ``repo_tags[0]``; the model hosts run the
    Ollama test double under the ollama role, trusting the private CA, and install every one of
    ``repo_tags`` by the name site.yml's venom_mirror_registry gives."""
    exe = fx["work"] / "ollama"  # the Ollama test double as the hosts' ollama binary
    with open(ollama_env.OLLAMA_DOUBLE, encoding="utf-8") as fh:
        exe.write_text("#!/usr/bin/env python3\n" + fh.read().split("\n", 1)[1])
    exe.chmod(0o755)
    inv = _inventory(fx, [], name, mirror_prewarm_models=[],
                     mirror_registry_enabled=True, mirror_registry_port=REGISTRY_PORT,
                     mirror_registry_upstream_url=oci_registry.url, mirror_prewarm_ollama_models=repo_tags[:1])
    with open(inv, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    doc["all"]["children"]["models"]["vars"].update({
        # the name an operator writes: the registry cache as site.yml's mirror play names it
        "venom_models": [{"name": "{{ venom_mirror_registry }}/" + tag, "provider": "ollama"} for tag in repo_tags],
        "venom_install_runtimes": ["ollama"], "ollama_install_method": "controller", "ollama_src": str(exe),
        "ollama_ca_path": f"{TLS_DIR}/ca.pem"})
    with open(inv, "w", encoding="utf-8") as fh:
        yaml.safe_dump(doc, fh)
    return inv


def _ollama_tags(host) -> dict:
    listed = requests.get(f"http://127.0.0.1:{host.ollama_port}/api/tags", timeout=10).json()["models"]
    return {m["name"]: m for m in listed}


def test_an_ollama_model_leaves_the_upstream_once_through_the_registry_cache(mirror_fleet, oci_registry):
    fx, env = mirror_fleet, mirror_fleet["env"]
    # 16 MiB: large enough to tell one download from two (docker-registry 2.8 answers a cold blob
    # with a second upstream download; pre-warming drops it after the first socket buffers)
    spec = ollama_env.ModelSpec("venom-fleet/tiny-cached", size=16 * 1024 * 1024)
    model = ollama_env.publish_model(oci_registry, spec, str(fx["work"] / "ollama-model"))
    repo_tag = f"{spec.repo}:{spec.tag}"
    inv = _ollama_inventory(fx, oci_registry, [repo_tag], "ollama.yml")
    oci_registry.reset_faults()  # clears the storage double's request log: from here on, the egress

    def upstream_bytes() -> int:
        return sum(r["sent"] for r in oci_registry.storage_requests() if r["method"] == "GET")

    res = _site(fx, inv)
    assert res.rc == 0, res.stdout[-8000:] + res.stderr[-3000:]
    # every blob (model, template, system, licence, params, config) left the upstream once for the
    # fleet, plus what the registry's dropped second download sent before it stopped (measured
    # about 4 MB: socket buffers); three hosts pulling would be 3 x, a cold registry 2 x per pull
    egress = upstream_bytes()
    print(f"registry cache: upstream sent {egress} bytes for a model of {model.size} bytes, 3 hosts")
    assert model.size <= egress < 1.5 * model.size, (egress, model.size, oci_registry.storage_requests())
    mirror = env.host(1).name
    warmed = res.task("venom.models.mirror : Pre-warm the registry cache with the listed Ollama models", host=mirror)
    assert warmed["results"][0]["changed"] is True, warmed
    name = f"127.0.0.1:{REGISTRY_PORT}/{repo_tag}"
    for i in (2, 3, 4):
        host = env.host(i)
        item = res.task("Install, verify or update the other models", host=host.name)["results"][0]
        assert item["changed"] is True and item["item"]["name"] == name, item
        tags = _ollama_tags(host)
        assert tags[name]["digest"] == model.manifest_digest, tags
        sums = env.ssh(host, "cd /var/lib/ollama/models/blobs && sha256sum " + " ".join(
            "sha256-" + layer["digest"][7:] for layer in model.layers)).stdout.split()
        assert sums[0::2] == [layer["digest"][7:] for layer in model.layers], sums
    facts = res.task("venom.models.mirror : Set mirror_facts", host=mirror)["ansible_facts"]["mirror_facts"]
    assert facts["registry_url"] == f"https://127.0.0.1:{REGISTRY_PORT}", facts
    assert facts["cache"]["registry"]["repositories"] == [{"name": spec.repo, "tags": [spec.tag]}], facts
    assert facts["cache"]["registry"]["blob_bytes"] >= model.size, facts
    # the registry runs as the hardened unit of the collection, serving HTTPS only
    unit = env.ssh(1, "systemctl cat venom-mirror-registry.service").stdout
    assert "ProtectSystem=strict" in unit and "User=venom-mirror" in unit, unit
    assert requests.get(f"https://127.0.0.1:{REGISTRY_PORT}/v2/", timeout=10, verify=fx["ca"]).status_code == 200
    plain = requests.get(f"http://127.0.0.1:{REGISTRY_PORT}/v2/", timeout=10)  # Go's TLS server refuses it so
    assert plain.status_code == 400 and "HTTPS" in plain.text, (plain.status_code, plain.text)

    oci_registry.reset_faults()
    again = _site(fx, inv)
    assert again.rc == 0, again.stdout[-6000:]
    assert [(r["host"], r["task"]) for r in again.results if r["result"].get("changed")] == []
    assert upstream_bytes() == 0, oci_registry.storage_requests()


def test_the_registry_cache_down_fails_clearly_and_resumes(mirror_fleet, oci_registry):
    """The registry cache stops before a rollout of a second Ollama model: every host fails before
    it installs anything, naming the registry cache, its mirror and the command that starts it, and
    keeps the model it had; with the cache back the same run installs the new model everywhere."""
    fx, env = mirror_fleet, mirror_fleet["env"]
    first = ollama_env.ModelSpec("venom-fleet/tiny-cached", size=16 * 1024 * 1024)
    later = ollama_env.ModelSpec("venom-fleet/tiny-later", size=2 * 1024 * 1024)
    model = ollama_env.publish_model(oci_registry, later, str(fx["work"] / "ollama-later"))
    tags = [f"{first.repo}:{first.tag}", f"{later.repo}:{later.tag}"]
    inv = _ollama_inventory(fx, oci_registry, tags, "ollama-down.yml")
    registry = f"127.0.0.1:{REGISTRY_PORT}"
    env.ssh(1, "systemctl stop venom-mirror-registry.service")
    # the rollout of the model hosts (the mirror's own play, which would start it, is not part of it)
    res = _site(fx, inv, extra=("--limit", "models"))
    assert res.rc != 0
    for i in (2, 3, 4):
        host = env.host(i)
        msg = res.task("Stop here when the registry cache does not answer", host=host.name)["msg"]
        assert f"registry cache of the model mirror {env.host(1).name} (https://{registry}/v2/)" in msg, msg
        assert f"Nothing was installed on {host.name}" in msg and f"{registry}/{tags[1]}" in msg, msg
        assert f"systemctl start venom-mirror-registry on {env.host(1).name}" in msg, msg
        held = _ollama_tags(host)
        assert f"{registry}/{tags[0]}" in held and f"{registry}/{tags[1]}" not in held, sorted(held)
    assert not [r for r in res.results if r["task"] == "Install, verify or update the other models"]

    env.ssh(1, "systemctl start venom-mirror-registry.service")
    wait_http(f"https://{registry}/v2/", 60, interval=1, cafile=fx["ca"])
    res = _site(fx, inv, extra=("--limit", "models"))
    assert res.rc == 0, res.stdout[-8000:] + res.stderr[-3000:]
    for i in (2, 3, 4):
        host = env.host(i)
        items = res.task("Install, verify or update the other models", host=host.name)["results"]
        assert [(it["item"]["name"], it["changed"]) for it in items] == [
            (f"{registry}/{tags[0]}", False), (f"{registry}/{tags[1]}", True)], items
        assert _ollama_tags(host)[f"{registry}/{tags[1]}"]["digest"] == model.manifest_digest
