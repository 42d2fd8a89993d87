# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Prometheus exposition of a host's model state (pure functions; promtool checks the real output
in tests/integration/test_metrics.py)."""
from __future__ import annotations

import os
import re

from ansible_collections.venom.models.plugins.module_utils.host import metrics as metrics_mod
from ansible_collections.venom.models.plugins.module_utils.host.metrics import (
    collect, escape_label, render, vram_by_gpu, write_textfile)
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry

GB = 10 ** 9
MIB = 2 ** 20
REV = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"

FACTS = {
    "venom_models": [
        {"name": "org/chat", "provider": "huggingface", "revision": REV, "status": "installed", "size_bytes": 90868376},
        {"name": "tiny:latest", "provider": "ollama", "revision": "sha256:abc", "status": "installed", "size_bytes": 1000},
    ],
    "venom_usage": {"disk_usage_bytes": 90869376, "disk_usage_gb": 0.091, "disk_limit_gb": 50,
                    "disk_limit_bytes": 50 * GB, "disk_free_bytes": 123456789, "disk_free_gb": 0.123, "gpus": []},
    "venom_runtimes": {
        # instance-keyed, with the fields of per-instance facts
        "chat": {"name": "chat", "runtime": "vllm", "configured": True, "running": True, "healthy": True,
                 "model": "org/chat", "restarts": 2, "rss_bytes": 3 * GB, "gpus": [0, 1],
                 "vram": {"0": 10 * GB, "1": 9 * GB}},
        # the older form keyed by runtime name, fields missing
        "ollama": {"name": "ollama", "configured": False, "running": False, "healthy": False, "model": None,
                   "restarts": None},
    },
}
OPS = [
    {"id": "1", "type": "install", "status": "completed", "started_at": "2026-11-22T10:00:00.000Z",
     "finished_at": "2026-11-22T10:00:30.000Z", "duration_seconds": 30.0},
    {"id": "2", "type": "install", "status": "failed", "started_at": "2026-11-22T11:00:00.000Z",
     "finished_at": "2026-11-22T11:00:05.500Z", "duration_seconds": 5.5, "error": "quota"},
    {"id": "3", "type": "activate", "status": "in_progress", "started_at": "2026-11-22T12:00:00.000Z"},
    {"id": "4", "type": "weird-type", "status": "completed", "started_at": "2026-11-22T09:00:00.000Z",
     "finished_at": "2026-11-22T09:00:01.000Z", "duration_seconds": 1.0},
]


def samples(text: str) -> dict:
    """``{'name{labels}': value}`` of an exposition, checking each line's syntax on the way."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) venom_[a-z_]+ .+$", line), line
            continue
        m = re.match(r'^(venom_[a-z_]+)(\{.*\})? (-?[0-9.e+]+)$', line)
        assert m, line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def test_models_disk_and_quota():
    s = samples(render(FACTS, OPS))
    assert s[f'venom_model_info{{model="org/chat",provider="huggingface",revision="{REV}",status="installed"}}'] == 1
    assert s['venom_model_size_bytes{model="org/chat",provider="huggingface"}'] == 90868376
    assert s['venom_model_size_bytes{model="tiny:latest",provider="ollama"}'] == 1000
    assert s["venom_models"] == 2
    assert s["venom_models_disk_used_bytes"] == 90869376
    assert s["venom_models_disk_quota_bytes"] == 50 * GB
    assert s["venom_models_disk_free_bytes"] == 123456789


def test_runtime_instances():
    s = samples(render(FACTS, OPS))
    chat = 'runtime="vllm",runtime_instance="chat"'
    assert s[f"venom_runtime_up{{{chat}}}"] == 1 and s[f"venom_runtime_healthy{{{chat}}}"] == 1
    assert s[f'venom_runtime_served_model_info{{model="org/chat",{chat}}}'] == 1
    assert s[f"venom_runtime_restarts_total{{{chat}}}"] == 2
    assert s[f"venom_runtime_memory_rss_bytes{{{chat}}}"] == 3 * GB
    assert s[f'venom_runtime_gpu_memory_used_bytes{{gpu="0",{chat}}}'] == 10 * GB
    assert s[f'venom_runtime_gpu_memory_used_bytes{{gpu="1",{chat}}}'] == 9 * GB
    oll = 'runtime="ollama",runtime_instance="ollama"'
    assert s[f"venom_runtime_configured{{{oll}}}"] == 0 and s[f"venom_runtime_up{{{oll}}}"] == 0
    # not measured: absent, never a fake 0
    assert f"venom_runtime_restarts_total{{{oll}}}" not in s
    assert f"venom_runtime_memory_rss_bytes{{{oll}}}" not in s
    assert not any(k.startswith("venom_runtime_gpu_memory_used_bytes") and oll in k for k in s)
    assert not any(k.startswith("venom_runtime_served_model_info") and oll in k for k in s)


def test_no_vram_metric_without_nvml():
    facts = {"venom_runtimes": {"vllm": {"name": "vllm", "running": True, "healthy": True, "vram": None,
                                         "gpus": None, "rss_bytes": 5}}}
    text = render(facts)
    assert "gpu_memory" not in text and "venom_gpu_info" not in text
    assert "venom_runtime_memory_rss_bytes" in text


def test_vram_shapes():
    assert vram_by_gpu({"vram": [{"index": 2, "used_mb": 1}]}) == {"2": MIB}
    assert vram_by_gpu({"vram": [{"gpu": 0, "used_bytes": 7}, {"gpu": 1}]}) == {"0": 7.0}
    assert vram_by_gpu({"vram_bytes": 9, "gpus": [3]}) == {"3": 9.0}
    assert vram_by_gpu({"vram_mb": 2, "gpus": [0, 1]}) == {"all": 2.0 * MIB}
    assert vram_by_gpu({"vram": None}) == {}
    # the instance facts of venom_runtime instances: the tree's VRAM summed, with the instance's GPUs
    assert vram_by_gpu({"runtime": "vllm", "vram_bytes": 5, "gpus": [2]}) == {"2": 5.0}
    assert vram_by_gpu({"runtime": "vllm", "vram_bytes": 5, "gpus": [0, 1]}) == {"all": 5.0}
    assert vram_by_gpu({"runtime": "vllm", "vram_bytes": None, "gpus": None}) == {}


def test_host_gpus_from_usage():
    facts = {"venom_usage": {"gpus": [{"index": 0, "name": "A100", "uuid": "GPU-1", "vram_used_mb": 1024.0,
                                       "vram_total_mb": 40960.0},
                                      {"index": 1, "name": "A100", "uuid": "GPU-2", "vram_used_mb": None,
                                       "vram_total_mb": None}]}}
    s = samples(render(facts))
    assert s['venom_gpu_memory_used_bytes{gpu="0"}'] == 1024 * MIB
    assert s['venom_gpu_memory_total_bytes{gpu="0"}'] == 40960 * MIB
    assert 'venom_gpu_memory_used_bytes{gpu="1"}' not in s
    assert s['venom_gpu_info{gpu="1",name="A100",uuid="GPU-2"}'] == 1


def test_operations_per_type_with_bounded_labels():
    s = samples(render(FACTS, OPS))
    assert s['venom_operation_last_status{status="failed",type="install"}'] == 1
    assert s['venom_operation_last_status{status="completed",type="install"}'] == 0
    assert s['venom_operation_last_status{status="in_progress",type="activate"}'] == 1
    assert s['venom_operation_last_duration_seconds{type="install"}'] == 5.5
    assert s['venom_operation_last_finished_timestamp_seconds{type="install"}'] == 1795345205.5
    assert 'venom_operation_last_duration_seconds{type="activate"}' not in s
    assert s['venom_operations_failed{type="install"}'] == 1
    assert s['venom_operations_in_progress{type="activate"}'] == 1
    assert s['venom_operations_failed{type="other"}'] == 0, "an unknown type folds into 'other'"
    text = render(FACTS, OPS)
    assert 'id="' not in text and "weird-type" not in text, "never a label per operation"


def test_naming_conventions():
    text = render(FACTS, OPS)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, kind in types.items():
        assert name.startswith("venom_")
        assert name.endswith("_total") == (kind == "counter"), name
    assert types["venom_runtime_restarts_total"] == "counter"


def test_escaping_of_host_strings():
    facts = {"venom_models": [{"name": 'evil"} 1\nvenom_x 2', "provider": "local", "revision": "a\\b",
                               "status": "installed", "size_bytes": 1}]}
    text = render(facts)
    assert 'model="evil\\"} 1\\nvenom_x 2"' in text and 'revision="a\\\\b"' in text
    assert "\nvenom_x 2" not in text
    assert escape_label('a"b\nc\\') == 'a\\"b\\nc\\\\'


def test_missing_subsets_give_no_metrics():
    assert render({}) == ""
    assert "venom_runtime" not in render({"venom_models": []})
    assert render({"venom_models": []}) .count("\n") == 3  # only venom_models 0


def test_write_textfile_atomic_and_only_on_change(tmp_path):
    path = str(tmp_path / "venom.prom")
    assert write_textfile(path, "venom_models 1\n") is True
    inode = os.stat(path).st_ino
    assert write_textfile(path, "venom_models 1\n") is False and os.stat(path).st_ino == inode
    assert write_textfile(path, "venom_models 2\n", write=False) is True
    assert open(path, encoding="utf-8").read() == "venom_models 1\n"
    assert write_textfile(path, "venom_models 2\n") is True
    assert os.stat(path).st_ino != inode, "replaced by rename, not rewritten in place"
    assert os.listdir(tmp_path) == ["venom.prom"], "no temp file left behind"
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_collect_reads_manifest_and_whole_journal(tmp_path):
    d = str(tmp_path / "models")
    Manifest(d).upsert(new_entry("org/m", "huggingface", size_bytes=42, revision=REV))
    journal = Journal(d)
    for _op in range(25):  # more than the facts' default operations_limit
        journal.start("verify", "org/m").fail("digest mismatch")
    out = collect(d, str(tmp_path / "m.prom"), quota_gb=1.0)
    s = samples((tmp_path / "m.prom").read_text())
    assert out["changed"] and out["series"] == len(s)
    assert s["venom_models_disk_used_bytes"] == 42 and s["venom_models_disk_quota_bytes"] == GB
    assert s['venom_operations_failed{type="verify"}'] == 25
    assert sorted(os.listdir(tmp_path)) == ["m.prom", "models"], "no temp file left behind"


# Behaviour pinned for the mutation run of the host subsystem (issue 20).

def test_quota_and_free_space_given_in_gb_only():
    s = samples(render({"venom_usage": {"disk_usage_bytes": 0, "disk_limit_gb": 2.5, "disk_free_gb": 0.5}}))
    assert s["venom_models_disk_quota_bytes"] == 2.5 * GB and s["venom_models_disk_free_bytes"] == 0.5 * GB
    s = samples(render({"venom_usage": {"disk_usage_bytes": 0, "disk_limit_gb": None, "disk_free_gb": None}}))
    assert "venom_models_disk_quota_bytes" not in s and "venom_models_disk_free_bytes" not in s
    assert render({"venom_usage": {}}) == "", "an empty usage subset gives no metrics"


def test_host_gpu_without_name_or_uuid_and_exact_help_lines():
    text = render({"venom_usage": {"gpus": [{"index": 3}]}})
    assert text == ('# HELP venom_gpu_info A GPU of the host (value 1), with its name and UUID (NVML).\n'
                    '# TYPE venom_gpu_info gauge\n'
                    'venom_gpu_info{gpu="3",name="",uuid=""} 1\n')


def test_runtime_kind_from_field_name_or_unknown():
    s = samples(render({"venom_runtimes": {
        "a": {"runtime": "ollama", "running": True},
        "vllm": {"running": False},
        "b": {"name": "ollama"},
        "c": {"name": "other"},
        "d": None}}))
    assert s['venom_runtime_up{runtime="ollama",runtime_instance="a"}'] == 1
    assert s['venom_runtime_up{runtime="vllm",runtime_instance="vllm"}'] == 0
    assert s['venom_runtime_configured{runtime="ollama",runtime_instance="b"}'] == 1, "configured unless said otherwise"
    assert s['venom_runtime_configured{runtime="unknown",runtime_instance="c"}'] == 1
    assert s['venom_runtime_configured{runtime="unknown",runtime_instance="d"}'] == 1
    assert 'venom_runtime_up{runtime="ollama",runtime_instance="b"}' not in s, "running not known: left out"
    assert not any(k.startswith("venom_runtime_healthy") for k in s)


def test_a_stopped_instance_serves_no_model_and_a_running_one_without_model_neither():
    s = samples(render({"venom_runtimes": {"a": {"runtime": "vllm", "running": False, "model": "org/m"},
                                           "b": {"runtime": "vllm", "running": True, "model": ""}}}))
    assert not any(k.startswith("venom_runtime_served_model_info") for k in s)


def test_rss_and_vram_under_their_other_field_names():
    s = samples(render({"venom_runtimes": {"a": {"runtime": "vllm", "tree_rss_bytes": 7,
                                                 "gpu_memory": {"0": 5, "1": None}}}}))
    assert s['venom_runtime_memory_rss_bytes{runtime="vllm",runtime_instance="a"}'] == 7
    assert s['venom_runtime_gpu_memory_used_bytes{gpu="0",runtime="vllm",runtime_instance="a"}'] == 5
    assert not any('gpu="1"' in k for k in s)


def test_vram_shapes_at_the_edges():
    assert vram_by_gpu({"vram_mb": {"0": 3}}) == {"0": 3.0 * MIB}
    assert vram_by_gpu({"vram_by_gpu": ["junk", {"used_bytes": 9}, {"index": 0, "vram_bytes": 4},
                                        {"index": 1, "vram_mb": 2}]}) == {"0": 4.0, "1": 2.0 * MIB}
    assert vram_by_gpu({"vram": 6}) == {"all": 6.0}, "no GPU list: the whole host"
    assert vram_by_gpu({"vram": True, "gpus": [0]}) == {}, "a flag is not a figure"
    assert vram_by_gpu({"vram": "5", "gpus": [0]}) == {}
    assert vram_by_gpu({"vram_mb": 1.5, "gpus": [4]}) == {"4": 1.5 * MIB}


def test_operations_newest_by_start_and_last_finished():
    ops = [
        {"type": "install", "status": "completed", "started_at": "2026-11-22T10:00:00.000Z",
         "finished_at": "2026-11-22T10:00:50.000Z", "duration_seconds": 50},
        {"type": "install", "status": "failed", "started_at": "2026-11-22T10:00:10.000Z",
         "finished_at": "2026-11-22T10:00:20.000Z", "duration_seconds": 10},
        {"type": "install", "status": "in_progress"},
        {"type": "verify", "status": "completed", "started_at": "2026-11-22T10:00:00.000Z",
         "finished_at": "not a time", "duration_seconds": 1},
    ]
    s = samples(render({}, ops))
    assert s['venom_operation_last_status{status="failed",type="install"}'] == 1, "newest by start time"
    assert s['venom_operation_last_status{status="completed",type="install"}'] == 0
    assert s['venom_operation_last_duration_seconds{type="install"}'] == 50, "last by finish time"
    assert s['venom_operations_in_progress{type="install"}'] == 1
    assert s['venom_operations_failed{type="install"}'] == 1
    assert s['venom_operation_last_duration_seconds{type="verify"}'] == 1
    assert 'venom_operation_last_finished_timestamp_seconds{type="verify"}' not in s, "an unreadable time is left out"
    assert render({}, []) == "" and render({"venom_operations": ops}) == render({}, ops)
    assert render({"venom_operations": ops}, []) == "", "the journal given wins over the facts' operations"


def test_numbers_and_help_text_formats():
    facts = {"venom_models": [{"name": "m", "size_bytes": 2.5}, {"name": "n", "size_bytes": 2 ** 64},
                              {"name": "o", "size_bytes": float("nan")}, {"name": "p", "size_bytes": -3.0}]}
    text = render(facts)
    assert 'venom_model_size_bytes{model="m",provider=""} 2.5\n' in text
    assert f'venom_model_size_bytes{{model="n",provider=""}} {float(2 ** 64)!r}\n' in text
    assert 'venom_model_size_bytes{model="o",provider=""}' not in samples(text), "NaN is not a figure"
    assert 'venom_model_size_bytes{model="p",provider=""} -3\n' in text
    assert 'venom_model_info{model="m",provider="",revision="",status=""} 1\n' in text
    assert "\n# TYPE venom_models gauge\nvenom_models 4\n" in text
    fam = metrics_mod.Family("x", "a\\b\nc")
    fam.add(1)
    assert metrics_mod.exposition([fam]) == "# HELP venom_x a\\\\b\\nc\n# TYPE venom_x gauge\nvenom_x 1\n"


def test_collect_gathers_only_what_is_missing_and_check_mode_writes_nothing(tmp_path, monkeypatch):
    d = str(tmp_path / "models")
    Manifest(d).upsert(new_entry("org/m", "huggingface", size_bytes=42, revision=REV))
    asked = []
    real_gather = metrics_mod.gather

    def gather(models_dir, subsets, **kwargs):
        asked.append((models_dir, list(subsets), kwargs))
        return real_gather(models_dir, subsets, **kwargs)
    monkeypatch.setattr(metrics_mod, "gather", gather)
    path = str(tmp_path / "m.prom")
    runner = object()
    out = collect(d, path, quota_gb=2.0, runner=runner, api_key="k", facts={"venom_runtimes": {}}, write=False)
    assert asked == [(d, ["models", "usage"], {"quota_gb": 2.0, "runner": runner, "api_key": "k"})]
    assert out == {"changed": True, "path": path, "series": out["series"]} and not os.path.exists(path)
    text = render({**real_gather(d, ["models", "usage"], quota_gb=2.0), "venom_runtimes": {}}, Journal(d).list())
    assert out["series"] == sum(1 for line in text.splitlines() if not line.startswith("#"))
    asked.clear()
    fixed = {"venom_runtimes": {}, "venom_usage": {"disk_usage_bytes": 42, "disk_limit_gb": 2.0}}
    assert collect(d, path, facts=fixed)["changed"] is True
    assert collect(d, path, facts=fixed)["changed"] is False, "the same figures: the file is left alone"
    assert [a[1] for a in asked] == [["models"], ["models"]]
    assert samples(open(path, encoding="utf-8").read())["venom_models_disk_quota_bytes"] == 2 * GB
    asked.clear()
    full = {"venom_models": [], "venom_usage": {"disk_usage_bytes": 0}, "venom_runtimes": {}}
    collect(d, str(tmp_path / "n.prom"), facts=full)
    assert asked == [], "nothing gathered when the facts are complete"


def test_whole_numbers_are_written_as_integers_up_to_the_int64_limit():
    below = float(2 ** 63 - 1024)   # the largest float under 2**63
    text = render({"venom_models": [{"name": "a", "size_bytes": below}, {"name": "b", "size_bytes": float(2 ** 63)},
                                    {"name": "c", "size_bytes": -below}]})
    assert f'model="a",provider=""}} {2 ** 63 - 1024}\n' in text
    assert f'model="b",provider=""}} {float(2 ** 63)!r}\n' in text
    assert f'model="c",provider=""}} {-(2 ** 63 - 1024)}\n' in text


def test_exact_bytes_win_over_rounded_gigabytes_and_nameless_models_have_empty_labels():
    s = samples(render({"venom_usage": {"disk_limit_bytes": 50_000_000_123, "disk_limit_gb": 50,
                                        "disk_free_bytes": 7, "disk_free_gb": 0.0},
                        "venom_models": [{"size_bytes": 1}]}))
    assert s["venom_models_disk_quota_bytes"] == 50_000_000_123 and s["venom_models_disk_free_bytes"] == 7
    assert s['venom_model_info{model="",provider="",revision="",status=""}'] == 1


def test_collect_without_a_quota_uses_the_default_of_50_gb(tmp_path):
    d = str(tmp_path / "models")
    Manifest(d).upsert(new_entry("org/m", "huggingface", size_bytes=42, revision=REV))
    collect(d, str(tmp_path / "m.prom"), facts={"venom_runtimes": {}})
    assert samples((tmp_path / "m.prom").read_text())["venom_models_disk_quota_bytes"] == 50 * GB
