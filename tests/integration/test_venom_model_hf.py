# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom_model with provider huggingface, through ansible-playbook, against a real Hub mirror (olah)."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.lib.ansible_run import ansible_env, run_playbook, run_task
from tests.lib.idempotence import check_real_cycle
from tests.lib.olah_env import moving_files, tiny_gemma_files

MODULE = "venom.models.venom_model"
SECRET = "hf_" + "Zq9" * 12 + "SECRETTOKEN"


def _args(olah, tmp_path, name, **extra):
    args = {"name": name, "endpoint": olah.endpoint, "models_dir": str(tmp_path / "models")}
    args.update(extra)
    return args


def _run(args, check=False, diff=False, **kw):
    res = run_task(MODULE, args, check=check, diff=diff, **kw)
    return res, res.task()


def _manifest(tmp_path) -> dict:
    path = tmp_path / "models" / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"models": []}


def _entry(tmp_path, name):
    return next((m for m in _manifest(tmp_path)["models"] if m["name"] == name), None)


def _sha256(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _requests_for(olah, repo_name: str, since: int = 0) -> list:
    time.sleep(0.3)  # olah logs asynchronously
    return [line for line in olah.log_tail(10 ** 8)[since:].splitlines() if f"/{repo_name}/" in line]


def _log_len(olah) -> int:
    return len(olah.log_tail(10 ** 8))


def _cycle(args, expect):
    return check_real_cycle(MODULE, args, expect)


def test_install_check_real_check_real_gemma_system_role(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-gemma"]
    args = _args(olah, tmp_path, repo.name, runtime="vllm")
    res, out = _run(args, check=True, diff=True)
    assert out["changed"] and out["action"] == "install"
    assert out["plan"]["fetch_bytes"] == sum(len(d) for d in repo.files.values())
    assert out["plan"]["quota"]["fits"] is True and out["plan"]["quota"]["planned_bytes"] == out["plan"]["fetch_bytes"]
    assert out["diff"]["before"] == {} and out["diff"]["after"]["revision"] == repo.head
    assert not (tmp_path / "models").exists(), "check mode creates nothing"
    out = _cycle(args, [True, True, False, False])
    entry = _entry(tmp_path, repo.name)
    assert entry["status"] == "installed" and entry["revision"] == repo.head and entry["requested_revision"] == "main"
    assert entry["runtime"] == "vllm"
    assert entry["size_bytes"] == sum(len(d) for d in repo.files.values())
    expected = repo.expected()
    assert {f["path"]: f["sha256"] for f in entry["files"]} == {p: e["sha256"] for p, e in expected.items()}
    for rel in repo.files:
        assert _sha256(os.path.join(entry["local_path"], rel)) == expected[rel]["sha256"]
    assert entry["local_path"].endswith(f"/huggingface/venom-test/tiny-gemma/{repo.head}")
    caps = entry["capabilities"]
    assert caps["supports_system_role"] is False, caps
    assert caps["max_context_length"] == 8192
    assert out["operation"] is None and out["changed"] is False
    ops = os.listdir(tmp_path / "models" / ".venom" / "operations")
    assert len(ops) == 1, "only the one real install is an operation"
    op = json.loads((tmp_path / "models" / ".venom" / "operations" / ops[0]).read_text())
    assert op["status"] == "completed" and op["type"] == "install" and op["bytes_done"] == entry["size_bytes"]


def test_second_present_makes_no_request(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-quantized"]
    args = _args(olah, tmp_path, repo.name, revision="main")
    _res, out = _run(args)
    assert out["changed"] and out["capabilities"]["quantization"] and "awq" in out["capabilities"]["quantization"].lower()
    assert out["operation"]["status"] == "completed" and out["revision"] == repo.head
    mark = _log_len(olah)
    for revision in ("main", repo.head, None):  # the branch it came from, its commit, or nothing pinned
        for check in (True, False):
            _res, out = _run(dict(args, revision=revision), check=check)
            assert out["changed"] is False and out["action"] == "none", (revision, out)
    assert _requests_for(olah, repo.name, mark) == [], "an installed model costs no request"
    # so it also works on a host set to offline mode (vLLM hosts often set HF_HUB_OFFLINE=1)
    _res, out = _run(args, environment={"HF_HUB_OFFLINE": "1"})
    assert out["changed"] is False and not out["failed"]
    _res, out = _run(dict(args, name="venom-test/tiny-sharded"), environment={"HF_HUB_OFFLINE": "1"})
    assert out["failed"] and "HF_HUB_OFFLINE" in out["msg"]
    # another branch that resolves to the same commit: one request, and only the manifest changes
    olah.tag(repo.name, "v1")
    _res, out = _run(dict(args, revision="v1"), check=True)
    assert out["changed"] and out["action"] == "metadata"
    _res, out = _run(dict(args, revision="v1"))
    assert out["changed"] and out["bytes_downloaded"] == 0 and _entry(tmp_path, repo.name)["requested_revision"] == "v1"
    assert not [line for line in _requests_for(olah, repo.name, mark) if "/resolve/" in line]


def test_multi_file_weights_and_file_selection(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-sharded"]
    args = _args(olah, tmp_path, repo.name, allow_patterns=["*.json"])
    _cycle(args, [True, True, False, False])
    entry = _entry(tmp_path, repo.name)
    assert sorted(f["path"] for f in entry["files"]) == ["config.json", "model.safetensors.index.json",
                                                         "original/params.json", "tokenizer_config.json"]
    # widen the selection: same commit, the weights are added in place ("sync")
    wide = dict(args, allow_patterns=None, ignore_patterns=[".gitattributes"])
    _res, out = _run(wide, check=True)
    assert out["changed"] and out["action"] == "sync" and out["plan"]["fetch_files"] == 3
    out = _cycle(wide, [True, True, False, False])
    entry = _entry(tmp_path, repo.name)
    assert len(entry["files"]) == len(repo.files) - 1
    index = json.loads(open(os.path.join(entry["local_path"], "model.safetensors.index.json"), encoding="utf-8").read())
    for shard in set(index["weight_map"].values()):
        assert _sha256(os.path.join(entry["local_path"], shard)) == repo.expected()[shard]["sha256"]
    assert not os.path.exists(os.path.join(entry["local_path"], ".gitattributes"))


def test_pinned_commit_and_moving_branch(olah, tmp_path):
    name = f"venom-test/moving-{uuid.uuid4().hex[:8]}"
    repo = olah.create_repo(name, moving_files(1))
    first = repo.head
    branch_args = _args(olah, tmp_path, name)
    _cycle(branch_args, [True, True, False, False])
    old_path = _entry(tmp_path, name)["local_path"]
    second = olah.advance(name, moving_files(2), "generation 2")
    # present does not follow the branch: the installed model is what was asked
    _res, out = _run(branch_args)
    assert out["changed"] is False and out["revision"] == first
    # latest does: check mode previews, then the switch, then nothing
    latest = dict(branch_args, state="latest")
    _res, out = _run(latest, check=True, diff=True)
    assert out["changed"] and out["action"] == "update" and out["plan"]["revision"] == second
    assert out["diff"]["before"]["revision"] == first and out["diff"]["after"]["revision"] == second
    assert _entry(tmp_path, name)["revision"] == first, "check mode changed nothing"
    _res, out = _run(latest)
    assert out["changed"] and out["revision"] == second and out["operation"]["type"] == "update"
    entry = _entry(tmp_path, name)
    assert entry["revision"] == second and entry["capabilities"]["max_context_length"] == 2048
    assert not os.path.exists(old_path), "the old revision's files are removed after the switch"
    assert os.listdir(os.path.dirname(entry["local_path"])) == [second]
    for check in (True, False):
        _res, out = _run(latest, check=check)
        assert out["changed"] is False
    # pin the first commit again: that is an update back, predicted by check mode
    pinned = dict(branch_args, revision=first)
    out = _cycle(pinned, [True, True, False, False])
    assert _entry(tmp_path, name)["revision"] == first and _entry(tmp_path, name)["requested_revision"] == first


def test_runtime_active_keeps_old_version_on_latest_and_refuses_removal(olah, tmp_path):
    name = f"venom-test/active-{uuid.uuid4().hex[:8]}"
    olah.create_repo(name, moving_files(1))
    args = _args(olah, tmp_path, name)
    _run(args)
    from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, find_entry
    with Manifest(str(tmp_path / "models")).transaction() as doc:
        entry = find_entry(doc, name, "huggingface")
        entry["active"], entry["active_runtime"] = True, "vllm"
    old_path = entry["local_path"]
    olah.advance(name, moving_files(2))
    res, out = _run(dict(args, state="latest"))
    assert out["changed"] and os.path.isdir(old_path), "the active runtime's files stay"
    assert any("stays at" in w for w in out.get("warnings", [])) or "stays at" in res.stdout
    after = _entry(tmp_path, name)
    assert after["active"] is True and after["retained_versions"][0]["local_path"] == old_path
    _res, out = _run(dict(args, state="absent"))
    assert out["failed"] and "active model of the vllm runtime" in out["msg"] and "force" in out["msg"]
    assert _entry(tmp_path, name) is not None
    _res, out = _run(dict(args, state="absent", force=True))
    assert out["changed"] and not os.path.exists(old_path) and not os.path.exists(after["local_path"])


def test_quota_refusal_downloads_nothing(olah, tmp_path):
    repo = olah.repos["venom-test/big"]
    mark = _log_len(olah)
    for check in (True, False):
        _res, out = _run(_args(olah, tmp_path, repo.name, quota_gb=0.01), check=check)
        assert out["failed"] and out["error"] == "QuotaError"
        assert "Nothing was downloaded" in out["msg"] and "quota_gb" in out["msg"], out["msg"]
        assert out["details"]["fits_quota"] is False
    _res, out = _run(_args(olah, tmp_path, repo.name, reserve_gb=10 ** 6))
    assert out["failed"] and out["error"] == "QuotaError" and "reserve" in out["msg"]
    assert not [line for line in _requests_for(olah, repo.name, mark) if "/resolve/" in line]
    models = tmp_path / "models"
    assert not glob.glob(str(models / "huggingface" / "**"), recursive=True)[1:]
    assert not os.listdir(models / ".venom" / "staging")
    assert _entry(tmp_path, repo.name) is None


def test_concurrent_installs_of_one_model(olah, tmp_path):
    """Two playbooks install the same model at once: one downloads, the other waits and finds it installed."""
    repo = olah.repos["venom-test/big"]
    args = _args(olah, tmp_path, repo.name)
    mark = _log_len(olah)
    procs = [_start_install(args, str(tmp_path / f"p{i}"), results=True) for i in range(2)]
    outs = []
    for proc, results in procs:
        assert proc.wait(timeout=600) == 0
        with open(results, encoding="utf-8") as fh:
            outs.append([json.loads(line) for line in fh][-1]["result"])
    assert sorted(o["changed"] for o in outs) == [False, True], outs
    fetched = [line for line in _requests_for(olah, repo.name, mark) if "/resolve/" in line]
    assert len(fetched) == len(repo.files), "every file downloaded once"
    entry = _entry(tmp_path, repo.name)
    assert entry["status"] == "installed" and len(_manifest(tmp_path)["models"]) == 1


def _start_install(args, workdir, results: bool = False):
    """ansible-playbook in the background (its own process group)."""
    import yaml
    play = [{"name": "bg", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "task", MODULE: args}]}]
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "bg.yml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(play, fh)
    results_file = os.path.join(workdir, "results.jsonl")
    env = ansible_env({"VENOM_RESULTS_FILE": results_file})
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), path, "-i", "localhost,", "-c", "local"]
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return (proc, results_file) if results else proc


def test_killed_download_resumes_without_refetching_completed_files(olah, tmp_path):
    repo = olah.repos["venom-test/big"]
    args = _args(olah, tmp_path, repo.name)
    models = tmp_path / "models"
    proc = _start_install(args, str(tmp_path))
    small = "model-00001-of-00002.safetensors"
    big = "model-00002-of-00002.safetensors"
    op, state = None, {}
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ops = glob.glob(str(models / ".venom" / "operations" / "*.json"))
            states = glob.glob(str(models / ".venom" / "staging" / "*" / "*" / "state.json"))
            if ops and states:
                op = json.loads(open(ops[0], encoding="utf-8").read())
                try:
                    state = json.loads(open(states[0], encoding="utf-8").read())
                except ValueError:
                    state = {}
                partial = glob.glob(str(models / ".venom" / "staging" / "*" / "*" / "partial" / big))
                if small in state and partial and os.path.getsize(partial[0]) > 0:
                    break
            assert proc.poll() is None, "the install finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the download never reached the point to kill it")
        os.kill(op["owner"]["pid"], signal.SIGKILL)  # the module process itself, as a crash would
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _entry(tmp_path, repo.name) is None, "an interrupted install is never shown as installed"
    from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
    deadline = time.monotonic() + 30  # the killed process is gone once its new parent has reaped it
    while Journal(str(models)).get(op["id"])["status"] == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.1)
    interrupted = Journal(str(models)).get(op["id"])
    assert interrupted["status"] == "failed" and interrupted.get("interrupted") is True
    mark = _log_len(olah)
    _res, out = _cycle_first_real(args)
    assert out["plan"]["staged_bytes"] >= len(repo.files[small])
    # the completed shard is not downloaded again; the interrupted one is (olah ignores Range)
    fetched = [line for line in _requests_for(olah, repo.name, mark) if "/resolve/" in line]
    assert not [line for line in fetched if small in line], fetched
    assert [line for line in fetched if big in line]
    assert out["bytes_downloaded"] < sum(len(d) for d in repo.files.values())
    entry = _entry(tmp_path, repo.name)
    for rel, exp in repo.expected().items():
        assert _sha256(os.path.join(entry["local_path"], rel)) == exp["sha256"]
    assert not os.listdir(models / ".venom" / "staging"), "no staging debris"
    assert not glob.glob(str(models / "**" / "*.incomplete"), recursive=True)


def _cycle_first_real(args):
    res, out = _run(args, check=True)
    assert out["changed"] and out["action"] == "install", out
    predicted = out
    res, out = _run(args)
    assert out["changed"] and not out["failed"], out.get("msg")
    assert predicted["plan"]["staged_bytes"] == out["plan"]["staged_bytes"]
    return res, out


def test_timeout_keeps_the_download_for_the_next_run(olah, tmp_path):
    repo = olah.repos["venom-test/big"]
    args = _args(olah, tmp_path, repo.name)
    _res, out = _run(dict(args, timeout=0.5))
    assert out["failed"] and "timeout" in out["msg"] and "resumes" in out["msg"]
    assert _entry(tmp_path, repo.name) is None
    assert glob.glob(str(tmp_path / "models" / ".venom" / "staging" / "*" / "*"))
    _res, out = _run(args)
    assert out["changed"] and _entry(tmp_path, repo.name)["status"] == "installed"


def test_verified_repairs_a_corrupted_file(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-sharded"]
    args = _args(olah, tmp_path, repo.name)
    _run(args)
    entry = _entry(tmp_path, repo.name)
    shard = "model-00002-of-00003.safetensors"
    target = os.path.join(entry["local_path"], shard)
    with open(target, "r+b") as fh:  # same size, different bytes: only hashing finds it
        fh.seek(4096)
        fh.write(b"\0corrupt\0")
    _res, out = _run(args)
    assert out["changed"] is False, "present does not hash"
    verified = dict(args, state="verified")
    mark = _log_len(olah)
    res, out = _run(verified, check=True, diff=True)
    assert out["changed"] and out["action"] == "repair"
    assert [p["path"] for p in out["plan"]["problems"]] == [shard] and out["plan"]["problems"][0]["kind"] == "digest"
    out = _cycle(verified, [True, True, False, False])
    assert _sha256(target) == repo.expected()[shard]["sha256"]
    fetched = [line for line in _requests_for(olah, repo.name, mark) if "/resolve/" in line]
    assert len(fetched) == 1 and shard in fetched[0], "only the broken file is fetched again"
    # a deleted file is found by present already (stat), and repaired
    os.unlink(os.path.join(entry["local_path"], "config.json"))
    out = _cycle(args, [True, True, False, False])
    assert _entry(tmp_path, repo.name)["status"] == "installed"


def test_removal_leaves_nothing(olah, tmp_path):
    repo = olah.repos["venom-test/tiny-gemma"]
    args = _args(olah, tmp_path, repo.name)
    _run(args)
    other = olah.repos["venom-test/tiny-quantized"]
    _run(_args(olah, tmp_path, other.name))
    # debris of an interrupted download of a third model
    _res, out = _run(_args(olah, tmp_path, "venom-test/big", timeout=0.5))
    assert out["failed"]
    out = _cycle(dict(args, state="absent"), [True, True, False, False])
    assert out["model"] is None
    models = tmp_path / "models"
    assert not (models / "huggingface" / "venom-test" / "tiny-gemma").exists()
    assert _entry(tmp_path, repo.name) is None and _entry(tmp_path, other.name) is not None
    assert not os.listdir(models / ".venom" / "locks")
    _cycle(_args(olah, tmp_path, "venom-test/big", state="absent"), [True, True, False, False])
    assert not os.listdir(models / ".venom" / "staging")
    _run(_args(olah, tmp_path, other.name, state="absent"))
    leftovers = [p for p in glob.glob(str(models / "**"), recursive=True)
                 if os.path.isfile(p) and "/.venom/operations/" not in p and not p.endswith("manifest.json")]
    assert leftovers == [], leftovers
    assert not (models / "huggingface").exists()
    assert _manifest(tmp_path)["models"] == []


@pytest.mark.parametrize("case", ["missing_repo", "missing_revision", "missing_commit", "private", "unreachable"])
def test_errors_name_the_cause_and_the_fix(olah, tmp_path, case):
    args = _args(olah, tmp_path, "venom-test/tiny-gemma")
    if case == "missing_repo":
        args["name"] = "venom-test/no-such-model"
        expect = "was not found"
    elif case == "missing_revision":
        args["revision"] = "no-such-branch"
        expect = "revision 'no-such-branch' does not exist"
    elif case == "missing_commit":
        args["revision"] = "0123456789abcdef0123456789abcdef01234567"
        expect = "commit 0123456789abcdef0123456789abcdef01234567"
    elif case == "private":
        args["name"] = olah.denied
        expect = "private or gated"
    else:
        args["endpoint"] = "http://127.0.0.1:18119"
        expect = "cannot reach http://127.0.0.1:18119"
    tasks = [{"name": f"step{i}", MODULE: args, "check_mode": check, "ignore_errors": True}
             for i, check in enumerate((True, False))]
    res = run_playbook([{"name": "errors", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    for i in range(2):
        out = res.task(f"step{i}")
        assert out["failed"] and expect in out["msg"], out["msg"]
        assert "Fix:" in out["msg"] and out.get("fix")
    assert _entry(tmp_path, args["name"]) is None


def test_token_never_leaks(olah, tmp_path):
    name = f"venom-test/secret-{uuid.uuid4().hex[:8]}"
    olah.create_repo(name, tiny_gemma_files())
    outputs = []
    # the option, and the HF_TOKEN fallback, on success, in check mode, with diff, and on failure
    res, out = _run(_args(olah, tmp_path, name, token=SECRET), check=True, diff=True)
    outputs.append(res.text)
    res, out = _run(_args(olah, tmp_path, name, token=SECRET), diff=True)
    outputs.append(res.text)
    assert out["changed"]
    res, out = _run(_args(olah, tmp_path, name, state="verified"), environment={"HF_TOKEN": SECRET})
    outputs.append(res.text)
    res, out = _run(_args(olah, tmp_path, "venom-test/nope-secret"), environment={"HF_TOKEN": SECRET})
    outputs.append(res.text)
    assert out["failed"] and "the token given" in out["msg"]
    res, out = _run(_args(olah, tmp_path, name, token=SECRET, endpoint="http://127.0.0.1:18119", state="latest"))
    outputs.append(res.text)
    assert out["failed"]
    for text in outputs:
        assert SECRET not in text
    for root, _dirs, files in os.walk(tmp_path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                assert SECRET.encode() not in fh.read(), os.path.join(root, f)
    assert SECRET not in olah.log_tail(10 ** 8)
