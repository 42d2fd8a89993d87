# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import time
import types

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import NotFoundError, ProviderError, ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.host import facts as facts_mod
from ansible_collections.venom.models.plugins.module_utils.host import usage as usage_mod
from ansible_collections.venom.models.plugins.module_utils.host.facts import gather, resolve_subsets
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry
from ansible_collections.venom.models.plugins.module_utils.host.usage import gpu_usage, usage

GB = 10 ** 9


class FakeNVML:
    """A stand-in for pynvml with two GPUs (pure-logic unit test of the aggregation)."""

    def __init__(self, fail_init=None):
        self.fail_init = fail_init
        self.shutdown = False

    def nvmlInit(self):
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"Fake GPU"

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h}"

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=(h + 1) * 1024 * 2 ** 20, total=8192 * 2 ** 20)

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=10 * (h + 1))


def test_gpu_aggregation():
    nv = FakeNVML()
    gpus, notes = gpu_usage(nv)
    assert notes == [] and nv.shutdown
    assert [g["vram_used_mb"] for g in gpus] == [1024.0, 2048.0]
    assert gpus[0]["name"] == "Fake GPU" and gpus[1]["uuid"] == "GPU-1"


def test_no_driver_gives_nulls_and_a_note(tmp_path):
    out = usage([], 50, str(tmp_path), cpu_interval=0, nvml=FakeNVML(fail_init=RuntimeError("Driver Not Loaded")))
    assert out["gpus"] == [] and out["gpu_usage_percent"] is None and out["vram_total_mb"] is None
    assert any("Driver Not Loaded" in n for n in out["notes"])


def test_real_host_usage_never_fails(tmp_path):
    """On this machine (no GPU): real psutil and the real pynvml import, GPU fields null."""
    out = usage([{"size_bytes": 5 * GB}], 50, str(tmp_path), cpu_interval=0)
    assert out["disk_usage_gb"] == 5.0 and out["disk_usage_percent"] == 10.0 and out["models_count"] == 1
    assert out["memory_total_gb"] > 0 and 0 <= out["cpu_usage_percent"] <= 100
    assert out["disk_free_gb"] > 0
    if not out["gpus"]:
        assert out["vram_usage_mb"] is None and out["notes"]


def test_usage_with_gpus(tmp_path):
    out = usage([], 50, str(tmp_path), cpu_interval=0, nvml=FakeNVML())
    assert out["gpu_count"] == 2 and out["gpu_usage_percent"] == 15.0
    assert out["vram_usage_mb"] == 3072.0 and out["vram_total_mb"] == 16384.0 and out["vram_usage_percent"] == 18.8


@pytest.mark.parametrize("requested,expected", [
    (None, ["models", "capabilities", "usage", "operations", "runtimes", "discovered"]),
    (["all"], ["models", "capabilities", "usage", "operations", "runtimes", "discovered"]),
    (["all", "!usage"], ["models", "capabilities", "operations", "runtimes", "discovered"]),
    (["all", "available"], ["models", "capabilities", "usage", "operations", "runtimes", "available", "discovered"]),
    (["!usage", "!discovered", "!runtimes"], ["models", "capabilities", "operations"]),
    (["operations"], ["operations"]),
])
def test_subsets(requested, expected):
    assert resolve_subsets(requested) == expected


def test_unknown_subset():
    with pytest.raises(ValidationError, match="Unknown gather_subset 'nope'"):
        resolve_subsets(["nope"])


def test_gather(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(new_entry("org/a", "huggingface", size_bytes=GB, capabilities={"supports_system_role": False},
                       files=[{"path": "x", "size": GB}]))
    j = Journal(str(tmp_path))
    done = j.start("install", "org/a")
    done.complete()
    time.sleep(0.01)
    running = j.start("install", "org/b", bytes_total=10)
    facts = gather(str(tmp_path), ["models", "operations"], operations_limit=1)
    assert facts["venom_models"][0]["files_count"] == 1 and "files" not in facts["venom_models"][0]
    assert "capabilities" not in facts["venom_models"][0]
    assert [o["id"] for o in facts["venom_operations"]] == [running.id]
    facts = gather(str(tmp_path), ["capabilities", "operations"], operations_limit=5, name="org/a")
    assert facts["venom_models"][0]["capabilities"] == {"supports_system_role": False}
    assert [o["id"] for o in facts["venom_operations"]] == [done.id]


def test_usage_uses_the_quota_recorded_with_the_manifest(tmp_path):
    m = Manifest(str(tmp_path))
    m.upsert(new_entry("org/a", "huggingface", size_bytes=GB, files=[{"path": "x", "size": GB}]))
    assert gather(str(tmp_path), ["usage"])["venom_usage"]["disk_limit_gb"] == 50, "nothing recorded: the default"
    m.record_settings({"quota_gb": 200})
    usage_facts = gather(str(tmp_path), ["usage"])["venom_usage"]
    assert usage_facts["disk_limit_gb"] == 200 and usage_facts["disk_usage_percent"] == 0.5
    assert gather(str(tmp_path), ["usage"], quota_gb=10)["venom_usage"]["disk_limit_gb"] == 10, "a given quota wins"


# Behaviour pinned for the mutation run of the host subsystem (issue 20): every figure and
# every argument the facts pass on, exactly.

class FakePsutil:
    """psutil's three calls with fixed figures (pure logic of the usage arithmetic)."""

    def __init__(self):
        self.interval = None

    def cpu_percent(self, interval):
        self.interval = interval
        return 12.5

    def cpu_count(self):
        return 8

    def virtual_memory(self):
        return types.SimpleNamespace(total=16 * 2 ** 30, available=4 * 2 ** 30)


def test_usage_figures_exactly(tmp_path, monkeypatch):
    fake = FakePsutil()
    monkeypatch.setattr(usage_mod, "psutil", fake)
    monkeypatch.setattr(usage_mod, "free_bytes", lambda path: 3 * GB + 500_000 if path == str(tmp_path) else -1)
    out = usage([{"size_bytes": GB}, {"size_bytes": None}, {}, {"size_bytes": "2000000000"}], 30.5, str(tmp_path),
                cpu_interval=0.25, nvml=FakeNVML())
    assert out["disk_usage_bytes"] == 3 * GB and out["disk_usage_gb"] == 3.0
    assert out["disk_limit_gb"] == 30.5 and out["disk_limit_bytes"] == 30_500_000_000
    assert out["disk_usage_percent"] == 9.8
    assert out["disk_free_bytes"] == 3 * GB + 500_000 and out["disk_free_gb"] == 3.001
    assert out["models_count"] == 4
    assert out["cpu_usage_percent"] == 12.5 and fake.interval == 0.25 and out["cpu_count"] == 8
    assert out["memory_total_gb"] == round(16 * 2 ** 30 / GB, 3) and out["memory_used_gb"] == round(12 * 2 ** 30 / GB, 3)
    assert out["memory_usage_percent"] == 75.0
    assert out["gpu_count"] == 2 and out["vram_total_mb"] == 16384.0 and out["notes"] == []


def test_usage_without_psutil_or_gpus_is_null_with_notes(tmp_path, monkeypatch):
    monkeypatch.setattr(usage_mod, "psutil", None)
    out = usage([], 0, str(tmp_path), nvml=FakeNVML(fail_init=RuntimeError("no driver")))
    assert out["cpu_usage_percent"] is None and out["cpu_count"] is None and out["memory_total_gb"] is None
    assert out["memory_used_gb"] is None and out["memory_usage_percent"] is None
    assert out["disk_usage_percent"] is None, "a quota of 0 gives no percentage, never a division by zero"
    assert out["gpu_count"] == 0 and out["vram_usage_mb"] is None and out["vram_usage_percent"] is None
    assert len(out["notes"]) == 2 and "psutil" in out["notes"][0] and "no driver" in out["notes"][1]


class PartialNVML(FakeNVML):
    """GPU 1 fails after its name (no UUID); names and UUIDs come as text, not bytes."""

    def nvmlDeviceGetName(self, h):
        return f"Text GPU {h}"

    def nvmlDeviceGetUUID(self, h):
        if h == 1:
            raise RuntimeError("Unknown Error")
        return b"GPU-bytes-0"

    def nvmlShutdown(self):
        super().nvmlShutdown()
        raise RuntimeError("shutdown fails too")


def test_a_gpu_that_fails_midway_keeps_what_was_read_and_a_note():
    nv = PartialNVML()
    gpus, notes = gpu_usage(nv)
    assert nv.shutdown, "NVML is shut down even when a GPU failed (and a failing shutdown is ignored)"
    assert gpus[0] == {"index": 0, "name": "Text GPU 0", "uuid": "GPU-bytes-0", "utilization_percent": 10.0,
                       "vram_used_mb": 1024.0, "vram_total_mb": 8192.0, "vram_usage_percent": 12.5}
    assert isinstance(gpus[0]["utilization_percent"], float)
    assert gpus[1] == {"index": 1, "name": "Text GPU 1", "uuid": None, "utilization_percent": None,
                       "vram_used_mb": None, "vram_total_mb": None, "vram_usage_percent": None}
    assert notes == ["GPU 1: some figures unavailable (Unknown Error)."]


def test_usage_averages_only_the_gpus_that_report(tmp_path):
    out = usage([], 50, str(tmp_path), cpu_interval=0, nvml=PartialNVML())
    assert out["gpu_count"] == 2 and out["gpu_usage_percent"] == 10.0
    assert out["vram_usage_mb"] == 1024.0 and out["vram_total_mb"] == 8192.0 and out["vram_usage_percent"] == 12.5
    assert out["notes"] == ["GPU 1: some figures unavailable (Unknown Error)."]


def test_gpu_usage_without_the_package_is_a_note(monkeypatch):
    monkeypatch.setattr(usage_mod, "pynvml", None)
    gpus, notes = gpu_usage()
    assert gpus == [] and len(notes) == 1 and "nvidia-ml-py" in notes[0]


def test_a_missing_models_dir_is_a_warning_naming_it(tmp_path):
    warnings = []
    missing = str(tmp_path / "nowhere")
    facts = gather(missing, ["models"], warn=warnings.append)
    assert facts == {"venom_models": [], "venom_gathered_subsets": ["models"]}
    assert len(warnings) == 1 and missing in warnings[0] and "models_dir" in warnings[0]
    warnings.clear()
    gather(str(tmp_path), ["models"], warn=warnings.append)
    assert warnings == [], "an existing models_dir gives no warning"
    assert gather(missing, ["operations"]) == {"venom_operations": [], "venom_gathered_subsets": ["operations"]}


def test_only_the_requested_subsets_are_gathered(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(facts_mod, "runtimes_status", lambda d, runner=None, api_key=None: calls.append(
        ("runtimes", d, runner, api_key)) or {"vllm": {}})
    monkeypatch.setattr(facts_mod, "discover", lambda d, models, extra_paths=None: calls.append(
        ("discover", d, models, extra_paths)) or ["found"])
    Manifest(str(tmp_path)).upsert(new_entry("org/a", "huggingface", size_bytes=GB))
    runner = object()
    facts = gather(str(tmp_path), ["runtimes", "discovered"], runner=runner, api_key="k", discovery_paths=["/x"])
    assert set(facts) == {"venom_runtimes", "venom_discovered", "venom_gathered_subsets"}
    assert facts["venom_runtimes"] == {"vllm": {}} and facts["venom_discovered"] == ["found"]
    assert calls[0] == ("runtimes", str(tmp_path), runner, "k")
    assert calls[1][0] == "discover" and calls[1][1] == str(tmp_path) and calls[1][3] == ["/x"]
    assert [m["name"] for m in calls[1][2]] == ["org/a"], "discovery gets the manifest's models to leave out"
    calls.clear()
    facts = gather(str(tmp_path), ["usage"])
    assert set(facts) == {"venom_usage", "venom_gathered_subsets"} and calls == []
    assert facts["venom_usage"]["disk_usage_bytes"] == GB and facts["venom_gathered_subsets"] == ["usage"]


def test_the_models_subset_filters_by_name(tmp_path):
    m = Manifest(str(tmp_path))
    for name in ("org/a", "org/b"):
        m.upsert(new_entry(name, "huggingface", size_bytes=1, files=[]))
    assert [x["name"] for x in gather(str(tmp_path), ["models"])["venom_models"]] == ["org/a", "org/b"]
    assert [x["name"] for x in gather(str(tmp_path), ["models"], name="org/b")["venom_models"]] == ["org/b"]
    assert gather(str(tmp_path), ["models"])["venom_models"][0]["files_count"] == 0


def test_one_operation_by_id_and_an_unknown_one(tmp_path):
    j = Journal(str(tmp_path))
    first = j.start("install", "org/a")
    first.complete()
    j.start("verify", "org/a")
    facts = gather(str(tmp_path), ["operations"], operation_id=first.id)
    assert [o["id"] for o in facts["venom_operations"]] == [first.id]
    with pytest.raises(NotFoundError, match="no operation"):
        gather(str(tmp_path), ["operations"], operation_id="0" * 32)


def test_operations_newest_first_with_every_running_one(tmp_path):
    j = Journal(str(tmp_path))
    old_running = j.start("install", "org/a")
    time.sleep(0.002)
    done = [j.start("verify", "org/a") for _i in range(3)]
    for op in done:
        op.complete()
        time.sleep(0.002)
    ops = gather(str(tmp_path), ["operations"], operations_limit=2)["venom_operations"]
    ids = [o["id"] for o in ops]
    assert old_running.id in ids, "a running operation is listed even when older than the limit"
    assert len(ids) == 3 and len(set(ids)) == 3, "one running operation already among the recent is not listed twice"
    assert [o["started_at"] for o in ops] == sorted((o["started_at"] for o in ops), reverse=True)
    assert ids[-1] == old_running.id


def test_an_unreachable_remote_is_a_warning_and_an_error_field(tmp_path, monkeypatch):
    seen = {}

    def down(**query):
        seen.update(query)
        raise ProviderError("The endpoint refused.", fix="Start it.")
    monkeypatch.setattr(facts_mod, "available", down)
    warnings = []
    facts = gather(str(tmp_path), ["available"], available_query={"endpoint": "http://127.0.0.1:9"},
                   warn=warnings.append)
    assert facts["venom_available"] == {"provider": "huggingface", "endpoint": "http://127.0.0.1:9", "count": 0,
                                        "models": [], "error": "The endpoint refused.", "fix": "Start it."}
    assert seen["provider"] == "huggingface" and seen["models_dir"] == str(tmp_path) and seen["models"] == []
    assert len(warnings) == 1 and "The endpoint refused." in warnings[0]
    assert warnings[0].startswith("The available subset could not be gathered")

    def oserror(**_query):
        raise ConnectionRefusedError("refused")
    monkeypatch.setattr(facts_mod, "available", oserror)
    out = gather(str(tmp_path), ["available"], available_query={"provider": "ollama"})["venom_available"]
    assert out["provider"] == "ollama" and out["error"] == "refused" and out["fix"] is None

    def wrong_option(**_query):
        raise ValidationError("bad limit")
    monkeypatch.setattr(facts_mod, "available", wrong_option)
    with pytest.raises(ValidationError, match="bad limit"):
        gather(str(tmp_path), ["available"])


def test_subset_resolution_edges():
    assert resolve_subsets([]) == list(facts_mod.DEFAULT_SUBSETS)
    assert resolve_subsets(["!usage"]) == ["models", "capabilities", "operations", "runtimes", "discovered"]
    with pytest.raises(ValidationError, match="Unknown gather_subset '!nope'"):
        resolve_subsets(["!nope"])


def test_operations_are_listed_twenty_by_default(tmp_path):
    j = Journal(str(tmp_path))
    for _op in range(21):
        j.start("verify", "org/a").complete()
    assert len(gather(str(tmp_path), ["operations"])["venom_operations"]) == 20


def test_the_operations_subset_does_not_read_the_manifest(tmp_path):
    Journal(str(tmp_path)).start("install", "org/a").complete()
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    assert len(gather(str(tmp_path), ["operations"])["venom_operations"]) == 1
    with pytest.raises(VenomError):
        gather(str(tmp_path), ["models"])


def test_a_summary_of_an_entry_without_capabilities_or_files():
    assert facts_mod.model_summary({"name": "x"}, False) == {"name": "x", "files_count": 0}
    assert facts_mod.model_summary({"name": "x", "capabilities": {"a": 1}, "files": [1, 2]}, True) == {
        "name": "x", "capabilities": {"a": 1}, "files_count": 2}


def test_an_unknown_subset_names_the_fix():
    with pytest.raises(ValidationError) as err:
        resolve_subsets(["nope"])
    assert "'all'" in err.value.fix and "discovered" in err.value.fix and "'!'" in err.value.fix


class RoundingNVML(FakeNVML):
    """Figures with more decimals than the facts keep."""

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=int(1536.33 * 2 ** 20), total=int(8191.77 * 2 ** 20))

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=10 if h == 0 else 13.33)


def test_figures_are_rounded_to_the_documented_places(tmp_path, monkeypatch):
    fake = FakePsutil()
    monkeypatch.setattr(usage_mod, "psutil", fake)
    out = usage([{"size_bytes": 1_234_567_891}], 50, str(tmp_path), nvml=RoundingNVML())
    assert fake.interval == 0.1, "CPU is sampled for 0.1 s by default"
    assert out["disk_usage_gb"] == 1.235
    assert [g["vram_used_mb"] for g in out["gpus"]] == [1536.3, 1536.3]
    assert [g["vram_total_mb"] for g in out["gpus"]] == [8191.8, 8191.8]
    assert out["gpu_usage_percent"] == 11.7
    assert out["vram_usage_mb"] == 3072.6 and out["vram_total_mb"] == 16383.6


def test_the_installed_nvml_is_used_when_none_is_given(tmp_path, monkeypatch):
    monkeypatch.setattr(usage_mod, "pynvml", FakeNVML())
    gpus, notes = gpu_usage()
    assert len(gpus) == 2 and notes == []
    assert usage([], 50, str(tmp_path), cpu_interval=0)["gpu_count"] == 2
