# SPDX-License-Identifier: GPL-3.0-or-later
"""The runtime controller's decisions without a running server: options, flags, the vLLM
environment file, model checks, mode selection, plans, log excerpts. Starting, stopping,
activation and rollback on a real vLLM are in tests/integration/test_venom_runtime_vllm.py."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from ansible_collections.venom.models.plugins.module_utils.runtimes import backends
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.runtimes import controller as R
from ansible_collections.venom.models.plugins.module_utils.runtimes.engines import gpu_env
from ansible_collections.venom.models.plugins.module_utils.runtimes import spec as S
from ansible_collections.venom.models.plugins.module_utils.errors import (
    NotFoundError, RuntimeControlError, ValidationError)
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from tests.unit.plugins.module_utils.fake_clock import FakeClock


def ctl(models_dir, name="vllm", **kw):
    kw.setdefault("mode", "process")
    kw.setdefault("port", 8039)
    return R.RuntimeController(R.RuntimeSpec(name=name, models_dir=models_dir, **kw))


def test_spec_defaults_and_validation():
    spec = R.RuntimeSpec(name="ollama", command="/usr/bin/ollama serve")
    assert spec.unit == "ollama.service" and spec.port == 11434 and spec.command == ["/usr/bin/ollama", "serve"]
    assert spec.env_file is None
    assert R.RuntimeSpec(name="vllm").env_file == "/etc/venom-models/vllm.env"
    with pytest.raises(ValidationError, match="needs 'runtime'"):
        R.RuntimeSpec(name="tgi")
    with pytest.raises(ValidationError, match="Unknown runtime"):
        R.RuntimeSpec(name="tgi", runtime="tgi")
    with pytest.raises(ValidationError, match="Unknown mode"):
        R.RuntimeSpec(name="vllm", mode="docker")
    with pytest.raises(ValidationError, match="stop_timeout"):
        R.RuntimeSpec(name="vllm", stop_timeout=-1)
    with pytest.raises(ValidationError, match="'command' is empty"):
        R.RuntimeSpec(name="vllm", command=[])


def test_flags_keep_what_is_not_given(models_dir):
    base = R.Activation(flags=["--max-model-len", "256", "--gpu-memory-utilization", "0.5", "--enforce-eager"])
    assert ctl(models_dir).engine.flags(base) == base.flags
    assert ctl(models_dir, max_model_len=512).engine.flags(base) == [
        "--max-model-len", "512", "--gpu-memory-utilization", "0.5", "--enforce-eager"]
    assert ctl(models_dir, args=[]).engine.flags(base) == ["--max-model-len", "256", "--gpu-memory-utilization", "0.5"]
    assert ctl(models_dir, tensor_parallel_size=2, gpu_memory_utilization=0.9, args=["--dtype=float32"]).engine.flags(None) == [
        "--gpu-memory-utilization", "0.9", "--tensor-parallel-size", "2", "--dtype=float32"]


def test_model_checks_name_problem_and_fix(models_dir):
    c = ctl(models_dir)
    assert c.engine.model_entry("a")["name"] == "a"
    with pytest.raises(NotFoundError, match="'nope' is not installed") as err:
        c.engine.model_entry("nope")
    assert "venom_model" in err.value.fix
    with pytest.raises(ValidationError, match="provider ollama, which vllm cannot serve"):
        c.engine.model_entry("llama3.2:latest")
    with pytest.raises(ValidationError, match="is damaged, not installed"):
        c.engine.model_entry("damaged")
    with pytest.raises(NotFoundError, match="files of 'gone' are missing"):
        c.engine.model_entry("gone")
    with pytest.raises(ValidationError, match="meant for runtime ollama"):
        c.engine.model_entry("for-ollama")
    assert ctl(models_dir, name="ollama").engine.model_entry("llama3.2")["name"] == "llama3.2:latest"
    with pytest.raises(ValidationError, match="provider ollama, which vllm cannot serve"):
        c.engine.model_entry("library/llama3.2")


@pytest.mark.parametrize("spelling", ["LLAMA3.2", "library/llama3.2:latest", "registry.ollama.ai/library/Llama3.2"])
def test_the_ollama_runtime_finds_a_model_under_any_spelling_ollama_accepts(models_dir, spelling):
    assert ctl(models_dir, name="ollama").engine.model_entry(spelling)["name"] == "llama3.2:latest"


def test_served_name_follows_the_model_unless_given(models_dir):
    c = ctl(models_dir)
    act, _entry = c.desired_activation("a")
    assert act.served_model_name == "a" and act.model_path.endswith("/local/a")
    c.write_state(R.Activation(model="a", provider="local", model_path=act.model_path, served_model_name="alias"))
    assert ctl(models_dir).desired_activation("a")[0].served_model_name == "alias", "same model keeps its alias"
    assert ctl(models_dir).desired_activation("b")[0].served_model_name == "b", "a new model gets its own name"
    assert ctl(models_dir, served_model_name="x").desired_activation("b")[0].served_model_name == "x"
    assert ctl(models_dir).desired_activation(None)[0].model == "a", "no model: keep the current one"


def test_env_file_round_trip_mode_and_refusals(models_dir, tmp_path):
    env_file = str(tmp_path / "etc" / "vllm.env")
    c = ctl(models_dir, env_file=env_file, api_key="s3cret-key")
    act = R.Activation(model="a", model_path="/m/a", served_model_name="org/a", flags=["--max-model-len", "256"])
    assert c.engine.write_env_file(act) is True
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    assert c.engine.write_env_file(act) is False, "same content: no write"
    assert c.engine.read_env_file() == {"VLLM_MODEL": "/m/a", "VLLM_SERVED_MODEL_NAME": "org/a",
                                        "VLLM_EXTRA_ARGS": "--max-model-len 256", "VLLM_API_KEY": "s3cret-key"}
    expected = S.sha("s3cret-key", models_dir, create=True)  # a real run's desired activation made the key
    got = c.engine.env_file_activation()
    assert got.model_path == "/m/a" and got.flags == ["--max-model-len", "256"]
    assert got.api_key_sha256 == expected
    assert got.api_key_sha256 != hashlib.sha256(b"s3cret-key").hexdigest(), "a keyed digest, not a plain sha256"
    odd = R.Activation(model_path='/m/"x\\$HOME`', served_model_name="a'b", flags=["--x=$y"])
    c2 = ctl(models_dir, env_file=env_file, api_key='k$"`\\ey')
    assert c2.engine.write_env_file(odd) is True
    assert c2.engine.read_env_file() == {"VLLM_MODEL": '/m/"x\\$HOME`', "VLLM_SERVED_MODEL_NAME": "a'b",
                                         "VLLM_EXTRA_ARGS": "--x=$y", "VLLM_API_KEY": 'k$"`\\ey'}
    with pytest.raises(ValidationError, match="contains whitespace"):
        c.engine.write_env_file(R.Activation(model_path="/m/a", served_model_name="a", flags=["--chat-template", "a b"]))
    with pytest.raises(ValidationError, match=r"VLLM_API_KEY \(hidden\)") as err:
        ctl(models_dir, env_file=env_file, api_key="bad\nkey").engine.write_env_file(act)
    assert "bad" not in str(err.value)


def test_env_file_reader_accepts_what_an_operator_writes(models_dir, tmp_path):
    env_file = tmp_path / "vllm.env"
    env_file.write_text("# comment\n\nVLLM_MODEL='/srv/m'\n; other comment\nVLLM_SERVED_MODEL_NAME=m\nnonsense\n")
    c = ctl(models_dir, env_file=str(env_file))
    assert c.engine.read_env_file() == {"VLLM_MODEL": "/srv/m", "VLLM_SERVED_MODEL_NAME": "m"}
    assert ctl(models_dir, env_file=str(tmp_path / "absent")).engine.read_env_file() == {}


def test_auto_mode_without_systemd_is_process(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: False)
    assert ctl(models_dir, mode="auto").resolve_mode() == "process"
    with pytest.raises(RuntimeControlError, match="not the init system"):
        ctl(models_dir, mode="systemd").resolve_mode()


def test_auto_mode_uses_systemd_when_booted_and_the_unit_exists(models_dir, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)

    def runner(load_state):
        return lambda argv: (0, f"LoadState={load_state}\n", "")

    assert R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir),
                               runner=runner("loaded")).resolve_mode() == "systemd"
    assert R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir),
                               runner=runner("not-found")).resolve_mode() == "process"
    with pytest.raises(RuntimeControlError, match="unit vllm.service does not exist"):
        R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir, mode="systemd"),
                            runner=runner("not-found")).resolve_mode()


def test_plans_on_a_stopped_runtime(models_dir):
    plan = ctl(models_dir).make_plan("started", "a")
    assert plan.changed and plan.actions == ["activate", "start", "mark-active"]
    assert plan.diff()["before"]["state"] == "stopped" and plan.diff()["after"]["model"] == "a"
    assert ctl(models_dir).make_plan("stopped", None).changed is False
    with pytest.raises(RuntimeControlError, match="no model to serve"):
        ctl(models_dir).make_plan("started", None)
    with pytest.raises(ValidationError, match="cannot be combined with state: stopped"):
        ctl(models_dir).ensure("stopped", "a")


def test_check_mode_changes_nothing(models_dir):
    c = R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir, mode="process", port=8039),
                            check_mode=True)
    plan = c.ensure("started", "a")
    assert plan["changed"] is True
    assert not os.path.exists(c.pid_file) and not os.path.exists(c.state_file)
    assert not any(e.get("active") for e in Manifest(models_dir).models())


def test_check_mode_and_status_never_create_the_digest_key(models_dir):
    """The per-host key of the API key's and env's digests is made by a real run only."""
    key = os.path.join(models_dir, ".venom", "digest.key")
    c = R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=models_dir, mode="process", port=8039,
                                          api_key="s3cret-key", env={"HF_TOKEN": "hf_x"}), check_mode=True)
    plan = c.ensure("started", "a")
    assert plan["changed"] is True and plan["diff"]["after"]["model"] == "a"
    c.status()
    R.runtimes_status(models_dir)
    assert not os.path.exists(key), "check mode or a status read created the digest key"
    real = ctl(models_dir, api_key="s3cret-key", env={"HF_TOKEN": "hf_x"})
    act, _entry = real.desired_activation("a")
    assert os.path.exists(key) and stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert act.api_key_sha256 == S.sha("s3cret-key", models_dir) and act.process["env_sha256"].isalnum()


def test_a_stale_pid_file_is_a_crash_to_recover(models_dir):
    c = ctl(models_dir)
    os.makedirs(c.state_dir, exist_ok=True)
    c.write_state(R.Activation(model="a", provider="local", model_path=c.engine.model_entry("a")["local_path"],
                               served_model_name="a", process=c.engine.process_desc()))
    P.atomic_write_json(c.pid_file, {"kind": P.PID_FILE_KIND, "pid": os.getpid(), "pid_start": 1, "sid": 1})
    st = c.status()
    assert st["running"] is False and st["crashed"] is True
    plan = c.make_plan("started", None)
    assert plan.recovered is True and plan.actions[:1] == ["recover"] and "start" in plan.actions


def test_log_excerpt_is_the_last_start_only(models_dir):
    c = ctl(models_dir)
    os.makedirs(os.path.dirname(c.log_file), exist_ok=True)
    with open(c.log_file, "w", encoding="utf-8") as fh:
        fh.write(f"{P.LOG_START_MARK}vllm at t1: old\nold line\n{P.LOG_START_MARK}vllm at t2: new\nValueError: bad\n")
    c.mode = "process"
    assert c.backend.log_tail() == [f"{P.LOG_START_MARK}vllm at t2: new", "ValueError: bad"]


class FakeSystemctl:
    """systemctl for one unit as a small state machine (the real one runs in the fleet tier).
    ``on_start`` runs when the unit starts (there: read the env file as the unit would)."""

    def __init__(self, on_start=None):
        self.active = "inactive"
        self.calls = []
        self.on_start = on_start

    def __call__(self, argv):
        self.calls.append(argv[1:])
        verb = argv[1]
        if verb == "show":
            props = {"LoadState": "loaded", "ActiveState": self.active, "SubState": "running",
                     "MainPID": "4242" if self.active == "active" else "0", "ControlGroup": "", "NRestarts": "0"}
            wanted = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
            return 0, "".join(f"{p}={props.get(p, '')}\n" for p in wanted), ""
        if verb in ("start", "restart"):
            self.active = "active"
            if self.on_start:
                self.on_start()
        elif verb == "stop":
            self.active = "inactive"
        return 0, "", ""


class SystemdRig:
    """A controller factory on a systemd host whose unit serves what the env file said when it
    started; models whose path ends with one of ``broken`` never become healthy."""

    def __init__(self, models_dir, env_file, broken=(), **spec):
        self.models_dir, self.env_file, self.broken, self.spec = models_dir, env_file, broken, spec
        self.serving = {}
        self.reader = R.RuntimeController(R.RuntimeSpec(name="vllm", env_file=env_file))
        self.sysctl = FakeSystemctl(on_start=lambda: self.serving.update(path=self.reader.engine.read_env_file()["VLLM_MODEL"]))

    def _health(self, act, timeout=5.0):  # pylint: disable=unused-argument
        ok = (self.sysctl.active == "active" and act is not None and self.serving.get("path") == act.model_path
              and not act.model_path.endswith(self.broken or ("\0",)))
        return ok, "checked" if ok else "engine failed"

    def make(self):
        c = R.RuntimeController(R.RuntimeSpec(name="vllm", models_dir=self.models_dir, env_file=self.env_file,
                                              port=8039, **self.spec), runner=self.sysctl)
        c.engine.health = self._health
        return c


def test_systemd_activation_writes_the_env_file_and_restarts_the_unit(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    rig = SystemdRig(models_dir, str(tmp_path / "vllm.env"), max_model_len=256)
    make, sysctl, serving, reader = rig.make, rig.sysctl, rig.serving, rig.reader

    res = make().ensure("started", "a")
    assert res["mode"] == "systemd" and res["changed"] and "activate" in res["actions"]
    env = reader.engine.read_env_file()
    assert env["VLLM_MODEL"].endswith("/local/a") and env["VLLM_EXTRA_ARGS"] == "--max-model-len 256"
    assert ["start", "--", "vllm.service"] in sysctl.calls
    assert [e["name"] for e in Manifest(models_dir).models() if e.get("active")] == ["a"]

    assert make().ensure("started", "a")["changed"] is False, "same model on a healthy unit: nothing to do"

    res = make().ensure("started", "b")
    assert res["changed"] and res["previous_model"] == "a" and res["model"] == "b"
    assert ["stop", "--", "vllm.service"] in sysctl.calls
    assert serving["path"].endswith("/local/b")

    res = make().ensure("stopped")
    assert res["changed"] and sysctl.active == "inactive"
    assert make().ensure("stopped")["changed"] is False


def test_systemd_rollback_restores_the_previous_env_file(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    env_file = str(tmp_path / "vllm.env")
    rig = SystemdRig(models_dir, env_file, broken=("/b",), health_timeout=0.5)
    make, sysctl, serving = rig.make, rig.sysctl, rig.serving

    make().ensure("started", "a")
    before = open(env_file, encoding="utf-8").read()
    with pytest.raises(RuntimeControlError, match="rolled back: 'a' is serving again") as err:
        make().ensure("started", "b")
    assert err.value.details["rolled_back"] is True and err.value.details["failed_model"] == "b"
    assert "engine failed" in err.value.msg
    assert open(env_file, encoding="utf-8").read() == before
    assert serving["path"].endswith("/local/a") and sysctl.active == "active"
    assert [e["name"] for e in Manifest(models_dir).models() if e.get("active")] == ["a"]
    assert make().ensure("started", "a")["changed"] is False

    c = make()
    c.spec.rollback = False
    with pytest.raises(RuntimeControlError, match="Rollback is off, so the runtime is left stopped") as err:
        c.ensure("started", "b")
    assert err.value.details["rolled_back"] is False and sysctl.active == "inactive"


def test_from_state_finds_the_runtime_as_last_configured(models_dir):
    c = ctl(models_dir, port=8031, host="127.0.0.1")
    c.resolve_mode()
    c.write_state(R.Activation(model="a", provider="local", model_path="/m/a", served_model_name="a"))
    again = R.RuntimeController.from_state(models_dir, "vllm")
    assert again.spec.port == 8031 and again.spec.mode == "process" and again.url == "http://127.0.0.1:8031"
    st = again.status()
    assert st["mode"] == "process" and st["running"] is False and st["model"] == "a" and st["healthy"] is False
    fresh = R.RuntimeController.from_state(models_dir, "ollama")
    assert fresh.spec.port == 11434 and fresh.spec.mode == "auto"


class FakeProcesses(backends.ProcessBackend):
    """The process backend with the process table faked: ``start`` runs the real code up to
    ``proc.start_process`` (recorded in ``started``); the server is healthy only when started
    with the command ``good``. ``running`` is the (argv, env) of the server that runs now."""

    def __init__(self, spec, pid_file, log_file, running=None):
        super().__init__(spec, pid_file, log_file)
        self.running, self.started, self.stops = running, [], 0

    def status(self):
        return {"running": self.running is not None, "crashed": False, "pid": 4242 if self.running else None}

    def launch(self):
        return self.running

    def stop(self):
        self.stops += 1
        self.running = None
        return {"found": [4242]}

    def healthy(self, act, timeout=5.0):  # pylint: disable=unused-argument
        ok = self.running is not None and self.running[0][0] == "good"
        return ok, "answers" if ok else "engine failed"


def fake_processes(models_dir, monkeypatch, running, fake_health=True, **spec):
    """A controller whose process backend is FakeProcesses; ``fake_health``: the engine's health
    check is the fake's too (else the engine's own, e.g. against an Ollama stand-in)."""
    spec.setdefault("health_timeout", 0.3)
    c = ctl(models_dir, **spec)
    c.resolve_mode()
    fake = FakeProcesses(c.spec, c.pid_file, c.log_file, running)

    def start_process(argv, env=None, **_kw):
        fake.started.append((list(argv), dict(env)))
        fake.running = (list(argv), dict(env))
        return {"pid": 4242}

    monkeypatch.setattr(backends.proc, "start_process", start_process)
    c._backend = fake
    if fake_health:
        c.engine.health = fake.healthy
    return c, fake


def serve_a_with_good(models_dir, monkeypatch):
    """'a' served by the command 'good' with the secret env TOKEN=old (as a previous run left it)."""
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"], env={"TOKEN": "old"})
    c.ensure("started", "a")
    assert fake.started[-1][0][0] == "good" and fake.started[-1][1]["TOKEN"] == "old"
    return fake.running


def test_rollback_restores_the_previous_command_and_env(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"], env={"TOKEN": "new"})
    with pytest.raises(RuntimeControlError, match="rolled back: 'a' is serving again") as err:
        c.ensure("started", "b")
    assert err.value.details["rolled_back"] is True
    assert [argv[0] for argv, _env in fake.started] == ["bad", "good"]
    argv, env = fake.started[-1]
    assert env["TOKEN"] == "old", "the previous env, not the new one"
    assert argv[argv.index("--model") + 1].endswith("/local/a")
    state = c.read_state()["activation"]
    assert state["model"] == "a" and state["process"]["command"] == ["good"]
    assert "old" not in json.dumps(c.read_state()) and "new" not in json.dumps(c.read_state()["activation"]), \
        "env values only as a hash in the state file"


def test_rollback_without_the_previous_process_uses_the_recorded_command(models_dir, monkeypatch):
    serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"])  # the server had gone
    with pytest.raises(RuntimeControlError, match="rolled back"):
        c.ensure("started", "b")
    assert [argv[0] for argv, _env in fake.started] == ["bad", "good"]


def test_a_failed_rollback_stops_what_it_started_and_says_so(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"])
    fake.healthy = lambda act, timeout=5.0: (False, "engine failed")
    c.engine.health = fake.healthy
    with pytest.raises(RuntimeControlError, match="stopped what the rollback started") as err:
        c.ensure("started", "b")
    assert err.value.details["rolled_back"] is False
    assert len(fake.started) == 2 and fake.stops == 3 and fake.running is None, "old, new, rollback: all stopped"
    assert c.read_state()["activation"]["model"] == "a"


def test_the_launch_of_a_running_process_is_read_from_proc(models_dir, tmp_path):
    c = ctl(models_dir)
    b = backends.ProcessBackend(c.spec, str(tmp_path / "x.pid"), str(tmp_path / "x.log"))
    P.start_process(["sleep", "30"], pid_file=b.pid_file, log_file=b.log_file,
                    env=dict(os.environ, VENOM_SECRET="s3"), startup_check=0)
    try:
        argv, env = b.launch()
        assert argv == ["sleep", "30"] and env["VENOM_SECRET"] == "s3" and P.MARKER_ENV not in env
    finally:
        b.stop()
    assert b.launch() is None


def test_instances_get_their_own_unit_env_file_and_files(models_dir):
    spec = R.RuntimeSpec(name="chat", runtime="vllm", port=8001)
    assert spec.unit == "vllm@chat.service" and spec.env_file == "/etc/venom-models/vllm-chat.env"
    assert R.RuntimeSpec(name="vllm", runtime="vllm").unit == "vllm.service", "the runtime-named instance as before"
    assert R.RuntimeSpec(name="small", runtime="ollama", port=11500).env_file is None
    c = ctl(models_dir, name="chat", runtime="vllm", port=8001)
    assert [os.path.basename(p) for p in (c.pid_file, c.log_file, c.state_file)] == ["chat.pid", "chat.log", "chat.json"]
    with pytest.raises(ValidationError, match="'chat2' has no port yet"):
        R.RuntimeController(R.RuntimeSpec(name="chat2", runtime="vllm", models_dir=models_dir))
    c.resolve_mode()
    c.write_state(None)
    assert R.RuntimeController(R.RuntimeSpec(name="chat", runtime="vllm", models_dir=models_dir)).spec.port == 8001, \
        "a later run keeps the recorded port"


@pytest.mark.parametrize("name", ["../x", "a/b", "a.b", "vllm@x", "-x", "x" * 65, "chat\n", "ch\u0430t", ""])
def test_instance_names_are_validated(name):
    with pytest.raises(ValidationError, match="instance name"):
        R.RuntimeSpec(name=name, runtime="vllm", port=8001)


def test_the_other_runtimes_name_is_refused():
    with pytest.raises(ValidationError, match="name of the other runtime"):
        R.RuntimeSpec(name="ollama", runtime="vllm", port=8001)


def test_two_instances_serve_side_by_side_and_are_marked_in_the_manifest(models_dir, monkeypatch):
    a, fa = fake_processes(models_dir, monkeypatch, None, name="one", runtime="vllm", port=8001, command=["good"])
    a.ensure("started", "a")
    b, fb = fake_processes(models_dir, monkeypatch, None, name="two", runtime="vllm", port=8002, command=["good"])
    b.ensure("started", "a")
    entry = Manifest(models_dir).get("a", "local")
    assert entry["active"] is True and entry["active_instances"] == ["one", "two"]
    b2, _fb2 = fake_processes(models_dir, monkeypatch, fb.running, name="two", runtime="vllm", port=None,
                              command=["good"])
    b2.ensure("started", "b")
    entries = {e["name"]: e for e in Manifest(models_dir).models()}
    assert entries["a"]["active_instances"] == ["one"] and entries["a"]["active"] is True
    assert entries["b"]["active_instances"] == ["two"] and entries["b"]["active_runtime"] == "two"
    assert fa.running is not None and fa.stops == 0, "switching 'two' did not touch 'one'"
    assert {n: d["port"] for n, d in R.instance_states(models_dir).items()} == {"one": 8001, "two": 8002}


def test_a_port_of_another_instance_is_refused_before_anything_stops(models_dir, monkeypatch):
    a, _fa = fake_processes(models_dir, monkeypatch, None, name="one", runtime="vllm", port=8001, command=["good"])
    a.ensure("started", "a")
    b, fb = fake_processes(models_dir, monkeypatch, (["good"], {}), name="two", runtime="vllm", port=8001,
                           command=["good"])
    with pytest.raises(ValidationError, match="Port 8001 is the port of the runtime instance 'one'"):
        b.ensure("started", "b")
    assert fb.stops == 0 and fb.started == []
    a.ensure("stopped")
    b.ensure("started", "b")  # a stopped instance's port may be taken
    assert fb.started


def test_runtimes_status_is_keyed_by_instance(models_dir, monkeypatch):
    c, _f = fake_processes(models_dir, monkeypatch, None, name="embed", runtime="vllm", port=8005, command=["good"])
    c.ensure("started", "a")
    st = R.runtimes_status(models_dir)
    assert sorted(st) == ["embed", "ollama", "vllm"]
    assert st["embed"]["runtime"] == "vllm" and st["embed"]["port"] == 8005 and st["embed"]["model"] == "a"
    assert st["embed"]["configured"] is True and st["vllm"]["configured"] is False
    assert st["embed"]["log_file"].endswith("/embed.log")


def test_the_diff_shows_where_an_instance_runs_before_and_after():
    """A change of CPUs or GPUs alone shows in --diff as the placement it changes, not just a restart."""
    def act(cpus=None, gpus=None):
        return S.Activation(model="a", gpus=gpus, process={"command": ["x"], **({"cpus": cpus} if cpus else {})})

    before = {"running": True, "healthy": True}
    plan = S.Plan(name="vllm", state="started", mode="process", url="http://127.0.0.1:8000", before=before,
                  current=act(cpus=[0], gpus=[1]), desired=act(cpus=[1], gpus=[2, 3]), current_model="a",
                  actions=["restart"])
    diff = plan.diff()
    assert (diff["before"]["cpus"], diff["before"]["gpus"]) == ([0], [1])
    assert (diff["after"]["cpus"], diff["after"]["gpus"]) == ([1], [2, 3])
    stopping = S.Plan(name="vllm", state="stopped", mode="process", url="", before=before,
                      current=act(cpus=[0]), desired=None, current_model="a", actions=["stop"]).diff()
    assert stopping["before"]["cpus"] == [0] and stopping["after"]["cpus"] is None
    starting = S.Plan(name="vllm", state="started", mode="process", url="", before={"running": False, "healthy": False},
                      current=act(cpus=[0]), desired=act(), actions=["start"]).diff()
    assert starting["before"]["cpus"] is None, "a stopped runtime runs nowhere, whatever its last activation said"
    assert starting["after"] == {"state": "started", "model": "a", "healthy": True, "mode": "process",
                                 "gpus": None, "cpus": None}


# -- mutation round (issue 20): the vLLM engine's env file, argv and flags ------------------------

def test_the_env_file_keeps_the_api_key_it_has_when_none_is_given_and_says_who_manages_it(models_dir, tmp_path):
    env_file = str(tmp_path / "etc" / "vllm.env")
    act = R.Activation(model="a", model_path="/m/a", served_model_name="a", flags=[])
    ctl(models_dir, env_file=env_file, api_key="s3cret").engine.write_env_file(act)
    ctl(models_dir, env_file=env_file).engine.write_env_file(R.Activation(model_path="/m/b", served_model_name="b"))
    text = open(env_file, encoding="utf-8").read()
    assert text.startswith("# Managed by venom.models.venom_runtime")
    assert 'VLLM_MODEL="/m/b"' in text and 'VLLM_API_KEY="s3cret"' in text
    ctl(models_dir, env_file=env_file, api_key="").engine.write_env_file(act)
    assert "VLLM_API_KEY" not in open(env_file, encoding="utf-8").read(), "api_key '' removes it"


def test_an_env_file_without_a_model_or_with_a_spaced_flag_is_refused_with_the_fix(models_dir, tmp_path):
    c = ctl(models_dir, env_file=str(tmp_path / "vllm.env"))
    with pytest.raises(ValidationError, match="VLLM_MODEL has no value for the vLLM environment file") as err:
        c.engine.write_env_file(R.Activation(served_model_name="a"))
    assert err.value.fix == "Activate an installed model (set 'model')."
    with pytest.raises(ValidationError) as err:
        c.engine.write_env_file(R.Activation(model_path="/m/a", served_model_name="a", flags=["a b"]))
    assert err.value.fix == "Pass flags without spaces (--flag=value)."


def test_the_env_files_directory_is_made_world_readable_whatever_the_umask(models_dir, tmp_path):
    env_file = tmp_path / "etc" / "venom-models" / "vllm.env"
    old = os.umask(0)
    try:
        activation = R.Activation(model_path="/m/a", served_model_name="a")
        ctl(models_dir, env_file=str(env_file)).engine.write_env_file(activation)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(env_file.parent).st_mode) == 0o755


def test_an_env_file_that_cannot_be_read_says_so_and_asks_for_become(models_dir, tmp_path):
    (tmp_path / "vllm.env").mkdir()
    with pytest.raises(RuntimeControlError, match=r"Cannot read the runtime environment file .*vllm.env: Is a "
                                                  r"directory\.") as err:
        ctl(models_dir, env_file=str(tmp_path / "vllm.env")).engine.read_env_file()
    assert err.value.fix == "Run the task with become: true."


def test_an_env_file_activation_of_a_model_the_state_does_not_know_has_no_name(models_dir, tmp_path):
    env_file = tmp_path / "vllm.env"
    env_file.write_text('VLLM_MODEL="/srv/other"\n')
    c = ctl(models_dir, env_file=str(env_file))
    c.write_state(R.Activation(model="a", provider="local", model_path="/m/a", served_model_name="a"))
    act = c.engine.env_file_activation()
    assert act.model_path == "/srv/other" and act.model is None and act.provider is None and act.gpus is None
    assert act.served_model_name is None and act.flags == []


def test_a_vllm_process_needs_a_model_path(models_dir):
    c = ctl(models_dir)
    for act in (None, R.Activation(model="a")):
        with pytest.raises(RuntimeControlError, match="vLLM has no model to serve") as err:
            c.engine.process_argv(act)
        assert err.value.fix == "Set 'model' to an installed model."


def test_whole_number_options_are_passed_as_vllm_reads_them():
    assert ctl_flags(gpu_memory_utilization=1.0) == ["--gpu-memory-utilization", "1.0"]
    assert ctl_flags(max_model_len=4096) == ["--max-model-len", "4096"]


def ctl_flags(**spec):
    c = R.RuntimeController.__new__(R.RuntimeController)   # only the engine's flags: no state is read
    c.spec = R.RuntimeSpec(name="vllm", **spec)
    return R.ENGINES["vllm"](c).flags(None)


def test_the_vllm_command_line_carries_model_name_address_and_flags_and_the_key_only_in_the_env(models_dir):
    c = ctl(models_dir, command=["/opt/vllm/bin/python", "-m", "vllm"], host="0.0.0.0", port=8123, api_key="s3cret",
            env={"HF_HOME": "/srv/hf"})
    act = R.Activation(model="a", model_path="/m/a", served_model_name="org/a", flags=["--max-model-len", "256"])
    argv, env = c.engine.process_argv(act)
    assert argv == ["/opt/vllm/bin/python", "-m", "vllm", "--model", "/m/a", "--served-model-name", "org/a",
                    "--host", "0.0.0.0", "--port", "8123", "--max-model-len", "256"]
    assert env["VLLM_API_KEY"] == "s3cret" and env["HF_HOME"] == "/srv/hf" and "s3cret" not in argv


def test_the_process_description_records_the_address_and_only_a_digest_of_the_env(models_dir):
    c = ctl(models_dir, command=["srv"], host="127.0.0.2", port=8124, env={"B": "2", "A": "1"})
    desc = c.engine.process_desc()
    digest = S.sha(json.dumps({"A": "1", "B": "2"}), models_dir)
    assert desc == {"command": ["srv"], "host": "127.0.0.2", "port": 8124, "env_keys": ["A", "B"],
                    "env_sha256": digest} and digest
    assert ctl(models_dir, command=["srv"]).engine.process_desc()["env_sha256"] is None, "no env: no digest"


def test_a_first_model_that_fails_says_there_is_nothing_to_go_back_to(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"])
    with pytest.raises(RuntimeControlError, match="with 'a': .*There is no previous model to go back to, so the "
                                                  "runtime is left stopped") as err:
        c.ensure("started", "a")
    assert err.value.details["rolled_back"] is False and fake.running is None
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"], rollback=False)
    with pytest.raises(RuntimeControlError, match="with 'b': .*Rollback is off, so the runtime is left stopped"):
        c.ensure("started", "b")


def _logging_starts(c, fake, monkeypatch, healthy=("good",)):
    """Each start appends its own log section (start mark, then '<command> says hi'); a server is
    healthy only when its command is in ``healthy``."""
    def start_process(argv, env=None, **_kw):
        with open(c.log_file, "a", encoding="utf-8") as fh:
            fh.write(f"{P.LOG_START_MARK}{argv[0]}\n{argv[0]} says hi\n")
        fake.started.append((list(argv), dict(env)))
        fake.running = (list(argv), dict(env))
        return {"pid": 4242}
    monkeypatch.setattr(backends.proc, "start_process", start_process)
    fake.healthy = lambda act, timeout=5.0: ((fake.running is not None and fake.running[0][0] in healthy),
                                             "engine failed")
    c.engine.health = fake.healthy


def test_a_rollback_reports_both_models_the_fix_and_the_failed_starts_log(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"])
    _logging_starts(c, fake, monkeypatch)
    with pytest.raises(RuntimeControlError, match=r"Why 'b' failed: vLLM serving 'b' did not become healthy") as err:
        c.ensure("started", "b")
    details = err.value.details
    assert details["rolled_back"] is True and details["previous_model"] == "a" and details["failed_model"] == "b"
    assert details["log_tail"] == [f"{P.LOG_START_MARK}bad", "bad says hi"]
    assert "raise health_timeout" in err.value.fix


def test_a_failed_rollback_shows_the_rollbacks_log_and_what_to_do(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"])
    _logging_starts(c, fake, monkeypatch, healthy=())
    with pytest.raises(RuntimeControlError, match=r"Rolling back to 'a' failed too: vLLM serving 'a' \(rollback\) did "
                                                  r"not become healthy") as err:
        c.ensure("started", "b")
    assert err.value.details["log_tail"] == [f"{P.LOG_START_MARK}good", "good says hi"], "the rollback's own start"
    assert err.value.fix == "Read both log excerpts; fix the previous model or activate a working one."


def test_a_rollback_whose_stop_fails_says_so(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"])
    _logging_starts(c, fake, monkeypatch, healthy=())
    stops = []

    def stop():
        stops.append(1)
        if len(stops) == 3:   # the old server, the failed new one, then what the rollback started
            raise RuntimeControlError("port 8039 still in use")
        fake.running = None
        return {"found": [4242]}
    fake.stop = stop
    with pytest.raises(RuntimeControlError, match="Stopping what the rollback started failed as well: port 8039 still "
                                                  "in use"):
        c.ensure("started", "b")


def test_a_first_model_that_fails_keeps_its_log_and_fix(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"])
    _logging_starts(c, fake, monkeypatch)
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", "a")
    assert err.value.details["log_tail"] == [f"{P.LOG_START_MARK}bad", "bad says hi"]
    assert "raise health_timeout" in err.value.fix


def test_a_server_that_exits_while_loading_ends_the_wait_at_once(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"])
    c.spec.health_timeout = 30   # would wait that long for a server that does not run

    def start_process(argv, env=None, **_kw):   # the server dies at once: nothing runs
        fake.started.append((list(argv), dict(env)))
        return {"pid": 4242}
    monkeypatch.setattr(backends.proc, "start_process", start_process)
    with pytest.raises(RuntimeControlError, match=r"vLLM serving 'a' exited before it became healthy"):
        c.ensure("started", "a")


def _answers(c, fake, replies):
    """The server's health: ``replies`` one after the other, then healthy."""
    replies = list(replies)

    def health(act, timeout=5.0):  # pylint: disable=unused-argument
        return replies.pop(0) if replies else (True, "healthy")
    c.engine.health = fake.healthy = health


def test_a_running_server_still_loading_is_waited_for_not_restarted(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    _answers(c, fake, [(False, f"GET {c.url}/health: [Errno 111] Connection refused")])
    res = c.ensure("started", "a")
    assert res["actions"] == ["waited-until-healthy"] and res["changed"] is False and "health_seconds" in res
    assert fake.stops == 0 and fake.started == []


def test_a_running_server_serving_something_else_is_restarted_not_waited_for(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    _answers(c, fake, [(False, "/v1/models lists ['x'], not 'a'")])
    res = c.ensure("started", "a")
    assert "restart-unhealthy" in res["actions"] and fake.stops == 1 and len(fake.started) == 1


def test_a_failed_health_wait_shows_the_log_file_and_its_last_lines(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"])
    _logging_starts(c, fake, monkeypatch)
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", "a")
    assert f"Last lines of {c.log_file}:\n{P.LOG_START_MARK}bad\nbad says hi" in err.value.msg


def test_a_loading_server_whose_mark_is_wrong_is_waited_for_and_marked(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    Manifest(models_dir).mark_active("vllm", "b", "local")
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    _answers(c, fake, [(False, f"GET {c.url}/health: timed out")])
    res = c.ensure("started", "a")
    assert res["actions"] == ["mark-active", "waited-until-healthy"] and res["changed"] is True
    assert [e["name"] for e in Manifest(models_dir).models() if e.get("active")] == ["a"] and fake.stops == 0


def test_a_first_start_stops_nothing_and_a_switch_reports_its_stop(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    res = c.ensure("started", "a")
    assert fake.stops == 0 and "stop" not in res and isinstance(res["health_seconds"], float)
    c, fake = fake_processes(models_dir, monkeypatch, fake.running, command=["good"])
    res = c.ensure("started", "b")
    assert res["stop"] == {"found": [4242]} and fake.stops == 1


def test_a_crashed_runtime_is_cleaned_up_before_it_starts_again(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["good"])
    fake.status = lambda: {"running": False, "crashed": True, "pid": None}
    res = c.ensure("started", "a")
    assert res["actions"][0] == "recover" and res["recovered"] is True
    assert fake.stops == 1 and len(fake.started) == 1, "the leftovers stopped, then a fresh start"


def test_a_switch_on_a_running_server_plans_a_restart(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    assert c.ensure("started", "b")["actions"] == ["activate", "restart", "mark-active"]
    assert fake.stops == 1


def test_the_desired_activation_keeps_the_current_one_where_nothing_is_asked(models_dir):
    c = ctl(models_dir)
    act, entry = c.desired_activation("a")
    assert (act.model, act.provider, entry["name"]) == ("a", "local", "a")
    c.write_state(R.Activation(model="a", provider="local", model_path="/m/a", served_model_name="alias"))
    kept, entry = ctl(models_dir).desired_activation(None)
    assert (kept.model, kept.provider, kept.model_path, kept.served_model_name, entry) == (
        "a", "local", "/m/a", "alias", None)
    assert ctl(models_dir, served_model_name="new").desired_activation(None)[0].served_model_name == "new"


def test_a_run_that_leaves_options_out_keeps_the_current_flags_gpus_and_key(models_dir):
    c = ctl(models_dir)
    c.write_state(R.Activation(model="a", provider="local", model_path="/m/a", served_model_name="a",
                               flags=["--max-model-len", "256"], gpus=[1], api_key_sha256="digest"))
    for model in (None, "a"):
        act, _entry = ctl(models_dir).desired_activation(model)
        assert act.flags == ["--max-model-len", "256"] and act.gpus == [1] and act.api_key_sha256 == "digest", model
    act, _entry = ctl(models_dir, gpus=[]).desired_activation(None)
    assert act.gpus is None, "gpus: [] takes the instance off its GPUs"


def test_flags_between_the_managed_ones_and_a_dangling_one_are_kept(models_dir):
    base = R.Activation(flags=["--enforce-eager", "--dtype=float32", "--max-model-len", "256"])
    assert ctl(models_dir).engine.flags(base) == ["--max-model-len", "256", "--enforce-eager", "--dtype=float32"]
    dangling = R.Activation(flags=["--enforce-eager", "--max-model-len"])
    assert ctl(models_dir).engine.flags(dangling) == ["--enforce-eager", "--max-model-len"]


def test_a_model_of_another_runtime_or_without_its_files_says_what_to_do(models_dir):
    c = ctl(models_dir)
    with pytest.raises(ValidationError) as err:
        c.engine.model_entry("llama3.2:latest")
    assert err.value.fix == "Activate it on the runtime that serves ollama models."
    with pytest.raises(NotFoundError, match=r"The files of 'gone' are missing") as err:
        c.engine.model_entry("gone")
    assert err.value.fix == "Reinstall it with venom.models.venom_model (state: verified or present)."


def test_reading_the_env_files_activation_never_creates_the_digest_key(models_dir, tmp_path):
    env_file = tmp_path / "vllm.env"
    env_file.write_text('VLLM_MODEL="/srv/m"\nVLLM_API_KEY="s3cret"\n')
    act = ctl(models_dir, env_file=str(env_file)).engine.env_file_activation()
    assert act.model_path == "/srv/m" and act.api_key_sha256 and "s3cret" not in act.api_key_sha256
    assert not os.path.exists(os.path.join(models_dir, ".venom", "digest.key"))


# -- issue 20, round 3: the vLLM env file's GPUs and key, the command lines of both engines ---------

def test_the_env_file_puts_the_unit_on_its_gpus_and_reads_them_back(models_dir, tmp_path):
    env_file = tmp_path / "vllm.env"
    c = ctl(models_dir, env_file=str(env_file))
    path = c.engine.model_entry("a")["local_path"]
    act = R.Activation(model="a", provider="local", model_path=path, served_model_name="a", gpus=[1, 3])
    c.engine.write_env_file(act)
    env = c.engine.read_env_file()
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    c.write_state(act)
    got = c.engine.env_file_activation()
    assert got.gpus == [1, 3] and (got.model, got.provider) == ("a", "local"), "named from the state: same path"
    assert got.api_key_sha256 is None
    env_file.write_text('VLLM_MODEL="/m/x"\nCUDA_VISIBLE_DEVICES="0, 2,x,"\nVLLM_SERVED_MODEL_NAME=""\n')
    got = c.engine.env_file_activation()
    assert got.gpus == [0, 2] and got.served_model_name is None and got.flags == []
    env_file.write_text('VLLM_SERVED_MODEL_NAME="a"\n')
    assert c.engine.env_file_activation() is None, "no model in the file: no activation"
    assert ctl(models_dir, env_file=None).engine.read_env_file() == {}


def test_an_env_file_keeps_its_api_key_unless_one_is_given_and_an_empty_key_removes_it(models_dir, tmp_path):
    env_file = str(tmp_path / "vllm.env")
    act = R.Activation(model_path="/m/a", served_model_name="a")
    ctl(models_dir, env_file=env_file, api_key="k1").engine.write_env_file(act)
    other = R.Activation(model_path="/m/b", served_model_name="b")
    assert ctl(models_dir, env_file=env_file).engine.write_env_file(other) is True
    env = ctl(models_dir, env_file=env_file).engine.read_env_file()
    assert env["VLLM_API_KEY"] == "k1" and env["VLLM_MODEL"] == "/m/b"
    ctl(models_dir, env_file=env_file, api_key="").engine.write_env_file(other)
    assert "VLLM_API_KEY" not in ctl(models_dir, env_file=env_file).engine.read_env_file()


def test_an_env_file_needs_a_model_path_a_served_name_and_flags_that_are_not_empty(models_dir, tmp_path):
    c = ctl(models_dir, env_file=str(tmp_path / "vllm.env"))
    with pytest.raises(ValidationError, match="VLLM_MODEL has no value") as err:
        c.engine.write_env_file(R.Activation(served_model_name="a"))
    assert err.value.fix == "Activate an installed model (set 'model')."
    with pytest.raises(ValidationError, match="VLLM_SERVED_MODEL_NAME has no value"):
        c.engine.write_env_file(R.Activation(model_path="/m/a"))
    with pytest.raises(ValidationError, match="contains whitespace"):
        c.engine.write_env_file(R.Activation(model_path="/m/a", served_model_name="a", flags=["--x", ""]))
    assert not (tmp_path / "vllm.env").exists()
    c.engine.configure_unit(None)
    assert not (tmp_path / "vllm.env").exists(), "nothing to serve: the env file is left alone"
    c.engine.configure_unit(R.Activation(model_path="/m/a", served_model_name="a"))
    assert c.engine.read_env_file()["VLLM_MODEL"] == "/m/a"


def test_a_rollback_starts_the_previous_command_and_the_env_carries_the_gpus(models_dir):
    c = ctl(models_dir, command=["new"], env={"HF_HOME": "/srv/hf"})
    act = R.Activation(model_path="/m/a", served_model_name="a", gpus=[2], process={"command": ["old", "-m", "v"]})
    argv, env = c.engine.process_argv(act)
    assert argv[:3] == ["old", "-m", "v"] and argv[3:5] == ["--model", "/m/a"]
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env["HF_HOME"] == "/srv/hf" and env["PATH"] == os.environ["PATH"]
    assert "VLLM_API_KEY" not in env or env["VLLM_API_KEY"] == os.environ.get("VLLM_API_KEY")
    argv, _env = c.engine.process_argv(R.Activation(model_path="/m/a", served_model_name="a"))
    assert argv[0] == "new", "no recorded command: the configured one"


def test_ollama_serves_on_the_instances_address_with_its_env(models_dir):
    c = ctl(models_dir, name="small", runtime="ollama", port=11500, host="0.0.0.0", env={"OLLAMA_MODELS": "/srv/o"},
            command=["/usr/local/bin/ollama", "serve"])
    argv, env = c.engine.process_argv(None)
    assert argv == ["/usr/local/bin/ollama", "serve"] and env["OLLAMA_HOST"] == "0.0.0.0:11500"
    assert env["OLLAMA_MODELS"] == "/srv/o" and env["PATH"] == os.environ["PATH"]
    assert ctl(models_dir, name="ollama").engine.command() == ["ollama", "serve"], "the default command"


def test_gpus_are_passed_in_nvml_order_and_none_means_no_cuda_env():
    assert gpu_env([0, 2]) == {"CUDA_VISIBLE_DEVICES": "0,2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert gpu_env([]) == {} and gpu_env(None) == {}


def test_a_vllm_health_request_waits_5_s_for_an_answer_unless_told(models_dir, monkeypatch):
    asked = []

    def vllm_check(url, served, api_key, timeout):
        asked.append((url, served, api_key, timeout))
        return True, "healthy", []
    monkeypatch.setattr(R.health, "vllm_check", vllm_check)
    c = ctl(models_dir, api_key="k")
    act = R.Activation(model_path="/m/a", served_model_name="org/a")
    assert c.engine.health(act) == (True, "healthy") and c.engine.health(None, timeout=1.5) == (True, "healthy")
    assert asked == [(c.url, "org/a", "k", 5.0), (c.url, None, "k", 1.5)]


def test_a_starting_vllm_is_asked_about_its_health_every_200_ms_until_health_timeout(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"], health_timeout=2)
    _logging_starts(c, fake, monkeypatch)
    clock = FakeClock()
    monkeypatch.setattr(R.health, "time", clock)
    with pytest.raises(RuntimeControlError, match="did not become healthy within 2s") as err:
        c.ensure("started", "a")
    assert clock.sleeps and set(clock.sleeps[:-1]) == {0.2}
    assert err.value.msg.count(f"Last lines of {c.log_file}:") == 1


def test_a_failed_server_whose_stop_fails_is_named_in_the_rollbacks_message(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"])
    stops = []

    def stop():
        stops.append(1)
        fake.running = None
        if len(stops) == 2:   # the old server stopped; the failed new one does not
            raise RuntimeControlError("port 8039 still in use.")
        return {"found": [4242]}
    fake.stop = stop
    with pytest.raises(RuntimeControlError, match="rolled back") as err:
        c.ensure("started", "b")
    assert "Why 'b' failed: vLLM serving 'b' did not become healthy" in err.value.msg
    assert "Stopping the failed server also failed: port 8039 still in use." in err.value.msg
    assert err.value.details["rolled_back"] is True and fake.running[0][0] == "good"


def test_a_restart_of_the_same_model_that_fails_has_nothing_to_roll_back_to(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    c.engine.health = lambda act, timeout=5.0: (False, "engine failed")
    with pytest.raises(RuntimeControlError, match="There is no previous model to go back to, so the runtime is "
                                                  "left stopped") as err:
        c.ensure("restarted")
    assert err.value.details["rolled_back"] is False and fake.running is None and len(fake.started) == 1
    assert c.read_state()["activation"]["model"] == "a", "the activation it had is kept"


def test_a_rollback_to_a_model_known_only_by_its_path_names_the_path(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["bad"])
    doc = c.read_state()
    act = R.Activation.from_dict(doc["activation"])
    act.model = act.provider = None
    c.write_state(act)
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", "b")
    assert f"rolled back: '{act.model_path}' is serving again" in err.value.msg
    assert err.value.details["previous_model"] is None and err.value.details["failed_model"] == "b"
    assert fake.running[0][0] == "good"


def test_a_loading_server_that_never_answers_is_restarted_after_the_wait(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    monkeypatch.setattr(R.health, "time", FakeClock())
    c.engine.health = lambda act, timeout=5.0: (fake.stops > 0, f"GET {c.url}/health: [Errno 111] Connection refused")
    res = c.ensure("started", "a")
    assert res["actions"] == ["restart-unhealthy"] and res["changed"] is True
    assert fake.stops == 1 and len(fake.started) == 1 and "stop" in res


def test_a_server_running_without_a_recorded_activation_is_restarted_with_the_model(models_dir, monkeypatch):
    c, fake = fake_processes(models_dir, monkeypatch, (["good"], {}), command=["good"])
    res = c.ensure("started", "a")
    assert res["actions"] == ["activate", "restart", "mark-active"] and fake.stops == 1 and len(fake.started) == 1
    assert c.read_state()["activation"]["model"] == "a"


def test_a_systemd_unit_without_a_model_yet_is_only_started(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    c = SystemdRig(models_dir, str(tmp_path / "vllm.env")).make()
    plan = c.make_plan("started", None)
    assert plan.actions == ["start"] and plan.desired is None
    act, _entry = c.desired_activation("a")
    assert act.process is None, "systemd mode: the unit's command line is not recorded"


def test_the_env_file_is_utf8_whatever_the_locale(models_dir, tmp_path):
    """A model path or served name with non-ASCII letters, written and read back by a run under a
    plain ASCII locale (LC_ALL=C without Python's UTF-8 mode)."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    import ansible_collections  # pylint: disable=import-outside-toplevel
    code = ("import sys\n"
            "from ansible_collections.venom.models.plugins.module_utils.runtimes import controller as R\n"
            "c = R.RuntimeController(R.RuntimeSpec(name='vllm', models_dir=sys.argv[1], mode='process', port=8039,\n"
            "                                      env_file=sys.argv[2]))\n"
            "act = R.Activation(model_path='/srv/mod\\u00e8les/a', served_model_name='caf\\u00e9')\n"
            "print(c.engine.write_env_file(act), c.engine.write_env_file(act))\n"
            "env = c.engine.read_env_file()\n"
            "print(env['VLLM_MODEL'] == '/srv/mod\\u00e8les/a', env['VLLM_SERVED_MODEL_NAME'] == 'caf\\u00e9')\n")
    env = dict(os.environ, LC_ALL="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0",
               PYTHONPATH=os.path.dirname(list(ansible_collections.__path__)[0]))
    env_file = tmp_path / "vllm.env"
    out = subprocess.run([sys.executable, "-c", code, models_dir, str(env_file)], capture_output=True, text=True,
                         env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "True", "True"], "written once, then found unchanged; read back"
    assert "/srv/modèles/a" in env_file.read_text(encoding="utf-8")


def test_a_systemd_unit_started_without_a_model_that_fails_says_so_and_is_left_stopped(
        models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    monkeypatch.setattr(R.health, "time", FakeClock())
    rig = SystemdRig(models_dir, str(tmp_path / "vllm.env"), health_timeout=1)
    rig.sysctl.on_start = None   # the unit starts, with nothing to serve
    with pytest.raises(RuntimeControlError) as err:
        rig.make().ensure("started")
    assert err.value.msg.startswith("vLLM did not become healthy with '?': vLLM serving '?' did not become healthy")
    assert err.value.msg.endswith("There is no previous model to go back to, so the runtime is left stopped.")
    assert err.value.details["rolled_back"] is False and rig.sysctl.active == "inactive"


def test_a_healthy_server_whose_mark_is_wrong_is_only_marked(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    Manifest(models_dir).mark_active("vllm", "b", "local")
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    res = c.ensure("started", "a")
    assert res["actions"] == ["mark-active"] and res["changed"] is True
    assert fake.stops == 0 and fake.started == []
    assert [e["name"] for e in Manifest(models_dir).models() if e.get("active")] == ["a"]


def test_a_systemd_unit_without_a_model_that_answers_is_started_and_marks_nothing(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    rig = SystemdRig(models_dir, str(tmp_path / "vllm.env"))
    rig.sysctl.on_start = None
    c = rig.make()
    c.engine.health = lambda act, timeout=5.0: (rig.sysctl.active == "active", "answers")
    res = c.ensure("started")
    assert res["actions"] == ["start"] and rig.sysctl.active == "active" and "health_seconds" in res
    assert not any(e.get("active") for e in Manifest(models_dir).models())


def test_the_wait_for_a_loading_server_checks_the_activation_it_should_serve(models_dir, monkeypatch):
    running = serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, running, command=["good"], env={"TOKEN": "old"})
    monkeypatch.setattr(R.health, "time", FakeClock())
    asked = []

    def health(act, timeout=5.0):  # pylint: disable=unused-argument
        asked.append(act)
        if len(asked) == 1:
            return False, f"GET {c.url}/health: [Errno 111] Connection refused"
        return (act is not None and act.model == "a"), "serves a"
    c.engine.health = fake.healthy = health
    res = c.ensure("started", "a")
    assert res["actions"] == ["waited-until-healthy"] and fake.stops == 0
    assert all(act is not None and act.model == "a" for act in asked[1:])


def test_a_crash_recovery_counts_even_when_the_new_start_fails(models_dir, monkeypatch):
    serve_a_with_good(models_dir, monkeypatch)
    c, fake = fake_processes(models_dir, monkeypatch, None, command=["bad"], rollback=False)
    fake.status = lambda: {"running": False, "crashed": True, "pid": None}
    with pytest.raises(RuntimeControlError, match="left stopped"):
        c.ensure("restarted")
    doc = c.read_state()
    assert doc["restarts"] == 1 and doc["activation"]["model"] == "a"


def test_a_failed_first_start_under_systemd_still_records_the_instance(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    monkeypatch.setattr(R.health, "time", FakeClock())
    rig = SystemdRig(models_dir, str(tmp_path / "vllm.env"), health_timeout=1)
    rig.sysctl.on_start = None
    c = rig.make()
    with pytest.raises(RuntimeControlError):
        c.ensure("started")
    doc = c.read_state()
    assert doc["mode"] == "systemd" and doc["activation"] is None and doc["unit"] == "vllm.service"
