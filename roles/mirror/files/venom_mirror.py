# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The venom.models mirror's helper, run with the Python of olah's virtualenv.

    venom_mirror.py serve CONFIG LOG_DIR      run olah (the unit's ExecStart)
    venom_mirror.py cache-info REPOS_PATH [REGISTRY_DIR]
                                              what olah's cache (and the registry's) holds, JSON
    venom_mirror.py prewarm URL REPO [REV [CA [REPOS_PATH]]]
                                              fetch every file of REPO through the mirror (JSON);
                                              CA: a PEM bundle that verifies an https mirror
                                              instead of the system trust store
    venom_mirror.py prewarm-registry URL NAME [CA [REGISTRY_DIR]]
                                              fetch the manifest and every blob of the Ollama
                                              model NAME (namespace/model:tag) through the
                                              registry cache at URL (JSON)

serve: olah forwards the Authorization header of each client to the upstream and has no token of
its own. When VENOM_MIRROR_UPSTREAM_TOKEN is set (the role's root-only environment file), it is
taken out of the environment before olah starts and sent upstream as "Bearer <token>" for the
requests that come without one; it is never printed.
"""
from __future__ import annotations

import json
import os
import ssl
import sys


class UpstreamToken:
    """ASGI middleware: add the mirror's own token to requests that carry none."""

    def __init__(self, app, token: str):
        self.app = app
        self._header = (b"authorization", b"Bearer " + token.encode())

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http" and not any(k.lower() == b"authorization" for k, _v in scope.get("headers", [])):
            scope = dict(scope, headers=list(scope.get("headers", [])) + [self._header])
        await self.app(scope, receive, send)


def serve(config: str, log_dir: str) -> int:
    token = os.environ.pop("VENOM_MIRROR_UPSTREAM_TOKEN", "")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):  # olah's own huggingface_hub must not pick one up
        os.environ.pop(name, None)
    from olah import server  # pylint: disable=import-outside-toplevel
    if token:
        server.app.add_middleware(UpstreamToken, token=token)
    sys.argv = ["olah-cli", "-c", config, "--log-path", log_dir]
    server.cli()
    return 0


def _tree_size(path: str) -> tuple:
    total, files, newest = 0, 0, 0.0
    for root, _dirs, names in os.walk(path):
        for n in names:
            try:
                st = os.stat(os.path.join(root, n))
            except OSError:
                continue
            total += st.st_size
            files += 1
            newest = max(newest, st.st_mtime)
    return total, files, newest


def cache_info(repos_path: str) -> dict:
    """Repositories in olah's cache (files/<type>/<org>/<name>, api/<type>/<org>/<name>) with their
    bytes and cached revisions, LFS objects stored by hash, and the total."""
    repos = {}
    for area in ("files", "api"):
        base = os.path.join(repos_path, area)
        if not os.path.isdir(base):
            continue
        for rtype in sorted(os.listdir(base)):
            for org in sorted(os.listdir(os.path.join(base, rtype))) if os.path.isdir(os.path.join(base, rtype)) else []:
                org_dir = os.path.join(base, rtype, org)
                for name in sorted(os.listdir(org_dir)) if os.path.isdir(org_dir) else []:
                    key = (rtype, f"{org}/{name}")
                    entry = repos.setdefault(key, {"name": f"{org}/{name}", "type": rtype.rstrip("s"),
                                                   "bytes": 0, "files": 0, "revisions": set(), "last_used": 0.0})
                    size, count, newest = _tree_size(os.path.join(org_dir, name))
                    entry["bytes"] += size
                    entry["last_used"] = max(entry["last_used"], newest)
                    if area == "files":
                        entry["files"] += count
                        resolve = os.path.join(org_dir, name, "resolve")
                        if os.path.isdir(resolve):
                            entry["revisions"].update(os.listdir(resolve))
    lfs_bytes, _count, _newest = _tree_size(os.path.join(repos_path, "lfs"))
    total, _count, _newest = _tree_size(repos_path)
    out = []
    for entry in sorted(repos.values(), key=lambda e: (e["type"], e["name"])):
        entry["revisions"] = sorted(entry["revisions"])
        entry["last_used"] = int(entry["last_used"])
        out.append(entry)
    return {"repos_path": repos_path, "repos": out, "lfs_bytes": lfs_bytes, "total_bytes": total}


def registry_info(root: str) -> dict:
    """Repositories and tags the pull-through registry holds, and the bytes of its blobs."""
    base = os.path.join(root, "docker", "registry", "v2")
    repos = []
    top = os.path.join(base, "repositories")
    for path, dirs, _names in os.walk(top):
        if "_manifests" in dirs:
            tags_dir = os.path.join(path, "_manifests", "tags")
            tags = sorted(os.listdir(tags_dir)) if os.path.isdir(tags_dir) else []
            repos.append({"name": os.path.relpath(path, top), "tags": tags})
            dirs[:] = [d for d in dirs if not d.startswith("_")]
    blob_bytes, blobs, _newest = _tree_size(os.path.join(base, "blobs"))
    return {"root": root, "repositories": sorted(repos, key=lambda r: r["name"]), "blobs": blobs,
            "blob_bytes": blob_bytes}


def _verify(ca: str):
    """What verifies the mirror's certificate: an SSLContext with the CA bundle ``ca`` (the role's
    mirror_tls_ca) only, else the system trust store (True). Never off."""
    if not ca:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"mirror_tls_ca {ca} is not a readable PEM CA bundle ({exc}): give the CA that signed "
                         "the mirror's certificate.") from None


def _hub_client_factory(verify):
    """A factory for huggingface_hub's shared HTTP client (``set_client_factory``, huggingface_hub
    >= 1.0; olah needs >= 1.27): its default client with ``verify``."""
    from huggingface_hub.utils import _http as hub_http  # pylint: disable=import-outside-toplevel
    httpx = getattr(hub_http, "httpx2", None) or getattr(hub_http, "httpx")
    hook = getattr(hub_http, "hf_request_event_hook", None)
    return lambda: httpx.Client(event_hooks={"request": [hook]} if hook else None, follow_redirects=True,
                                timeout=None, verify=verify)


def _certificate_cause(exc: BaseException | None) -> str | None:
    """The reason of a failed certificate check in ``exc`` or the exceptions behind it; else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLCertVerificationError):
            return str(exc.verify_message or exc.reason or exc)
        nested = [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
        exc = exc.__cause__ or exc.__context__ or (nested[0] if nested else None)
    return None


def _failure(url: str, what: str, exc: BaseException, ca: str) -> SystemExit:
    cause = _certificate_cause(exc)
    if cause is None:
        return SystemExit(f"the mirror {url} could not {what}: {exc}")
    trust = f"mirror_tls_ca ({ca})" if ca else "the system trust store (mirror_tls_ca is not set)"
    return SystemExit(f"the mirror {url} could not {what}: its TLS certificate could not be verified against "
                      f"{trust}: {cause}. Set mirror_tls_ca to the CA bundle that signed mirror_tls_cert.")


def prewarm(url: str, repo: str, revision: str = "main", ca: str = "", repos_path: str = "") -> dict:
    """Download every file of ``repo`` at ``revision`` through the mirror and throw it away: the
    mirror keeps it in its cache. Sends no token (the mirror adds its own upstream). An https
    mirror is verified with the CA bundle ``ca`` when given (huggingface_hub's client and the
    downloads alike), else with the system trust store."""
    import requests  # pylint: disable=import-outside-toplevel
    from huggingface_hub import HfApi  # pylint: disable=import-outside-toplevel
    from huggingface_hub.utils import _http as hub_http  # pylint: disable=import-outside-toplevel
    verify = _verify(ca)
    session = requests.Session()
    if ca:
        hub_http.set_client_factory(_hub_client_factory(verify))
    try:
        api = HfApi(endpoint=url, token=False)
        commit = api.model_info(repo, revision=revision).sha
        files = [f for f in api.list_repo_tree(repo, revision=commit, recursive=True) if hasattr(f, "size")]
    except Exception as exc:  # pylint: disable=broad-exception-caught  # httpx, huggingface_hub, OS errors
        raise _failure(url, f"list {repo}@{revision}", exc, ca) from exc
    before = _tree_size(repos_path)[0] if repos_path else None
    fetched = 0
    for f in files:
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override a session's verify
            with session.get(f"{url}/{repo}/resolve/{commit}/{f.path}", stream=True, timeout=(10, 300),
                             verify=ca or True) as resp:
                if resp.status_code != 200:
                    raise SystemExit(f"the mirror {url} answered {resp.status_code} for {repo}/{f.path}@{commit}: "
                                     f"{resp.text[:300]}")
                got = sum(len(chunk) for chunk in resp.iter_content(1 << 20))
        except requests.RequestException as exc:
            raise _failure(url, f"send {repo}/{f.path}@{commit}", exc, ca) from exc
        if got != f.size:
            raise SystemExit(f"the mirror {url} sent {got} bytes of {repo}/{f.path}, expected {f.size}")
        fetched += got
    after = _tree_size(repos_path)[0] if repos_path else None
    # new in the cache: it grew by the files (a cached model only adds a few KB of refreshed API answers)
    grown = (after - before) if repos_path else None
    return {"repo": repo, "revision": revision, "commit": commit, "files": len(files), "bytes": fetched,
            "cache_bytes_before": before, "cache_bytes_after": after,
            "cached_now": grown is not None and grown > 0 and grown >= min(64 * 1024, fetched // 2)}


MEDIA_MANIFESTS = ("application/vnd.docker.distribution.manifest.v2+json, "
                   "application/vnd.oci.image.manifest.v1+json")


def _blob_path(root: str, digest: str) -> str:
    algo, hexdigest = digest.split(":", 1)
    return os.path.join(root, "docker", "registry", "v2", "blobs", algo, hexdigest[:2], hexdigest, "data")


def prewarm_registry(url: str, name: str, ca: str = "", registry_dir: str = "", settle: float = 30.0) -> dict:
    """Download the manifest and every blob (layers and config) of the Ollama model ``name``
    (``namespace/model[:tag]``) through the pull-through registry at ``url``, whole and thrown away:
    the registry stores each blob it fetched for a client that read it to the end. Ollama itself
    first asks a blob URL for the download URL (reading only the headers) and then fetches ranges,
    which makes a cold cache fetch a blob twice from its upstream, and concurrent cold pulls more
    often: pre-warmed, the fleet's pulls are served from the cache. With ``registry_dir``, waits
    until each blob is stored (the registry commits it after the last byte went out) and reports
    whether any was new."""
    import time  # pylint: disable=import-outside-toplevel
    import requests  # pylint: disable=import-outside-toplevel
    repo, _sep, tag = name.partition(":")
    tag = tag or "latest"
    if repo.count("/") != 1:
        raise SystemExit(f"mirror_prewarm_ollama_models: {name!r} is not namespace/model[:tag] "
                         "(for example library/llama3.2:1b)")
    base = url.rstrip("/")
    try:
        resp = requests.get(f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": MEDIA_MANIFESTS}, timeout=(10, 120),
                            verify=ca or True)
    except requests.RequestException as exc:
        raise _failure(base, f"send the manifest of {name}", exc, ca) from exc
    if resp.status_code != 200:
        raise SystemExit(f"the registry cache {base} answered {resp.status_code} for the manifest of {name}: {resp.text[:300]}")
    manifest = resp.json()
    blobs = [manifest["config"]] + list(manifest.get("layers", []))
    new = [b["digest"] for b in blobs if registry_dir and not os.path.exists(_blob_path(registry_dir, b["digest"]))]
    fetched = 0
    for blob in blobs:
        # With registry_dir, a new blob is only asked for: docker-registry 2.x stores a blob it does
        # not hold with a download of its own and answers the client with a second one, which ends
        # when the client goes away; the stored copy is awaited below. Else read to the end.
        whole = not registry_dir or blob["digest"] not in new
        try:
            with requests.get(f"{base}/v2/{repo}/blobs/{blob['digest']}", stream=True, timeout=(10, 300),
                              verify=ca or True) as got:
                if got.status_code != 200:
                    raise SystemExit(f"the registry cache {base} answered {got.status_code} for {name} blob {blob['digest']}")
                size = sum(len(chunk) for chunk in got.iter_content(1 << 20)) if whole else blob["size"]
        except requests.RequestException as exc:
            raise _failure(base, f"send {name} blob {blob['digest']}", exc, ca) from exc
        if size != blob["size"]:
            raise SystemExit(f"the registry cache {base} sent {size} bytes of {name} blob {blob['digest']}, "
                             f"expected {blob['size']}")
        fetched += size
    deadline = time.monotonic() + settle + sum(b["size"] for b in blobs) / 50e6  # at >= 50 MB/s
    while registry_dir and any(not os.path.exists(_blob_path(registry_dir, d)) for d in new):
        if time.monotonic() > deadline:
            raise SystemExit(f"the registry cache {base} sent {name} but did not store it in {registry_dir} "
                             f"within {settle:.0f}s: see its journal")
        time.sleep(0.2)
    return {"name": name, "blobs": len(blobs), "bytes": fetched, "new_blobs": len(new), "cached_now": bool(new)}


def main(argv: list) -> int:
    if len(argv) >= 3 and argv[0] == "serve":
        return serve(argv[1], argv[2])
    if len(argv) in (2, 3) and argv[0] == "cache-info":
        out = cache_info(argv[1])
        if len(argv) == 3 and argv[2]:
            out["registry"] = registry_info(argv[2])
        print(json.dumps(out))
        return 0
    if 3 <= len(argv) <= 6 and argv[0] == "prewarm":
        print(json.dumps(prewarm(argv[1], argv[2], *argv[3:6])))
        return 0
    if 3 <= len(argv) <= 5 and argv[0] == "prewarm-registry":
        print(json.dumps(prewarm_registry(argv[1], argv[2], *argv[3:5])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
