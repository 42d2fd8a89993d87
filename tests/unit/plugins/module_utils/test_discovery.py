# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.models import discovery
from ansible_collections.venom.models.plugins.module_utils.models.discovery import WEIGHT_SUFFIXES, discover
from ansible_collections.venom.models.plugins.module_utils.store.atomic import dir_size
from ansible_collections.venom.models.plugins.module_utils.store.validation import validate_model_name


def _model_dir(path, weights="model.safetensors", size=100):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / weights).write_bytes(b"x" * size)
    return path


def test_discovers_unknown_dirs_gguf_and_hf_cache(tmp_path):
    models_dir = tmp_path / "models"
    known = _model_dir(models_dir / "huggingface" / "org" / "known" / ("a" * 40))
    _model_dir(models_dir / "stray" / "bert")
    _model_dir(models_dir / ".venom" / "staging" / "partial")
    (models_dir / "gguf").mkdir()
    (models_dir / "gguf" / "Llama 3 Q4.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    extra = _model_dir(tmp_path / "app" / "models" / "mine", weights="pytorch_model.bin", size=7)
    cache = tmp_path / "hf"
    blob = cache / "models--BAAI--bge-small" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"w" * 50)
    snap = cache / "models--BAAI--bge-small" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(os.path.relpath(blob, snap))
    found = discover(str(models_dir), [{"local_path": str(known)}], extra_paths=[str(tmp_path / "app")],
                     environ={"HF_HUB_CACHE": str(cache)})
    by_kind = {}
    for item in found:
        by_kind.setdefault(item["kind"], []).append(item)
    dirs = sorted(i["path"] for i in by_kind["model_directory"])
    assert dirs == sorted([str(models_dir / "stray" / "bert"), str(extra)])
    assert by_kind["gguf_file"][0]["adopt_with"]["name"] == "Llama-3-Q4"
    hf = by_kind["huggingface_cache"][0]
    assert hf["repo_id"] == "BAAI/bge-small" and hf["revision"] == "c" * 40 and hf["size_bytes"] == 50
    assert hf["install_with"] == {"provider": "huggingface", "name": "BAAI/bge-small", "revision": "c" * 40}
    for item in found:
        assert validate_model_name(item["adopt_with"]["name"], "local")
        assert "staging" not in item["path"]


def test_nothing_to_find(tmp_path):
    (tmp_path / "models").mkdir()
    env = {"HF_HUB_CACHE": str(tmp_path / "none"), "HOME": str(tmp_path / "home")}
    assert discover(str(tmp_path / "models"), [], environ=env) == []
    assert discover(str(tmp_path / "missing"), [], environ=env) == []


def test_dir_size_counts_links_only_when_asked(tmp_path):
    (tmp_path / "blob").write_bytes(b"b" * 50)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_bytes(b"f" * 7)
    (tree / "link").symlink_to(tmp_path / "blob")
    (tree / "dangling").symlink_to(tmp_path / "gone")
    assert dir_size(str(tree)) == 7  # the store: a link is not a file of the model
    assert dir_size(str(tree), follow_symlinks=True) == 57  # a Hub cache snapshot: links to blobs


def test_the_hub_caches_looked_in_follow_the_environment_each_once(tmp_path):
    from ansible_collections.venom.models.plugins.module_utils.models.discovery import hf_cache_dirs  # pylint: disable=import-outside-toplevel
    home = str(tmp_path / "home")
    assert hf_cache_dirs({"HOME": home}) == [os.path.join(home, ".cache", "huggingface", "hub")]
    env = {"HF_HUB_CACHE": "/srv/cache", "HF_HOME": "/srv/hf", "HOME": home}
    assert hf_cache_dirs(env) == ["/srv/cache", "/srv/hf/hub", os.path.join(home, ".cache", "huggingface", "hub")]
    same = {"HF_HUB_CACHE": os.path.join(home, ".cache", "huggingface", "hub"), "HF_HOME": os.path.join(home, "x", ".."),
            "HOME": home}
    assert hf_cache_dirs(same) == [same["HF_HUB_CACHE"], os.path.join(same["HF_HOME"], "hub")], "one directory once"
    os.makedirs(os.path.join(home, "real"))
    os.symlink(os.path.join(home, "real"), os.path.join(home, "alias"))
    linked = {"HF_HUB_CACHE": os.path.join(home, "real"), "HF_HOME": os.path.join(home, "alias", ".."), "HOME": home}
    assert len(hf_cache_dirs(linked)) == 3
    assert hf_cache_dirs({"HF_HUB_CACHE": os.path.join(home, "alias"), "HOME": home, "HF_HOME": ""})[0] == \
        os.path.join(home, "alias")
    os.environ.setdefault("HOME", home)
    assert hf_cache_dirs()[-1] == os.path.join(os.environ["HOME"], ".cache", "huggingface", "hub")


def test_what_is_found_says_how_to_adopt_it(tmp_path):
    models_dir = tmp_path / "models"
    found_dir = _model_dir(models_dir / "team" / "bert", size=30)
    (models_dir / "team" / "bert" / "extra.gguf").write_bytes(b"g" * 9)   # inside a model directory: not apart
    (models_dir / "loose").mkdir()
    (models_dir / "loose" / "a.gguf").write_bytes(b"a" * 11)
    (models_dir / "loose" / "b.gguf").write_bytes(b"b" * 12)
    (models_dir / "loose" / "notes.txt").write_text("x")
    _model_dir(models_dir / ".hidden" / "m")
    cache = tmp_path / "hf"
    for commit in ("1" * 40, "2" * 40):
        snap = cache / "models--org--sub--m" / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").write_text("{}")
    (cache / "datasets--x--y" / "snapshots" / "3").mkdir(parents=True)
    (cache / "models--org--nosnap").mkdir()
    (cache / "version.txt").write_text("1")
    env = {"HF_HUB_CACHE": str(cache), "HOME": str(tmp_path / "home")}
    known = [{"local_path": str(cache / "models--org--sub--m" / "snapshots" / ("1" * 40))}, {"local_path": None}]
    found = discover(str(models_dir), known, environ=env)
    assert found == [
        {"path": str(models_dir / "loose" / "a.gguf"), "kind": "gguf_file", "size_bytes": 11,
         "adopt_with": {"provider": "local", "name": "a", "source": str(models_dir / "loose" / "a.gguf")}},
        {"path": str(models_dir / "loose" / "b.gguf"), "kind": "gguf_file", "size_bytes": 12,
         "adopt_with": {"provider": "local", "name": "b", "source": str(models_dir / "loose" / "b.gguf")}},
        {"path": str(found_dir), "kind": "model_directory", "size_bytes": 2 + 30 + 9,
         "adopt_with": {"provider": "local", "name": "team/bert", "source": str(found_dir)}},
        {"path": str(cache / "models--org--sub--m" / "snapshots" / ("2" * 40)), "kind": "huggingface_cache",
         "repo_id": "org/sub/m", "revision": "2" * 40, "size_bytes": 2,
         "adopt_with": {"provider": "local", "name": "org/sub/m",
                        "source": str(cache / "models--org--sub--m" / "snapshots" / ("2" * 40))},
         "install_with": {"provider": "huggingface", "name": "org/sub/m", "revision": "2" * 40}}]


def test_a_gguf_file_the_manifest_knows_is_not_found_again(tmp_path):
    models_dir = tmp_path / "models"
    (models_dir / "g").mkdir(parents=True)
    for name in ("a.gguf", "b.gguf"):
        (models_dir / "g" / name).write_bytes(b"x")
    env = {"HF_HUB_CACHE": str(tmp_path / "none"), "HOME": str(tmp_path / "home")}
    found = discover(str(models_dir), [{"local_path": str(models_dir / "g" / "a.gguf")}], environ=env)
    assert [f["path"] for f in found] == [str(models_dir / "g" / "b.gguf")]


def test_the_search_stops_at_its_depth_and_its_count(tmp_path, monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.models import discovery  # pylint: disable=import-outside-toplevel
    base = tmp_path / "models"
    deep = base
    for level in range(7):
        deep = deep / f"d{level}"
        (deep).mkdir(parents=True)
        (deep / f"at{level}.gguf").write_bytes(b"x")
    env = {"HF_HUB_CACHE": str(tmp_path / "none"), "HOME": str(tmp_path / "home")}
    found = [f["adopt_with"]["name"] for f in discover(str(base) + "/", [], environ=env)]
    assert found == [f"at{level}" for level in range(discovery.MAX_DEPTH)], "five levels below models_dir"
    monkeypatch.setattr(discovery, "MAX_RESULTS", 3)
    assert len(discover(str(base), [], environ=env)) == 3
    cache = tmp_path / "hf"
    for commit in "abcd":
        (cache / "models--o--m" / "snapshots" / commit).mkdir(parents=True)
    found = discover(str(tmp_path / "empty"), [], environ={"HF_HUB_CACHE": str(cache), "HOME": str(tmp_path / "h")})
    assert [f["revision"] for f in found] == ["a", "b", "c"]
    monkeypatch.setattr(discovery, "MAX_RESULTS", 1)
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("x.gguf", "y.gguf"):
        (flat / name).write_bytes(b"x")
    assert [f["adopt_with"]["name"] for f in discover(str(flat), [], environ=env)] == ["x"]


def test_a_suggested_name_is_a_valid_local_name():
    from ansible_collections.venom.models.plugins.module_utils.models.discovery import _suggest_name  # pylint: disable=import-outside-toplevel
    assert _suggest_name("Llama 3 (8B) Q4_K_M") == "Llama-3--8B--Q4_K_M"
    assert _suggest_name("a/b/c/d/e") == "c/d/e"
    assert _suggest_name("-.x/..y/-z.") == "x/y/z"
    assert _suggest_name("ünïcode") == "n-code"
    assert _suggest_name("...") == "discovered-model" and _suggest_name("") == "discovered-model"


def _env(tmp_path):
    return {"HF_HUB_CACHE": str(tmp_path / "no-cache"), "HOME": str(tmp_path / "home")}


def test_a_config_with_weights_of_any_known_format_is_a_model_directory(tmp_path):
    assert set(WEIGHT_SUFFIXES) == {".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx"}
    base = tmp_path / "models"
    for suffix in WEIGHT_SUFFIXES:
        _model_dir(base / suffix.strip("."), weights="weights" + suffix, size=3)
    found = discover(str(base), [], environ=_env(tmp_path))
    assert sorted((f["kind"], f["adopt_with"]["name"]) for f in found) == sorted(
        ("model_directory", s.strip(".")) for s in WEIGHT_SUFFIXES)


def test_a_config_alone_or_weights_alone_are_no_model_directory(tmp_path):
    base = tmp_path / "models"
    (base / "config-only").mkdir(parents=True)
    (base / "config-only" / "config.json").write_text("{}")
    (base / "config-only" / "README.md").write_text("x")
    (base / "weights-only").mkdir()
    (base / "weights-only" / "model.safetensors").write_bytes(b"x")
    (base / "weights-only" / "params.json").write_text("{}")
    assert discover(str(base), [], environ=_env(tmp_path)) == []


def test_what_is_inside_a_model_directory_is_not_found_again(tmp_path):
    base = tmp_path / "models"
    outer = _model_dir(base / "outer", weights="model.gguf", size=4)
    _model_dir(outer / "nested" / "inner")
    (outer / "quantized").mkdir()
    (outer / "quantized" / "q4.gguf").write_bytes(b"q")
    found = discover(str(base), [], environ=_env(tmp_path))
    assert [(f["kind"], f["path"]) for f in found] == [("model_directory", str(outer))]
    assert found[0]["size_bytes"] == 2 + 4 + 2 + 100 + 1, "its size counts everything under it"


def test_a_known_model_directory_and_everything_under_it_are_left_out(tmp_path):
    base = tmp_path / "models"
    known = base / "huggingface" / "org" / "m"
    (known / "extra").mkdir(parents=True)
    (known / "extra" / "side.gguf").write_bytes(b"x")
    (base / "other.gguf").write_bytes(b"y")
    found = discover(str(base), [{"local_path": str(known)}], environ=_env(tmp_path))
    assert [f["path"] for f in found] == [str(base / "other.gguf")]


def test_the_library_s_own_state_is_not_searched_even_when_named(tmp_path):
    base = tmp_path / "models"
    _model_dir(base / ".venom" / "staging" / "half")
    (base / ".venom" / "x.gguf").write_bytes(b"x")
    assert discover(str(base), [], extra_paths=[str(base / ".venom")], environ=_env(tmp_path)) == []


def test_at_most_500_finds_are_listed(tmp_path):
    base = tmp_path / "many"
    base.mkdir()
    for n in range(503):
        (base / f"m{n:03d}.gguf").write_bytes(b"")
    found = discover(str(base), [], environ=_env(tmp_path))
    assert len(found) == 500 and found[-1]["adopt_with"]["name"] == "m499"
    cache = tmp_path / "hf"
    (cache / "models--o--m" / "snapshots" / "c1").mkdir(parents=True)
    assert len(discover(str(base), [], environ={"HF_HUB_CACHE": str(cache), "HOME": str(tmp_path / "h")})) == 500, \
        "the caches add nothing once the limit is reached"


def test_the_hub_cache_lists_each_snapshot_of_each_model_repository(tmp_path):
    cache = tmp_path / "hf"
    for repo, commits in (("models--b--two", ("c2", "c1")), ("models--a--one", ("c3",)),
                          ("spaces--x--y", ("c4",)), ("models--", ("c5",))):
        for commit in commits:
            (cache / repo / "snapshots" / commit).mkdir(parents=True)
    (cache / "models--c--empty" / "snapshots").mkdir(parents=True)
    found = discover(str(tmp_path / "none"), [], environ={"HF_HUB_CACHE": str(cache), "HOME": str(tmp_path / "h")})
    assert [(f["repo_id"], f["revision"]) for f in found] == [("", "c5"), ("a/one", "c3"), ("b/two", "c1"),
                                                              ("b/two", "c2")]
    assert all(f["kind"] == "huggingface_cache" and f["size_bytes"] == 0 for f in found)


def test_the_depth_is_counted_from_the_directory_given_with_or_without_a_trailing_slash(tmp_path):
    base = tmp_path / "models"
    deep = base
    for level in range(7):
        deep = deep / f"d{level}"
        deep.mkdir(parents=True)
        (deep / f"at{level}.gguf").write_bytes(b"x")
    for given in (str(base), str(base) + "/"):
        found = [f["adopt_with"]["name"] for f in discover(given, [], environ=_env(tmp_path))]
        assert found == [f"at{level}" for level in range(discovery.MAX_DEPTH)]


def test_once_the_limit_is_reached_no_deeper_model_directory_is_added(tmp_path, monkeypatch):
    monkeypatch.setattr(discovery, "MAX_RESULTS", 1)
    base = tmp_path / "models"
    _model_dir(base / "sub" / "m")
    (base / "a.gguf").write_bytes(b"x")
    assert [f["path"] for f in discover(str(base), [], environ=_env(tmp_path))] == [str(base / "a.gguf")]


def test_a_model_directory_s_size_counts_the_files_its_links_point_to(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "weights").write_bytes(b"w" * 64)
    found_dir = tmp_path / "models" / "linked"
    found_dir.mkdir(parents=True)
    (found_dir / "config.json").write_text("{}")
    (found_dir / "model.safetensors").symlink_to(store / "weights")
    found = discover(str(tmp_path / "models"), [], environ=_env(tmp_path))
    assert [(f["path"], f["size_bytes"]) for f in found] == [(str(found_dir), 2 + 64)]


def test_a_suggested_name_keeps_its_letters_and_drops_empty_parts():
    assert discovery._suggest_name("XLM-R") == "XLM-R" and discovery._suggest_name("X/XX") == "X/XX"
    assert discovery._suggest_name("a/../b") == "a/b" and discovery._suggest_name("a/-./b") == "a/b"


def test_without_home_in_the_environment_the_user_s_own_cache_is_looked_in():
    assert discovery.hf_cache_dirs({}) == [os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")]
    assert discovery.hf_cache_dirs({"HOME": ""}) == discovery.hf_cache_dirs({})
