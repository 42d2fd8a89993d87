# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Auto-discovery: model files on a host that the manifest does not know.

Looks in ``models_dir`` (outside the directories of installed models and the library's own
state), in Hugging Face caches (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``)
and in extra paths the caller names (e.g. an application's ``./models``). For each find it says
what ``venom_model`` needs to adopt it (``provider: local`` with ``source``) and, for a Hub cache
snapshot, the repository and commit it came from. Reads only; bounded in depth and count.
"""
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.store.atomic import dir_size
from ansible_collections.venom.models.plugins.module_utils.store.paths import STATE_DIR_NAME

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx")
MAX_DEPTH = 5
MAX_RESULTS = 500


def _looks_like_model_dir(names: list) -> bool:
    return "config.json" in names and any(n.endswith(WEIGHT_SUFFIXES) for n in names)


def hf_cache_dirs(environ=None) -> list:
    env = os.environ if environ is None else environ
    out = []
    if env.get("HF_HUB_CACHE"):
        out.append(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        out.append(os.path.join(env["HF_HOME"], "hub"))
    out.append(os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache", "huggingface", "hub"))
    seen, unique = set(), []
    for d in out:
        real = os.path.realpath(d)
        if real not in seen:
            seen.add(real)
            unique.append(d)
    return unique


def _scan_hf_cache(cache: str, known_paths: set, out: list) -> None:
    try:
        repos = sorted(os.listdir(cache))
    except OSError:
        return
    for repo in repos:
        if not repo.startswith("models--"):
            continue
        parts = repo[len("models--"):].split("--")
        name = "/".join(parts)
        snapshots = os.path.join(cache, repo, "snapshots")
        try:
            commits = sorted(os.listdir(snapshots))
        except OSError:
            continue
        for commit in commits:
            path = os.path.join(snapshots, commit)
            if os.path.realpath(path) in known_paths or len(out) >= MAX_RESULTS:
                continue
            out.append({
                "path": path, "kind": "huggingface_cache", "repo_id": name, "revision": commit,
                "size_bytes": dir_size(path, follow_symlinks=True),  # HF cache snapshots link to blobs
                "adopt_with": {"provider": "local", "name": name, "source": path},
                "install_with": {"provider": "huggingface", "name": name, "revision": commit},
            })


def _scan_tree(base: str, known_paths: set, out: list, skip: set) -> None:
    base_depth = base.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(base):
        real = os.path.realpath(root)
        if real in known_paths or real in skip or len(out) >= MAX_RESULTS:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != STATE_DIR_NAME)
        if root.count(os.sep) - base_depth >= MAX_DEPTH:
            dirs[:] = []
        if _looks_like_model_dir(files):
            name = os.path.relpath(root, base).replace(os.sep, "/")
            out.append({"path": root, "kind": "model_directory", "size_bytes": dir_size(root, follow_symlinks=True),
                        "adopt_with": {"provider": "local", "name": _suggest_name(name), "source": root}})
            dirs[:] = []
            continue
        for fname in sorted(files):
            if fname.endswith(".gguf") and len(out) < MAX_RESULTS:
                path = os.path.join(root, fname)
                if os.path.realpath(path) in known_paths:
                    continue
                out.append({"path": path, "kind": "gguf_file", "size_bytes": os.path.getsize(path),
                            "adopt_with": {"provider": "local", "name": _suggest_name(fname[:-5]), "source": path}})


def _suggest_name(text: str) -> str:
    cleaned = "".join(c if (c.isascii() and (c.isalnum() or c in "._-/")) else "-" for c in text).strip("-./")
    parts = [p.lstrip("-.") for p in cleaned.split("/") if p.lstrip("-.")][-3:]
    return "/".join(parts) or "discovered-model"


def discover(models_dir: str, models: list, extra_paths: list | None = None, environ=None) -> list:
    """Model directories, GGUF files and Hub cache snapshots that no manifest entry covers."""
    known = {os.path.realpath(m["local_path"]) for m in models if m.get("local_path")}
    state = os.path.realpath(os.path.join(models_dir, STATE_DIR_NAME))
    out: list = []
    for base in [models_dir] + list(extra_paths or []):
        if os.path.isdir(base):
            _scan_tree(base, known, out, skip={state})
    for cache in hf_cache_dirs(environ):
        _scan_hf_cache(cache, known, out)
    return out
