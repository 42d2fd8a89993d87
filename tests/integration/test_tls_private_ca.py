# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""validate_certs and ca_path against HTTPS endpoints signed by a private CA, through ansible-playbook.

The CA and the server certificate (``localhost``, ``127.0.0.1``) are made for the test
(tests/lib/private_ca.py). A TLS-terminating reverse proxy on loopback (tests/lib/throttle_proxy.py
with ``tls``, no rate limit) serves HTTPS in front of the real olah mirror, the Ollama test double
and the real OCI registry, as a private mirror or a TLS-intercepting proxy would. For each:

* without ca_path the task fails with the error that names the certificate problem and the fix,
  and leaves nothing behind (no manifest entry, no files, no staging; Ollama pulled nothing);
* with ca_path (the CA's PEM file on the host) it installs, with no warning;
* with validate_certs: false it installs and warns, naming each https remote it did not check;
* venom_model_info asks the same HTTPS endpoints with the same options.
"""
from __future__ import annotations

import os
import tempfile

import pytest
import requests

from tests.lib.ansible_run import run_task
from tests.lib.olah_env import OlahMirror, olah_venv, tiny_gemma_files
from tests.lib.ollama_env import ModelSpec, OllamaTestDouble, publish_model
from tests.lib.private_ca import make_private_ca
from tests.lib.throttle_proxy import ThrottleProxy

MODEL = "venom.models.venom_model"
INFO = "venom.models.venom_model_info"
REPO = "venom-test/tls-gemma"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_private_ca(str(tmp_path_factory.mktemp("private-ca")))


@pytest.fixture(scope="module")
def hub(tmp_path_factory, ca):  # pylint: disable=redefined-outer-name
    """The real olah mirror behind HTTPS (the private CA's certificate)."""
    mirror = OlahMirror(str(tmp_path_factory.mktemp("olah")), olah_venv())
    mirror.create_repo(REPO, tiny_gemma_files())
    mirror.start()
    try:
        with ThrottleProxy(mirror.endpoint, None, tls=ca) as proxy:
            yield proxy
    finally:
        mirror.stop()


def _cert_failure(res) -> str:
    out = res.task()
    assert res.rc != 0 and out.get("failed"), out
    msg = out["msg"]
    assert "TLS certificate of https://localhost:" in msg and "could not be verified" in msg, msg
    assert "unable to get local issuer certificate" in msg, msg
    assert "Set ca_path to your CA bundle" in out["fix"] and "validate_certs: false" in out["fix"], out
    return msg


def _tls_warnings(out) -> list:
    return [w for w in out.get("warnings", []) if "validate_certs is false" in w]


def test_huggingface_mirror_behind_a_private_ca(hub, ca, tmp_path):  # pylint: disable=redefined-outer-name
    models = tmp_path / "models"
    args = {"name": REPO, "endpoint": hub.endpoint, "models_dir": str(models)}

    # no ca_path: the clear error, and nothing half-installed
    _cert_failure(run_task(MODEL, args))
    left = [os.path.relpath(os.path.join(d, f), models) for d, _s, fs in os.walk(models) for f in fs]
    assert not [p for p in left if p.startswith(("huggingface/", ".venom/staging"))], left
    manifest = models / "manifest.json"
    assert not manifest.exists() or REPO not in manifest.read_text()

    # the listing asks the same endpoint with the same options
    _cert_failure(run_task(INFO, {"endpoint": hub.endpoint, "names": [REPO], "models_dir": str(models)}))
    info = run_task(INFO, {"endpoint": hub.endpoint, "names": [REPO], "models_dir": str(models),
                           "ca_path": ca["ca"]}).task()
    assert not info.get("failed") and info["models"][0]["available"] is True, info

    # ca_path: installs, nothing to warn about
    out = run_task(MODEL, dict(args, ca_path=ca["ca"])).task()
    assert not out.get("failed") and out["changed"] is True and out["action"] == "install", out
    assert os.path.isfile(os.path.join(out["local_path"], "config.json")) and not _tls_warnings(out), out

    # validate_certs: false: installs (another copy) and warns about the endpoint
    other = dict(args, models_dir=str(tmp_path / "insecure"), validate_certs=False)
    out = run_task(MODEL, other).task()
    assert not out.get("failed") and out["changed"] is True, out
    warned = _tls_warnings(out)
    assert len(warned) == 1 and hub.endpoint in warned[0] and "Set ca_path" in warned[0], out.get("warnings")


def test_ollama_server_and_registry_behind_a_private_ca(oci_registry, ca, tmp_path):  # pylint: disable=redefined-outer-name
    work = tempfile.mkdtemp(prefix="venom-tls-ollama-", dir=str(tmp_path))
    first = publish_model(oci_registry, ModelSpec("library/tls-chat", size=64 * 1024), work)
    second = publish_model(oci_registry, ModelSpec("library/tls-other", size=64 * 1024, system=None), work)
    srv = OllamaTestDouble(str(tmp_path / "ollama-models"), log_path=str(tmp_path / "ollama.log")).start()
    try:
        with ThrottleProxy(srv.url, None, tls=ca) as server, ThrottleProxy(oci_registry.url, None, tls=ca) as registry:
            args = {"name": first.name, "provider": "ollama", "endpoint": server.endpoint, "registry": registry.endpoint,
                    "insecure": True, "models_path": srv.models_dir, "models_dir": str(tmp_path / "venom")}
            _cert_failure(run_task(MODEL, args))
            assert requests.get(srv.url + "/api/tags", timeout=10).json()["models"] == [], "nothing was pulled"

            out = run_task(MODEL, dict(args, ca_path=ca["ca"])).task()
            assert not out.get("failed") and out["changed"] is True and not _tls_warnings(out), out
            assert out["revision"] == first.manifest_digest

            out = run_task(MODEL, dict(args, name=second.name, validate_certs=False)).task()
            assert not out.get("failed") and out["changed"] is True, out
            assert sorted(w.split(" was not")[0] for w in _tls_warnings(out)) == sorted(
                f"validate_certs is false: the TLS certificate of {p.endpoint}" for p in (server, registry)), out

            info = run_task(INFO, {"provider": "ollama", "endpoint": server.endpoint, "ca_path": ca["ca"],
                                   "models_dir": str(tmp_path / "venom")}).task()
            assert sorted(m["name"] for m in info["models"]) == sorted([first.name, second.name]), info
    finally:
        srv.stop()
