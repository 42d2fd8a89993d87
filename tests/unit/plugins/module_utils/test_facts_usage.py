# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import time
import types

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
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
