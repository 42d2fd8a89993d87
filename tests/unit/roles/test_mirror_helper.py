# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The mirror role's helper (roles/mirror/files/venom_mirror.py): the upstream-token middleware
and the cache reports, on layouts as olah 0.5.4 and docker-registry 2.8 write them. The server
side (serve, prewarm) runs in tests/fleet/test_mirror.py."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os

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
