# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model with provider local (adopting a directory on the host), through ansible-playbook."""
from __future__ import annotations

import glob
import hashlib
import json
import os

from tests.lib.ansible_run import run_task
from tests.lib.idempotence import check_real_cycle
from tests.lib.olah_env import tiny_gemma_files
from tests.lib.olah_mirror import write_files

MODULE = "venom.models.venom_model"


def _source(tmp_path, files=None):
    repo = tmp_path / "incoming" / "models--org--gemma"
    src = repo / "snapshots" / ("c" * 40)
    write_files(str(src), files or tiny_gemma_files())
    # what a copied snapshot_download dir or Hub cache snapshot looks like: metadata and symlinks
    # into the repository's blobs/ (the only place outside the source its links may lead)
    (src / ".cache" / "huggingface").mkdir(parents=True)
    (src / ".cache" / "huggingface" / "x.metadata").write_text("ignored")
    blobs = repo / "blobs"
    blobs.mkdir()
    (blobs / "abc").write_bytes(b"linked content\n")
    os.symlink(str(blobs / "abc"), str(src / "special_tokens_map.json"))
    return src


def _run(args, check=False, diff=False):
    res = run_task(MODULE, args, check=check, diff=diff)
    return res.task()


def _manifest_entry(models, name):
    path = models / "manifest.json"
    if not path.exists():
        return None
    return next((m for m in json.loads(path.read_text())["models"] if m["name"] == name), None)


def _cycle(args, expect):
    return check_real_cycle(MODULE, args, expect)


def test_adopt_copy_verify_latest_absent(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    args = {"name": "gemma-local", "provider": "local", "source": str(src), "models_dir": str(models),
            "adopt_mode": "copy", "runtime": "vllm"}
    out = _run(args, check=True)
    assert out["changed"] and out["action"] == "install" and out["plan"]["fetch_files"] == 6
    out = _cycle(args, [True, True, False, False])
    entry = _manifest_entry(models, "gemma-local")
    paths = sorted(f["path"] for f in entry["files"])
    assert ".cache/huggingface/x.metadata" not in paths and "special_tokens_map.json" in paths
    assert entry["capabilities"]["supports_system_role"] is False
    installed = os.path.join(entry["local_path"], "model.safetensors")
    assert os.stat(installed).st_ino != os.stat(src / "model.safetensors").st_ino, "copied"
    with open(os.path.join(entry["local_path"], "special_tokens_map.json"), "rb") as fh:
        assert fh.read() == b"linked content\n"
    assert not os.path.islink(os.path.join(entry["local_path"], "special_tokens_map.json"))

    # corrupted copy: verified repairs it from the source
    with open(installed, "r+b") as fh:
        fh.seek(64)
        fh.write(b"\xff\xff")
    out = _run(dict(args, state="verified"), check=True)
    assert out["action"] == "repair" and out["plan"]["problems"][0]["path"] == "model.safetensors"
    _cycle(dict(args, state="verified"), [True, True, False, False])
    with open(installed, "rb") as fh, open(src / "model.safetensors", "rb") as orig:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(orig.read()).digest()

    # the source changes: present keeps the adopted version, latest adopts the new one
    (src / "config.json").write_text('{"model_type": "gemma", "max_position_embeddings": 4096}\n')
    assert _run(args)["changed"] is False
    old_path = entry["local_path"]
    out = _run(dict(args, state="latest"), check=True)
    assert out["changed"] and out["action"] == "update"
    _cycle(dict(args, state="latest"), [True, True, False, False])
    entry = _manifest_entry(models, "gemma-local")
    assert entry["local_path"] != old_path and not os.path.exists(old_path)
    assert entry["capabilities"]["max_context_length"] == 4096

    # a repair that the source can no longer provide fails with the way out
    (src / "model.safetensors").write_bytes(b"different")
    os.unlink(os.path.join(entry["local_path"], "model.safetensors"))
    out = _run(args)
    assert out["failed"] and "no longer has the recorded content" in out["msg"] and "state: latest" in out["msg"]

    out = _cycle(dict(args, state="absent"), [True, True, False, False])
    assert not (models / "local").exists()
    assert not [p for p in glob.glob(str(models / ".venom" / "staging" / "**"), recursive=True) if os.path.isfile(p)]
    assert src.exists(), "the source is never touched"


def test_adopt_hardlink_and_errors(tmp_path):
    src = _source(tmp_path)
    models = tmp_path / "models"
    args = {"name": "team/gemma:it", "provider": "local", "source": str(src), "models_dir": str(models)}
    out = _run(args)
    assert out["changed"] and out["plan"]["fetch_bytes"] == 0, "hard links take no space"
    installed = os.path.join(out["local_path"], "model.safetensors")
    assert os.stat(installed).st_ino == os.stat(src / "model.safetensors").st_ino, "hard-linked"
    assert oct(os.stat(src / "model.safetensors").st_mode & 0o777) == oct(0o644)
    assert _run(args)["changed"] is False
    out = _run({"name": "other", "provider": "local", "models_dir": str(models)})
    assert out["failed"] and "needs source" in out["msg"]
    out = _run({"name": "other", "provider": "local", "models_dir": str(models), "source": str(tmp_path / "nope")})
    assert out["failed"] and "does not exist" in out["msg"]
    out = _run({"name": "../evil", "provider": "local", "models_dir": str(models), "source": str(src)})
    assert out["failed"] and "'..'" in out["msg"]
    out = _run({"name": "self", "provider": "local", "models_dir": str(models), "source": str(models / "local")})
    assert out["failed"] and "inside the directories venom.models manages" in out["msg"]


def test_source_links_out_of_the_source_are_refused_and_copies_keep_the_mode(tmp_path):
    """Issue 13 finding 3: shadow -> /etc/shadow in a source never becomes a readable copy or a hard link."""
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash\n")
    os.chmod(secret, 0o600)
    src = tmp_path / "plain"
    write_files(str(src), tiny_gemma_files())
    os.symlink(str(secret), str(src / "shadow"))
    os.chmod(src / "config.json", 0o600)
    models = tmp_path / "models"
    for mode in ("copy", "auto"):
        args = {"name": "leak", "provider": "local", "source": str(src), "models_dir": str(models), "adopt_mode": mode}
        out = _run(args)
        assert out.get("failed") and "shadow" in out["msg"] and str(secret) in out["msg"], out
        assert not glob.glob(str(models / "local" / "leak" / "*" / "shadow"))
    args["ignore_patterns"] = ["shadow"]
    args["adopt_mode"] = "copy"
    out = _run(args)
    assert out["changed"] and not out.get("failed"), out
    entry = _manifest_entry(models, "leak")
    installed = os.path.join(entry["local_path"], "config.json")
    assert os.stat(installed).st_mode & 0o777 == 0o600, "a copy is never more readable than its source"
    assert os.stat(os.path.join(entry["local_path"], "model.safetensors")).st_mode & 0o777 == 0o644


def test_a_local_model_never_lands_inside_another(tmp_path):
    """Issue 13 finding 6: model 'm/<id12>' would land inside m's version directory local/m/<id12>."""
    src = _source(tmp_path)
    models = tmp_path / "models"
    out = _run({"name": "m", "provider": "local", "source": str(src), "models_dir": str(models)})
    assert out["changed"], out
    version = os.path.basename(_manifest_entry(models, "m")["local_path"])
    out = _run({"name": f"m/{version}", "provider": "local", "source": str(src), "models_dir": str(models)})
    assert out.get("failed") and "inside" in out["msg"], out
    assert _manifest_entry(models, f"m/{version}") is None
    assert not os.path.exists(os.path.join(_manifest_entry(models, "m")["local_path"], version))
    out = _run({"name": "m", "provider": "local", "models_dir": str(models), "state": "absent"})
    assert out["changed"] and not os.path.exists(models / "local" / "m")


def test_absent_works_on_a_full_disk(tmp_path):
    """Issue 13 finding 4: removal is the operator's first move on a full disk; it needs no free space."""
    import subprocess  # pylint: disable=import-outside-toplevel
    disk = tmp_path / "disk"
    disk.mkdir()
    # a real full filesystem: a small tmpfs (the tests run as root, as the modules do on a fleet)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(disk)], check=True)
    try:
        models = disk / "models"
        src = _source(tmp_path)
        args = {"name": "m", "provider": "local", "source": str(src), "models_dir": str(models),
                "adopt_mode": "copy", "reserve_gb": 0}
        assert _run(args)["changed"]
        with open(disk / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        for i in range(3):  # the last blocks may take a few small writes more
            try:
                with open(disk / f"filler-small-{i}", "wb") as fh:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        assert os.statvfs(disk).f_bavail == 0, "the disk is full"
        out = _run(dict(args, state="absent"))
        assert not out.get("failed") and out["changed"], out
        assert not os.path.exists(models / "local" / "m")
        assert os.listdir(models / ".venom" / "locks") == [], "no lock file left behind"
        assert _manifest_entry(models, "m") is None
    finally:
        subprocess.run(["umount", str(disk)], check=True)
