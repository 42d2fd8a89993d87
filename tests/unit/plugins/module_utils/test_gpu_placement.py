# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU placement and pre-flight of runtime instances against a fake NVML (no GPU on the CI
machines): device count, free memory, per-process memory. What the real NVML returns on a GPU
host was not seen here (see docs/runtime.md)."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.host import gpu as G
from ansible_collections.venom.models.plugins.module_utils.runtimes import controller as R
from ansible_collections.venom.models.plugins.module_utils.runtimes.placement import check_cpus, check_placement
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest

from tests.unit.plugins.module_utils.test_runtime import SystemdRig, fake_processes

GIB = G.GIB


class FakeNVML:
    """pynvml with ``devices``: a list of (total bytes, free bytes, {pid: used bytes or None})."""

    def __init__(self, devices, fail_init=None):
        self.devices, self.fail_init, self.shutdowns = devices, fail_init, 0

    def nvmlInit(self):
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, h):
        total, free, _procs = self.devices[h]
        return SimpleNamespace(total=total, free=free, used=total - free)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.devices[h][2].items()]


def four_gpus(free=70, procs=None):
    return FakeNVML([(80 * GIB, free * GIB, dict((procs or {}).get(i, {}))) for i in range(4)])


def host(nvml):
    found, reason = G.probe(nvml)
    assert found is not None, reason
    return found


def test_probe_reads_devices_and_per_process_memory():
    nv = four_gpus(procs={1: {100: 2 * GIB, 101: None}, 2: {100: GIB}})
    h = host(nv)
    assert h.count == 4 and h.driver_version == "550.54.15" and h.devices[0].total == 80 * GIB
    assert h.vram_of([100, 101]) == 3 * GIB and h.vram_of([101]) is None and h.vram_of([7]) is None
    assert nv.shutdowns == 1


def test_no_driver_is_a_reason_not_an_error():
    found, reason = G.probe(FakeNVML([], fail_init=RuntimeError("Driver Not Loaded")))
    assert found is None and "Driver Not Loaded" in reason


def test_refusals_name_the_problem():
    h = host(four_gpus())
    with pytest.raises(ValidationError, match=r"asks for GPUs \[0\], but this host has no usable NVML: no driver"):
        check_placement("chat", [0], None, "no driver")
    with pytest.raises(ValidationError, match=r"asks for GPU 4, 7, but this host has GPUs 0-3"):
        check_placement("chat", [3, 4, 7], h)
    with pytest.raises(ValidationError, match="lists a GPU twice"):
        check_placement("chat", [1, 1], h)
    with pytest.raises(ValidationError, match="tensor_parallel_size 4 needs 4 GPUs"):
        check_placement("chat", [0, 1], h, tensor_parallel_size=4)
    other = {"name": "embed", "gpus": [2], "gpu_share": False, "utilization": 0.3}
    with pytest.raises(ValidationError, match="GPU 2 is held by the instance 'embed'"):
        check_placement("chat", [2], h, others=[other], utilization=0.5)
    with pytest.raises(ValidationError, match="GPU 2 is held"):
        check_placement("chat", [2], h, others=[other], utilization=0.5, gpu_share=True)  # embed does not share
    assert check_placement("chat", [0, 1], h, others=[other], utilization=0.5) == [
        "NVML answers (driver 550.54.15, 4 GPUs)", "GPU 0: 70.0 GiB free, needs 40.0 GiB (weights 0.0 GiB)",
        "GPU 1: 70.0 GiB free, needs 40.0 GiB (weights 0.0 GiB)"]
    with pytest.raises(ValidationError, match=r"GPU 0 has 70.0 GiB free \(of 80.0 GiB\); the instance 'chat' needs 72.0 GiB"):
        check_placement("chat", [0], h)  # vLLM's default 0.9 of 80 GiB


def test_memory_checks_give_the_figures():
    h = host(four_gpus(free=30))
    with pytest.raises(ValidationError, match=r"GPU 0 has 30.0 GiB free \(of 80.0 GiB\); the instance 'chat' needs "
                                              r"40.0 GiB \(0.5 x total\)"):
        check_placement("chat", [0], h, utilization=0.5)
    with pytest.raises(ValidationError, match=r"weight share 40.0 GiB \(\+10% margin: 44.0 GiB\) does not fit the "
                                              r"instance's budget 24.0 GiB"):
        check_placement("chat", [0], h, utilization=0.3, weights_bytes=40 * GIB)
    checks = check_placement("chat", [0, 1], h, utilization=0.3, weights_bytes=40 * GIB)
    assert checks[1] == "GPU 0: 30.0 GiB free, needs 24.0 GiB (weights 22.0 GiB)", "split over TP 2"


def test_own_processes_count_as_free_and_sharing_adds_up():
    h = host(four_gpus(free=10, procs={0: {500: 50 * GIB}}))
    with pytest.raises(ValidationError, match="GPU 0 has 10.0 GiB free"):
        check_placement("chat", [0], h, utilization=0.5)
    assert len(check_placement("chat", [0], h, utilization=0.5, own_pids=[500])) == 2
    sharer = {"name": "embed", "gpus": [0], "gpu_share": True, "utilization": 0.3}
    assert len(check_placement("chat", [0], h, utilization=0.5, own_pids=[500], gpu_share=True, others=[sharer])) == 2
    with pytest.raises(ValidationError, match="would add up to 1.20, more than 1.0"):
        check_placement("chat", [0], h, utilization=0.9, own_pids=[500], gpu_share=True, others=[sharer])


def test_an_instance_on_gpus_gets_its_devices_and_tensor_parallel(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, name="chat", runtime="vllm", port=8001,
                             command=["good"], gpus=[2, 3], gpu_memory_utilization=0.5)
    c.nvml = four_gpus()
    res = c.ensure("started", "a")
    argv, env = fake.started[-1]
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert res["preflight"][0].startswith("NVML answers") and len(res["preflight"]) == 3
    assert R.instance_states(models_dir)["chat"]["gpus"] == [2, 3]


def test_placement_is_refused_before_the_running_instance_stops(models_dir, monkeypatch):
    chat, _chat_fake = fake_processes(models_dir, monkeypatch, None, name="chat", runtime="vllm", port=8001,
                                      command=["good"], gpus=[2, 3], gpu_memory_utilization=0.5)
    chat.nvml = four_gpus()
    chat.ensure("started", "a")
    coder, fake = fake_processes(models_dir, monkeypatch, None, name="coder", runtime="vllm", port=8002,
                                 command=["good"], gpus=[0], gpu_memory_utilization=0.5)
    coder.nvml = four_gpus()
    coder.ensure("started", "a")
    again, fake = fake_processes(models_dir, monkeypatch, fake.running, name="coder", runtime="vllm", port=None,
                                 command=["good"], gpus=[3])
    again.nvml = four_gpus()
    with pytest.raises(ValidationError, match="GPU 3 is held by the instance 'chat'"):
        again.ensure("started", "b")
    assert fake.stops == 0 and fake.started == [], "the running coder was not touched"
    again.nvml = FakeNVML([], fail_init=RuntimeError("NVML Shared Library Not Found"))
    again.spec.gpus = [1]
    with pytest.raises(ValidationError, match="no usable NVML: NVML could not initialise"):
        again.ensure("started", "b")
    assert fake.stops == 0
    assert [e["name"] for e in Manifest(models_dir).models() if "coder" in e.get("active_instances", [])] == ["a"]


def test_gpus_reach_the_env_file_and_come_back(models_dir, tmp_path):
    c = R.RuntimeController(R.RuntimeSpec(name="chat", runtime="vllm", models_dir=models_dir, port=8001,
                                          env_file=str(tmp_path / "vllm-chat.env")))
    act = R.Activation(model_path="/m/a", served_model_name="a", gpus=[0, 1])
    c.engine.write_env_file(act)
    env = c.engine.read_env_file()
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert c.engine.env_file_activation().gpus == [0, 1]


def test_gpus_for_ollama_are_refused():
    with pytest.raises(ValidationError, match="'gpus' places vLLM instances"):
        R.RuntimeSpec(name="ollama", gpus=[0])


def test_facts_per_instance_with_tree_rss_uptime_and_vram(models_dir, tmp_path):
    """A real process tree (sh with a sleeping child) as the instance; its VRAM from the fake NVML."""
    from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
    c = R.RuntimeController(R.RuntimeSpec(name="embed", runtime="vllm", models_dir=models_dir, port=8007,
                                          mode="process"))
    c.resolve_mode()
    c.write_state(R.Activation(model="a", provider="local", model_path="/m/a", served_model_name="a", gpus=[1]))
    rec = P.start_process(["sh", "-c", "sleep 30 & sleep 30; wait"], pid_file=c.pid_file, log_file=c.log_file,
                          startup_check=0.2)
    try:
        pids = c.backend.tree_pids()
        assert rec["pid"] in pids and len(pids) >= 3, pids
        nv = four_gpus(procs={1: {pids[-1]: 3 * GIB, 999999: GIB}})
        st = R.runtimes_status(models_dir, nvml=nv)["embed"]
        assert st["runtime"] == "vllm" and st["mode"] == "process" and st["port"] == 8007 and st["unit"] is None
        assert st["pid"] == rec["pid"] and st["uptime"] is not None and 0 <= st["uptime"] < 60
        assert st["rss_bytes"] > 0 and st["vram_bytes"] == 3 * GIB and st["gpus"] == [1]
        assert st["healthy"] is False and st["model"] == "a" and "restarts" in st
        no_nvml = R.runtimes_status(models_dir, nvml=FakeNVML([], fail_init=RuntimeError("no driver")))
        assert no_nvml["embed"]["vram_bytes"] is None and no_nvml["vllm"]["vram_bytes"] is None
    finally:
        c.backend.stop()
    st = R.runtimes_status(models_dir, nvml=four_gpus())["embed"]
    assert st["running"] is False and st["rss_bytes"] is None and st["pids"] == []


def test_cpus_are_checked_against_the_host_and_the_other_instances():
    assert check_cpus("a", None, "process", {0, 1}) == []
    assert check_cpus("a", [0, 1, 2, 5], "process", {0, 1, 2, 3, 5}) == ["CPUs 0-2,5 of 0-3,5"]
    with pytest.raises(ValidationError, match=r"asks for CPU 4, but this host lets it use CPUs 0-3") as err:
        check_cpus("a", [3, 4], "process", {0, 1, 2, 3})
    assert "lscpu" in err.value.fix
    with pytest.raises(ValidationError, match="CPU 1 is the CPU of the instance 'b'") as err:
        check_cpus("a", [0, 1], "process", {0, 1, 2}, others=[{"name": "c", "cpus": None}, {"name": "b", "cpus": [1, 2]}])
    assert "CPUs of its own" in err.value.fix
    assert check_cpus("a", [0], "process", {0, 1}, others=[{"name": "b", "cpus": [1]}]) == ["CPUs 0 of 0-1"]
    with pytest.raises(ValidationError, match="runs under systemd") as err:
        check_cpus("a", [0], "systemd", {0, 1})
    assert "CPUAffinity=" in err.value.fix


@pytest.mark.parametrize("cpus, match", [([-1], "negative"), ([1, 1], "twice"), (["x"], "list of CPU numbers"),
                                         ("0-3", "list of CPU numbers"), ("01", "list of CPU numbers")])
def test_bad_cpus_are_refused_by_the_spec(cpus, match):
    with pytest.raises(ValidationError, match=match):
        R.RuntimeSpec(name="a", runtime="vllm", port=8001, cpus=cpus)


def test_cpus_of_another_running_instance_are_refused_before_anything_stops(models_dir, monkeypatch):
    last = max(os.sched_getaffinity(0))
    a, fa = fake_processes(models_dir, monkeypatch, None, name="one", runtime="vllm", port=8001, command=["good"],
                           cpus=[last])
    a.ensure("started", "a")
    assert fa.started and R.instance_states(models_dir)["one"]["activation"]["process"]["cpus"] == [last]
    b, fb = fake_processes(models_dir, monkeypatch, (["good"], {}), name="two", runtime="vllm", port=8002,
                           command=["good"], cpus=[last])
    with pytest.raises(ValidationError, match=f"CPU {last} is the CPU of the instance 'one'"):
        b.ensure("started", "b")
    assert fb.stops == 0 and fb.started == []
    again, fagain = fake_processes(models_dir, monkeypatch, fa.running, name="one", runtime="vllm", port=8001,
                                   command=["good"], cpus=[last])
    assert again.ensure("started", "a")["changed"] is False and fagain.stops == 0
    moved, fmoved = fake_processes(models_dir, monkeypatch, fa.running, name="one", runtime="vllm", port=8001,
                                   command=["good"])
    assert moved.ensure("started", "a")["changed"] is True and fmoved.stops == 1, "leaving 'cpus' out restarts it unconfined"
    assert "cpus" not in R.instance_states(models_dir)["one"]["activation"]["process"]


class QuirkyNVML(FakeNVML):
    """The driver version as text, a device whose process list is refused, a failing shutdown."""

    def nvmlSystemGetDriverVersion(self):
        return "535.1"

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if h == 0:
            raise RuntimeError("NVML_ERROR_NO_PERMISSION")
        return super().nvmlDeviceGetComputeRunningProcesses(h)

    def nvmlShutdown(self):
        super().nvmlShutdown()
        raise RuntimeError("shutdown failed")


def test_probe_edges_text_driver_unreadable_processes_and_a_failing_shutdown():
    nv = QuirkyNVML([(8 * GIB, 6 * GIB, {5: GIB}), (8 * GIB, 7 * GIB, {6: 0, 7: None})])
    h, reason = G.probe(nv)
    assert reason == ""
    assert h.driver_version == "535.1" and nv.shutdowns == 1
    assert [(d.index, d.total, d.free) for d in h.devices] == [(0, 8 * GIB, 6 * GIB), (1, 8 * GIB, 7 * GIB)]
    assert h.devices[0].processes == {}, "a refused process list is unknown, not an error"
    assert h.devices[1].processes == {6: 0, 7: None}
    assert h.vram_of([6]) == 0, "a process known to use 0 bytes is a figure, not unknown"


class BrokenNVML(FakeNVML):
    def nvmlDeviceGetMemoryInfo(self, h):
        raise RuntimeError("GPU is lost")


def test_a_gpu_lost_while_reading_is_a_reason_and_nvml_is_shut_down():
    nv = BrokenNVML([(GIB, GIB, {})])
    found, reason = G.probe(nv)
    assert found is None and reason == "NVML failed while reading the GPUs (GPU is lost)" and nv.shutdowns == 1


def test_probe_without_the_package_names_it(monkeypatch):
    monkeypatch.setattr(G, "pynvml", None)
    found, reason = G.probe()
    assert found is None and reason.startswith("the Python package nvidia-ml-py (import pynvml) is not installed")


def test_probe_uses_the_installed_nvml_when_none_is_given(monkeypatch):
    monkeypatch.setattr(G, "pynvml", four_gpus())
    found, reason = G.probe()
    assert reason == "" and found.count == 4


def test_every_placement_refusal_says_what_to_do():
    h = host(four_gpus())
    sharer = {"name": "embed", "gpus": [2], "gpu_share": True, "utilization": 0.8}
    cases = [(("chat", [0], None, "no driver"), {}, "nvidia-ml-py"),
             (("chat", [1, 1], h), {}, "List each GPU index once"),
             (("chat", [4], h), {}, "as nvidia-smi lists them"),
             (("chat", [0, 1], h), {"tensor_parallel_size": 4}, "as many 'gpus' as tensor_parallel_size"),
             (("chat", [2], h), {"others": [dict(sharer, gpu_share=False)]}, "set gpu_share: true"),
             (("chat", [2], h), {"others": [sharer], "gpu_share": True, "utilization": 0.5},
              "Lower gpu_memory_utilization so that")]
    for args, kwargs, fix in cases:
        with pytest.raises(ValidationError) as err:
            check_placement(*args, **kwargs)
        assert fix in (err.value.fix or ""), (args, kwargs, err.value.fix)


def test_a_gpu_another_instance_shares_is_refused_unless_this_one_shares_too():
    h = host(four_gpus())
    sharer = {"name": "embed", "gpus": [2], "gpu_share": True, "utilization": 0.3}
    with pytest.raises(ValidationError, match="GPU 2 is held by the instance 'embed'"):
        check_placement("chat", [2], h, others=[sharer], utilization=0.5)
    assert len(check_placement("chat", [2], h, others=[sharer], utilization=0.5, gpu_share=True)) == 2


def test_shares_that_add_up_to_exactly_the_whole_gpu_fit():
    h = host(four_gpus(free=80))
    sharer = {"name": "embed", "gpus": [0], "gpu_share": True, "utilization": 0.25}
    assert len(check_placement("chat", [0], h, others=[sharer], utilization=0.75, gpu_share=True)) == 2
    with pytest.raises(ValidationError, match="would add up to 1.01"):
        check_placement("chat", [0], h, others=[sharer], utilization=0.76, gpu_share=True)


def test_a_host_whose_nvml_shows_no_gpu_says_so():
    empty = SimpleNamespace(count=0, driver_version="550.54.15", devices=[])
    with pytest.raises(ValidationError, match=r"asks for GPU 0, but this host has no GPU \(NVML, driver 550.54.15\)"):
        check_placement("chat", [0], empty)


def test_cpu_lists_read_as_ranges_and_single_cpus():
    assert check_cpus("a", [0, 2, 3, 7], "process", {0, 1, 2, 3, 4, 5, 6, 7}) == ["CPUs 0,2-3,7 of 0-7"]
    assert check_cpus("a", [4], "process", {0, 4, 5, 9}) == ["CPUs 4 of 0,4-5,9"]


def test_memory_boundaries_free_exactly_the_budget_and_weights_exactly_filling_it_fit():
    exact = FakeNVML([(80 * GIB, 40 * GIB, {})])
    assert len(check_placement("chat", [0], host(exact), utilization=0.5)) == 2, "free == budget fits"
    share = 10 ** 10 * (1 + 0.1)   # what 10 GB of weights take on one GPU with the margin
    filled = FakeNVML([(share, share, {})])
    assert len(check_placement("chat", [0], host(filled), utilization=1.0, weights_bytes=10 ** 10)) == 2


def test_a_weight_share_is_the_model_divided_over_the_tensor_parallel_gpus():
    h = host(four_gpus())
    with pytest.raises(ValidationError, match=r"GPU 0: the model's weight share 20.0 GiB \(\+10% margin: 22.0 GiB\)"):
        check_placement("chat", [0, 1], h, utilization=0.1, weights_bytes=40 * GIB)
    with pytest.raises(ValidationError) as err:
        check_placement("chat", [0, 1], h, utilization=0.1, weights_bytes=40 * GIB)
    assert "spread the model over more GPUs" in err.value.fix
    with pytest.raises(ValidationError) as err:
        check_placement("chat", [0], h)
    assert "Free the GPU" in err.value.fix


def test_an_own_process_whose_memory_nvml_does_not_know_frees_nothing():
    h = host(FakeNVML([(80 * GIB, 40 * GIB - 1, {500: None})]))
    with pytest.raises(ValidationError, match="GPU 0 has 40.0 GiB free"):
        check_placement("chat", [0], h, utilization=0.5, own_pids=[500])


# -- issue 20, round 3: the controller's pre-flight against the other instances and the model -------

def _on_gpus(models_dir, monkeypatch, name, port, gpus, running=None, **spec):
    c, fake = fake_processes(models_dir, monkeypatch, running, name=name, runtime="vllm", port=port,
                             command=["good"], gpus=gpus, **spec)
    c.nvml = four_gpus()
    return c, fake


def test_a_stopped_instances_gpu_is_free_for_another(models_dir, monkeypatch):
    chat, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [2], gpu_memory_utilization=0.5)
    chat.ensure("started", "a")
    chat, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [2], fake.running, gpu_memory_utilization=0.5)
    chat.ensure("stopped")
    coder, fake = _on_gpus(models_dir, monkeypatch, "coder", 8002, [2], gpu_memory_utilization=0.5)
    assert coder.ensure("started", "a")["changed"] is True and fake.started


def test_instances_that_share_a_gpu_add_up_their_memory_shares(models_dir, monkeypatch):
    chat, _fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [1], gpu_memory_utilization=0.5, gpu_share=True)
    chat.ensure("started", "a")
    greedy, fake = _on_gpus(models_dir, monkeypatch, "coder", 8002, [1], gpu_memory_utilization=0.6,
                            gpu_share=True)
    with pytest.raises(ValidationError, match=r"GPU 1 is shared with 'chat'; .* add up to 1\.10"):
        greedy.ensure("started", "a")
    assert fake.started == []
    fits, fake = _on_gpus(models_dir, monkeypatch, "coder", 8002, [1], gpu_memory_utilization=0.5, gpu_share=True)
    assert fits.ensure("started", "a")["changed"] is True
    alone, fake = _on_gpus(models_dir, monkeypatch, "third", 8003, [1], gpu_memory_utilization=0.1)
    with pytest.raises(ValidationError, match="GPU 1 is held by the instance 'chat', 'coder'"):
        alone.ensure("started", "a")


def test_a_restart_without_a_model_checks_the_weights_of_the_model_it_serves(models_dir, monkeypatch):
    manifest = Manifest(models_dir)
    manifest.upsert(dict(manifest.get("a", "local"), size_bytes=10 * GIB))
    chat, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], gpu_memory_utilization=0.5)
    res = chat.ensure("started", "a")
    assert res["preflight"][-1].endswith("(weights 11.0 GiB)")
    manifest.upsert(dict(manifest.get("a", "local"), size_bytes=50 * GIB))
    again, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], fake.running)
    with pytest.raises(ValidationError, match="GPU 0: the model's weight share 50.0 GiB"):
        again.ensure("restarted")
    assert fake.stops == 0


def test_tensor_parallel_needs_as_many_gpus_as_it_asks_for(models_dir, monkeypatch):
    c, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], tensor_parallel_size=2)
    with pytest.raises(ValidationError, match="tensor_parallel_size 2 needs 2 GPUs; the instance 'chat' has 1"):
        c.ensure("started", "a")
    assert fake.started == []


def test_the_memory_an_instance_itself_holds_counts_as_free_for_its_restart(models_dir, monkeypatch):
    chat, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], gpu_memory_utilization=0.8)
    chat.ensure("started", "a")
    again, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], fake.running, gpu_memory_utilization=0.8)
    again.nvml = four_gpus(free=10, procs={0: {4242: 60 * GIB}})
    fake.tree_pids = lambda: [4242]
    assert again.ensure("restarted")["changed"] is True and fake.stops == 1
    other, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], fake.running, gpu_memory_utilization=0.8)
    other.nvml = four_gpus(free=10, procs={0: {999: 60 * GIB}})
    fake.tree_pids = lambda: [4242]
    with pytest.raises(ValidationError, match="GPU 0 has 10.0 GiB free"):
        other.ensure("restarted")


def test_the_cpus_of_a_stopped_instance_are_free_for_another(models_dir, monkeypatch):
    last = max(os.sched_getaffinity(0))
    one, fake = fake_processes(models_dir, monkeypatch, None, name="one", runtime="vllm", port=8001, command=["good"],
                               cpus=[last])
    one.ensure("started", "a")
    one, fake = fake_processes(models_dir, monkeypatch, fake.running, name="one", runtime="vllm", port=8001,
                               command=["good"], cpus=[last])
    one.ensure("stopped")
    two, fake = fake_processes(models_dir, monkeypatch, None, name="two", runtime="vllm", port=8002, command=["good"],
                               cpus=[last])
    res = two.ensure("started", "a")
    assert res["changed"] is True and fake.started and res["preflight"]


def test_cpus_under_systemd_are_refused_by_the_controller(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    rig = SystemdRig(models_dir, str(tmp_path / "vllm.env"), cpus=[0])
    with pytest.raises(ValidationError, match="'cpus' confines a process-mode instance; 'vllm' runs under systemd"):
        rig.make().ensure("started", "a")
    assert rig.sysctl.active == "inactive"


def test_a_cpu_this_run_may_not_use_is_refused(models_dir, monkeypatch):
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")
    real = os.sched_getaffinity
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {allowed[0]} if pid == 0 else real(pid))
    c, fake = fake_processes(models_dir, monkeypatch, None, name="one", runtime="vllm", port=8001, command=["good"],
                             cpus=[allowed[1]])
    with pytest.raises(ValidationError, match=f"asks for CPU {allowed[1]}, but this host lets it use CPUs "
                                              f"{allowed[0]}"):
        c.ensure("started", "a")
    assert fake.started == []


def test_a_restart_checks_the_weights_of_its_own_model_not_another_of_its_provider(models_dir, monkeypatch):
    chat, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], gpu_memory_utilization=0.5)
    chat.ensure("started", "b")
    manifest = Manifest(models_dir)
    manifest.upsert(dict(manifest.get("b", "local"), size_bytes=50 * GIB))
    again, fake = _on_gpus(models_dir, monkeypatch, "chat", 8001, [0], fake.running, gpu_memory_utilization=0.5)
    with pytest.raises(ValidationError, match="GPU 0: the model's weight share 50.0 GiB"):
        again.ensure("restarted")
