# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The mirror role's helper (roles/mirror/files/venom_mirror.py): the upstream-token middleware
the cache reports, on layouts as olah 0.5.4 and docker-registry 2.8 write them, and the TLS side of
prewarm (its client against a tiny HTTPS double). The server side (serve, prewarm through a real
olah, plain and HTTPS) runs in tests/fleet/test_mirror.py."""
from __future__ import annotations

import asyncio
import http.server
import importlib.util
import json
import os

import pytest

from tests.lib.private_ca import make_private_ca
from tests.lib.servers import LocalHTTPServer

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                      "roles", "mirror", "files", "venom_mirror.py")
_spec = importlib.util.spec_from_file_location("venom_mirror_helper", HELPER)
helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helper)


def _run(scope: dict) -> dict:
    seen = {}

    async def app(scope, _receive, _send):
        seen.update(scope)

    asyncio.run(helper.UpstreamToken(app, token="hf_abc")(scope, None, None))
    return seen


def test_the_token_is_added_to_requests_without_one():
    got = _run({"type": "http", "headers": [(b"host", b"m")]})
    assert (b"authorization", b"Bearer hf_abc") in got["headers"]


def test_a_client_token_is_kept():
    got = _run({"type": "http", "headers": [(b"Authorization", b"Bearer hf_client")]})
    assert got["headers"] == [(b"Authorization", b"Bearer hf_client")]


def test_non_http_scopes_pass_unchanged():
    assert _run({"type": "lifespan"}) == {"type": "lifespan"}


def _write(path: str, size: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"x" * size)


def test_cache_info_lists_repositories_revisions_and_bytes(tmp_path):
    root = str(tmp_path)
    _write(f"{root}/files/models/org/a/resolve/c1/model.safetensors/blocks/0", 1000)
    _write(f"{root}/files/models/org/a/resolve/c2/config.json/blocks/0", 10)
    _write(f"{root}/api/models/org/a/revision/c1/meta_get.json", 5)
    _write(f"{root}/api/models/org/b/repo_get.json", 7)
    _write(f"{root}/lfs/files/ab/cd/h/f", 3)
    out = helper.cache_info(root)
    repos = {r["name"]: r for r in out["repos"]}
    assert repos["org/a"]["bytes"] == 1015 and repos["org/a"]["files"] == 2
    assert repos["org/a"]["revisions"] == ["c1", "c2"] and repos["org/a"]["type"] == "model"
    assert repos["org/b"]["bytes"] == 7 and repos["org/b"]["revisions"] == []
    assert out["lfs_bytes"] == 3 and out["total_bytes"] == 1025
    json.dumps(out)  # the role reads it as JSON


def test_cache_info_of_an_empty_or_missing_cache(tmp_path):
    assert helper.cache_info(str(tmp_path / "none")) == {
        "repos_path": str(tmp_path / "none"), "repos": [], "lfs_bytes": 0, "total_bytes": 0}


def test_registry_info_lists_repositories_tags_and_blob_bytes(tmp_path):
    base = f"{tmp_path}/docker/registry/v2"
    os.makedirs(f"{base}/repositories/library/tiny/_manifests/tags/latest/current")
    os.makedirs(f"{base}/repositories/library/tiny/_layers/sha256/aa")
    os.makedirs(f"{base}/repositories/ns/deep/model/_manifests/tags/v2")
    _write(f"{base}/blobs/sha256/aa/aaaa/data", 300)
    _write(f"{base}/blobs/sha256/bb/bbbb/data", 20)
    out = helper.registry_info(str(tmp_path))
    assert out["repositories"] == [{"name": "library/tiny", "tags": ["latest"]}, {"name": "ns/deep/model", "tags": ["v2"]}]
    assert out["blobs"] == 2 and out["blob_bytes"] == 320


# -- prewarm over TLS: the helper's client side against a tiny HTTPS double of olah's three routes
# (model info, file tree, resolve); the real olah over TLS runs in tests/fleet/test_mirror.py.
class _MirrorDouble(http.server.BaseHTTPRequestHandler):
    ROUTES = {
        "/api/models/org/m/revision/main": json.dumps({"id": "org/m", "sha": "c0ffee"}).encode(),
        "/api/models/org/m/tree/c0ffee": json.dumps(
            [{"type": "file", "path": "config.json", "size": 2, "oid": "a1"}]).encode(),
        "/org/m/resolve/c0ffee/config.json": b"{}",
    }

    def do_GET(self):  # noqa: N802 - http.server's name
        body = self.ROUTES.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args):
        pass


@pytest.fixture(name="tls_mirror")
def fixture_tls_mirror(tmp_path):
    from huggingface_hub.utils import _http as hub_http
    pki = make_private_ca(str(tmp_path / "pki"))
    saved = hub_http._GLOBAL_CLIENT_FACTORY  # pylint: disable=protected-access  # the process-wide client
    with LocalHTTPServer(_MirrorDouble, tls=(pki["cert"], pki["key"])) as server:
        try:
            yield {"url": server.url, **pki}
        finally:
            hub_http.set_client_factory(saved)


def test_prewarm_verifies_an_https_mirror_with_its_ca(tls_mirror, monkeypatch):
    # a system bundle in the environment (as on many hosts) must not replace mirror_tls_ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    out = helper.prewarm(tls_mirror["url"], "org/m", "main", tls_mirror["ca"])
    assert (out["commit"], out["files"], out["bytes"]) == ("c0ffee", 1, 2), out


def test_prewarm_without_the_ca_fails_naming_the_mirror_and_the_fix(tls_mirror):
    with pytest.raises(SystemExit) as err:
        helper.prewarm(tls_mirror["url"], "org/m", "main")
    msg = str(err.value)
    assert tls_mirror["url"] in msg and "TLS certificate could not be verified" in msg, msg
    assert "system trust store (mirror_tls_ca is not set)" in msg and "Set mirror_tls_ca" in msg, msg


def test_prewarm_with_a_wrong_ca_names_it(tls_mirror, tmp_path):
    other = make_private_ca(str(tmp_path / "other"))["ca"]
    with pytest.raises(SystemExit) as err:
        helper.prewarm(tls_mirror["url"], "org/m", "main", other)
    assert f"mirror_tls_ca ({other})" in str(err.value) and tls_mirror["url"] in str(err.value), err.value


def test_prewarm_refuses_a_ca_that_is_no_pem_bundle(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(SystemExit, match="mirror_tls_ca .*ca.pem is not a readable PEM CA bundle"):
        helper.prewarm("https://127.0.0.1:1", "org/m", "main", str(bad))


@pytest.mark.parametrize("name", ["llama3", "a/b/c:1", ""])
def test_prewarm_registry_refuses_a_name_that_is_not_namespace_model(name):
    with pytest.raises(SystemExit) as exc:
        helper.prewarm_registry("http://127.0.0.1:9", name)
    assert "is not namespace/model[:tag]" in str(exc.value) and "library/llama3.2:1b" in str(exc.value)


def test_prewarm_registry_looks_for_blobs_where_docker_registry_stores_them(tmp_path):
    # the layout registry_info reads too (docker-registry 2.8, filesystem driver)
    digest = "sha256:" + "ab" * 32
    path = helper._blob_path(str(tmp_path), digest)  # pylint: disable=protected-access
    assert path == os.path.join(str(tmp_path), "docker/registry/v2/blobs/sha256/ab", "ab" * 32, "data")
    _write(path, 10)
    assert helper.registry_info(str(tmp_path))["blob_bytes"] == 10
