# SPDX-License-Identifier: GPL-3.0-or-later
"""The data of runtime control: what an instance's options become (RuntimeSpec), how an activation
is read back and compared (Activation), and what a plan shows before anything changes (Plan)."""
from __future__ import annotations

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import Activation, Plan, RuntimeSpec


def test_a_named_instance_gets_its_template_unit_and_env_file_and_no_default_port():
    spec = RuntimeSpec(name="chat", runtime="vllm")
    assert spec.unit == "vllm@chat.service" and spec.env_file == "/etc/venom-models/vllm-chat.env"
    assert spec.port is None and spec.default_instance is False
    assert RuntimeSpec(name="chat", runtime="vllm", port="8001").port == 8001
    assert RuntimeSpec(name="embed", runtime="ollama").env_file is None
    assert RuntimeSpec(name="embed", runtime="ollama").unit == "ollama@embed.service"
    assert RuntimeSpec(name="vllm", port="8002").port == 8002 and RuntimeSpec(name="vllm").port == 8000
    assert RuntimeSpec(name="vllm", unit="my.service", env_file="/e").unit == "my.service"
    assert RuntimeSpec(name="vllm", env_file="").env_file == "", "an empty env_file stays: no file"


def test_the_instance_named_after_the_other_runtime_is_refused():
    with pytest.raises(ValidationError, match="'ollama' is the name of the other runtime") as err:
        RuntimeSpec(name="ollama", runtime="vllm")
    assert "use name: vllm" in err.value.fix


@pytest.mark.parametrize("value,ok", [(0, True), (0.0, True), (-0.1, False), (None, False)])
def test_timeouts_are_zero_or_more_seconds(value, ok):
    for key in ("health_timeout", "stop_timeout"):
        if ok:
            assert getattr(RuntimeSpec(name="vllm", **{key: value}), key) == value
        else:
            with pytest.raises(ValidationError, match=f"'{key}' must be zero or more seconds, not {value!r}"):
                RuntimeSpec(name="vllm", **{key: value})


def test_lists_and_values_are_normalised():
    spec = RuntimeSpec(name="vllm", command="/opt/v/python -m 'vllm x'", args=[1, "--y"], env={"N": 1},
                       gpus=["1", 0], cpus=[3, "1"])
    assert spec.command == ["/opt/v/python", "-m", "vllm x"] and spec.args == ["1", "--y"] and spec.env == {"N": "1"}
    assert spec.gpus == [1, 0] and spec.tensor_parallel_size == 2, "tensor parallel over the instance's GPUs"
    assert spec.cpus == [1, 3]
    assert RuntimeSpec(name="vllm", gpus=[0, 1], tensor_parallel_size=1).tensor_parallel_size == 1
    no_gpus = RuntimeSpec(name="vllm", gpus=[])
    assert no_gpus.gpus == [] and no_gpus.tensor_parallel_size is None
    assert RuntimeSpec(name="vllm", cpus=[]).cpus is None
    assert RuntimeSpec(name="ollama", gpus=[]).gpus == [], "an empty list is no placement, also for Ollama"


@pytest.mark.parametrize("field,value,message", [
    ("gpus", "01", "'gpus' must be a list of GPU indexes, not '01'"),
    ("gpus", b"0", "'gpus' must be a list of GPU indexes"),
    ("gpus", ["x"], "'gpus' must be a list of GPU indexes, not \\['x'\\]"),
    ("gpus", 3, "'gpus' must be a list of GPU indexes, not 3"),
    ("cpus", "0-3", "'cpus' must be a list of CPU numbers, not '0-3'"),
    ("cpus", [1, 1], "lists a CPU twice"),
    ("cpus", [-1], "has a negative number"),
])
def test_bad_placements_are_refused_naming_the_option(field, value, message):
    with pytest.raises(ValidationError, match=message) as err:
        RuntimeSpec(name="vllm", **{field: value})
    assert err.value.fix


def test_gpus_for_ollama_are_refused_with_the_fix():
    with pytest.raises(ValidationError, match="'gpus' places vLLM instances") as err:
        RuntimeSpec(name="ollama", gpus=[0])
    assert "CUDA_VISIBLE_DEVICES" in err.value.fix


def test_options_that_are_not_fields_are_ignored_and_a_command_string_is_split():
    spec = RuntimeSpec.from_options({"name": "vllm", "state": "started", "model": "m", "command": "a b",
                                     "secret_env": {"T": "s"}})
    assert spec.command == ["a", "b"] and spec.env == {"T": "s"}
    assert RuntimeSpec.from_options({"name": "vllm", "env": {}, "secret_env": {}}).env is None


def test_an_activation_is_read_back_from_its_record():
    assert Activation.from_dict(None) is None and Activation.from_dict(["x"]) is None
    act = Activation.from_dict({"model": "a", "provider": "local", "model_path": "/m/a", "served_model_name": "a",
                                "api_key_sha256": "d", "process": {"port": 1}, "gpus": [0], "flags": None,
                                "unknown": 1})
    assert act.as_dict() == {"model": "a", "provider": "local", "model_path": "/m/a", "served_model_name": "a",
                             "flags": [], "api_key_sha256": "d", "process": {"port": 1}, "gpus": [0]}
    flags = ["--max-model-len", "256"]
    assert Activation.from_dict({"flags": flags}).flags == flags and Activation.from_dict({"flags": flags}).flags \
        is not flags


def test_a_flag_is_read_in_both_spellings_and_a_trailing_flag_has_no_value():
    act = Activation(flags=["--a", "1", "--b=2=3", "--gpu-memory-utilization", "x", "--c"])
    assert act.flag("--a") == "1" and act.flag("--b") == "2=3" and act.flag("--c") is None and act.flag("--d") is None
    assert act.gpu_memory_utilization is None, "a value that is not a number"
    assert Activation(flags=["--gpu-memory-utilization=0.5"]).gpu_memory_utilization == 0.5
    assert Activation().gpu_memory_utilization is None
    assert Activation(flags=["--ab", "1"]).flag("--a") is None
    assert Activation(flags=["--a", "1"]).flag("--a") == "1", "the last flag and its value"


def _plan(state="started", running=True, **kw):
    current = Activation(model="a", gpus=[0], process={"cpus": [1]})
    desired = Activation(model="b", gpus=[1], process={"cpus": [2]})
    return Plan(name="vllm", state=state, mode="process", url="http://127.0.0.1:8000",
                before={"running": running, "healthy": running}, current=current, desired=desired,
                current_model="a", **kw)


def test_the_diff_shows_state_model_health_and_placement_before_and_after():
    assert _plan().diff() == {
        "before": {"state": "started", "model": "a", "healthy": True, "mode": "process", "gpus": [0], "cpus": [1]},
        "after": {"state": "started", "model": "b", "healthy": True, "mode": "process", "gpus": [1], "cpus": [2]}}
    stopped = _plan(state="stopped", running=False).diff()
    assert stopped["before"] == {"state": "stopped", "model": "a", "healthy": False, "mode": "process", "gpus": None,
                                 "cpus": None}
    assert stopped["after"] == {"state": "stopped", "model": "a", "healthy": False, "mode": "process", "gpus": None,
                                "cpus": None}


def test_the_planned_result_names_the_models_and_shows_preflight_only_when_there_was_one():
    res = _plan(actions=["activate", "restart"]).result()
    assert res["changed"] is True and res["model"] == "b" and res["previous_model"] == "a"
    assert res["state"] == "started" and res["name"] == "vllm" and res["url"] == "http://127.0.0.1:8000"
    assert res["recovered"] is False and res["rolled_back"] is False and res["actions"] == ["activate", "restart"]
    assert "preflight" not in res
    assert _plan(preflight=["GPU 0 fits"]).result()["preflight"] == ["GPU 0 fits"]
    assert _plan().result()["changed"] is False
    plan = _plan()
    plan.desired = None
    assert plan.model is None and plan.result()["diff"]["after"]["gpus"] is None
