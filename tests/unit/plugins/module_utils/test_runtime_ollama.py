# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama runtime's activation without an Ollama: the server keeps running, a new model is
preloaded and must show in /api/ps before the previous one is unloaded; a failed load leaves the
previous model active. The Ollama API is a stand-in that keeps what is loaded; the server process
is the faked process backend of test_runtime.py. A real Ollama is in the integration tier."""
from __future__ import annotations

import os

import pytest

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError
from ansible_collections.venom.models.plugins.module_utils.runtimes import backends
from ansible_collections.venom.models.plugins.module_utils.runtimes import controller as R
from ansible_collections.venom.models.plugins.module_utils.runtimes import engines as E
from ansible_collections.venom.models.plugins.module_utils.runtimes import health as H
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as P
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest, new_entry

from tests.unit.plugins.module_utils.fake_clock import FakeClock
from tests.unit.plugins.module_utils.test_runtime import fake_processes

LLAMA, QWEN = "llama3.2:latest", "qwen2:latest"


class Server:
    """What the stand-in Ollama knows: up or not, the loaded models, models that fail to load."""

    def __init__(self):
        self.up, self.loaded, self.fail_load, self.fail_unload = True, [], set(), False
        self.calls, self.clients = [], []


def fake_client(server):
    class FakeOllamaClient:
        def __init__(self, url, timeout=5.0, error=None):
            server.clients.append((url, timeout, error))

        def version(self):
            if not server.up:
                raise RuntimeControlError("Ollama cannot be reached")
            return "0.5.1"

        def loaded(self):
            if not server.up:
                raise RuntimeControlError("Ollama cannot be reached")
            return list(server.loaded)

        def keep_alive(self, model, keep_alive, timeout=None):
            server.calls.append((model, keep_alive, timeout))
            if keep_alive == 0:
                if server.fail_unload:
                    raise RuntimeControlError("unload refused")
                server.loaded = [m for m in server.loaded if m != model]
            elif model not in server.fail_load and model not in server.loaded:
                server.loaded.append(model)
    return FakeOllamaClient


@pytest.fixture
def rig(models_dir, monkeypatch):
    """make(running=..., **spec) -> (controller, fake process backend); the shared Ollama stand-in."""
    Manifest(models_dir).upsert(new_entry(QWEN, "ollama", runtime="ollama"))
    server = Server()
    monkeypatch.setattr(E, "OllamaClient", fake_client(server))
    warnings = []

    def make(running=None, **spec):
        c, fake = fake_processes(models_dir, monkeypatch, running, fake_health=False, name="ollama", **spec)
        c.warn = warnings.append
        return c, fake
    make.server, make.warnings, make.models_dir = server, warnings, models_dir
    return make


def _marked(models_dir):
    return [e["name"] for e in Manifest(models_dir).models() if e.get("active")]


def serving_llama(rig):
    c, fake = rig()
    res = c.ensure("started", LLAMA)
    return c, fake, res


def test_a_start_runs_ollama_serve_on_the_instances_address_then_preloads_the_model(rig):
    c, fake, res = serving_llama(rig)
    assert res["changed"] and res["actions"] == ["activate", "start"] and "health_seconds" in res
    argv, env = fake.started[0]
    assert argv == ["ollama", "serve"] and env["OLLAMA_HOST"] == "127.0.0.1:8039"
    assert rig.server.calls == [(LLAMA, -1, 5.0)], "loaded with keep_alive -1 (kept), at least 5 s to answer"
    assert rig.server.loaded == [LLAMA] and _marked(rig.models_dir) == [LLAMA]
    act = c.read_state()["activation"]
    assert act["model"] == LLAMA and act["provider"] == "ollama" and act["process"]["command"] == ["ollama", "serve"]
    assert (c.url, 5.0, RuntimeControlError) in rig.server.clients


def test_switching_models_preloads_the_new_one_then_unloads_the_previous_without_a_restart(rig):
    c, fake, _res = serving_llama(rig)
    c, fake = rig(fake.running)
    res = c.ensure("started", QWEN)
    assert res["changed"] and res["actions"] == ["activate"] and res["previous_model"] == LLAMA
    assert rig.server.calls[-2:] == [(QWEN, -1, 5.0), (LLAMA, 0, 60)]
    assert rig.server.loaded == [QWEN] and _marked(rig.models_dir) == [QWEN] and fake.started == []
    again, fake = rig(fake.running)
    assert again.ensure("started", QWEN)["changed"] is False, "the same model, loaded and healthy"


def test_a_model_that_is_not_loaded_any_more_is_loaded_again(rig):
    c, fake, _res = serving_llama(rig)
    rig.server.loaded = []   # Ollama unloaded it (its keep_alive ran out)
    c, fake = rig(fake.running)
    res = c.ensure("started", LLAMA)
    assert res["actions"] == ["activate"] and rig.server.loaded == [LLAMA]
    assert rig.server.calls[-1] == (LLAMA, -1, 5.0), "the model it still serves is not unloaded"


def test_a_model_that_does_not_load_leaves_the_previous_one_active(rig):
    c, fake, _res = serving_llama(rig)
    rig.server.fail_load = {QWEN}
    c, fake = rig(fake.running)
    with pytest.raises(RuntimeControlError, match=rf"Activating '{QWEN}' on Ollama failed: Ollama model {QWEN} did "
                                                  rf"not become healthy.* Rolled back: '{LLAMA}' stays the active model"
                       ) as err:
        c.ensure("started", QWEN)
    assert err.value.details["rolled_back"] is True and err.value.details["previous_model"] == LLAMA
    assert rig.server.loaded == [LLAMA] and _marked(rig.models_dir) == [LLAMA]


def test_a_previous_model_that_was_unloaded_is_loaded_again_after_a_failed_activation(rig):
    c, fake, _res = serving_llama(rig)
    rig.server.fail_load = {QWEN}
    rig.server.loaded = []
    c, fake = rig(fake.running)
    with pytest.raises(RuntimeControlError, match="Rolled back") as err:
        c.ensure("started", QWEN)
    assert err.value.details["rolled_back"] is True and rig.server.loaded == [LLAMA]
    rig.server.fail_load = {QWEN, LLAMA}
    rig.server.loaded = []
    c, fake = rig(fake.running)
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", QWEN)
    assert err.value.details["rolled_back"] is False and "Rolled back" not in err.value.msg


def test_a_first_model_that_does_not_load_has_nothing_to_roll_back_to(rig):
    rig.server.fail_load = {LLAMA}
    c, fake = rig()
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", LLAMA)
    assert err.value.details["rolled_back"] is False and err.value.details["previous_model"] is None
    assert fake.running is not None, "the server itself stays up"


def test_a_previous_model_that_cannot_be_unloaded_is_a_warning(rig):
    c, fake, _res = serving_llama(rig)
    rig.server.fail_unload = True
    c, fake = rig(fake.running)
    assert c.ensure("started", QWEN)["changed"]
    assert rig.warnings and LLAMA in rig.warnings[-1] and "unload refused" in rig.warnings[-1]


def test_a_server_that_does_not_answer_is_restarted_and_its_model_loaded_again(rig):
    c, fake, _res = serving_llama(rig)
    rig.server.up = False
    c, fake = rig(fake.running)
    plan = c.make_plan("started", LLAMA)
    assert plan.actions == ["activate", "restart-unhealthy"]
    rig.server.up = True
    rig.server.loaded = []
    res = c._apply(plan, plan.result())
    assert fake.stops == 1 and len(fake.started) == 1 and rig.server.loaded == [LLAMA]
    assert "health_seconds" in res


def test_a_changed_command_restarts_the_server_and_the_model_stays(rig):
    c, fake, _res = serving_llama(rig)
    c, fake = rig(fake.running, command=["ollama", "serve", "--verbose"])
    res = c.ensure("started", LLAMA)
    assert "restart" in res["actions"] and fake.stops == 1
    assert fake.started[-1][0] == ["ollama", "serve", "--verbose"]
    assert rig.server.loaded == [LLAMA]
    assert rig(fake.running, command=["ollama", "serve", "--verbose"])[0].ensure("started", LLAMA)["changed"] is False


def test_a_restart_without_a_model_loads_the_marked_one_again(rig):
    c, fake, _res = serving_llama(rig)
    rig.server.loaded = []
    c, fake = rig(fake.running)
    res = c.ensure("restarted")
    assert "restart" in res["actions"] and fake.stops == 1 and rig.server.loaded == [LLAMA]
    assert c.read_state()["activation"]["model"] == LLAMA, "the model it serves is kept"
    assert c.engine.current_model(None, {"name": "x"}) == "x" and c.engine.current_model(None, None) is None


def test_the_ollama_health_asks_for_the_activations_model(rig):
    c, _fake = rig()
    rig.server.loaded = [LLAMA]
    assert c.engine.health(E.Activation(model=LLAMA)) == (True, "healthy (Ollama 0.5.1)")
    assert c.engine.health(E.Activation(model=QWEN))[0] is False
    assert c.engine.health(None) == (True, "healthy (Ollama 0.5.1)")
    assert (c.url, 5.0, RuntimeControlError) in rig.server.clients
    c.engine.health(None, timeout=2.5)
    assert rig.server.clients[-1][1] == 2.5
    rig.server.up = False
    assert c.engine.server_healthy({}) is False and c.engine.loaded(LLAMA) is False
    assert c.engine.restarts_for(None) is False


# -- issue 20, round 3: Ollama's plan, its waits and its restart paths ------------------------------

def test_a_slow_ollama_gets_its_health_timeout_to_load_and_at_most_30_s_to_show_the_model(rig, monkeypatch):
    waits = []
    real = E.health.wait_ready

    def wait_ready(check, timeout, what, **kw):
        waits.append((what, timeout))
        return real(check, timeout, what, **kw)
    monkeypatch.setattr(E.health, "wait_ready", wait_ready)
    c, _fake = rig(health_timeout=45)
    c.ensure("started", LLAMA)
    assert rig.server.calls == [(LLAMA, -1, 45)], "a load may take the health timeout, when longer than 5 s"
    assert (f"Ollama model {LLAMA}", 30.0) in waits and ("Ollama", 45) in waits


def test_an_ollama_without_a_model_asked_for_keeps_the_one_it_serves(rig):
    c, fake, _res = serving_llama(rig)
    c, fake = rig(fake.running)
    act, entry = c.desired_activation(None)
    assert act.model == LLAMA and act.provider == "ollama" and entry is None
    assert act.process["command"] == ["ollama", "serve"]
    fresh, _fake = rig()
    fresh.write_state(None)
    act, _entry = fresh.desired_activation(None)
    assert act.model is None and act.provider is None
    assert fresh.make_plan("started", None).actions == ["start"], "a server without a model is started"


def test_an_unhealthy_ollama_or_one_that_lost_the_model_activates_it_again(rig):
    c, fake, _res = serving_llama(rig)
    c, fake = rig(fake.running)
    plan = c.make_plan("started", LLAMA)
    assert plan.actions == []
    rig.server.loaded = []
    assert c.make_plan("started", LLAMA).actions == ["activate"]
    rig.server.loaded = [LLAMA]
    c.engine.health = lambda act, timeout=5.0: (False, "slow")
    assert c.make_plan("started", LLAMA).actions[0] == "activate", "not healthy: activated again"


def test_a_crashed_ollama_is_cleaned_up_started_and_its_model_loaded_again(rig):
    _c, fake, _res = serving_llama(rig)
    rig.server.loaded = []
    c, fake = rig(None)
    fake.status = lambda: {"running": False, "crashed": True, "pid": None}
    res = c.ensure("started")
    assert res["actions"][:1] == ["recover"] and fake.stops == 1 and len(fake.started) == 1
    assert rig.server.loaded == [LLAMA] and "health_seconds" in res


def test_a_changed_env_of_a_stopped_ollama_only_starts_it(rig):
    _c, fake, _res = serving_llama(rig)
    c, fake = rig(None, env={"OLLAMA_DEBUG": "1"})
    res = c.ensure("started", LLAMA)
    assert "restart" not in res["actions"] and "start" in res["actions"] and fake.stops == 0
    assert fake.started[0][1]["OLLAMA_DEBUG"] == "1"


def _start_logging(c, fake, monkeypatch, runs=True):
    """The server's start writes its log section; ``runs``: it keeps running (else it exits at once)."""
    def start_process(argv, env=None, **_kw):
        with open(c.log_file, "a", encoding="utf-8") as fh:
            fh.write(f"{P.LOG_START_MARK}ollama\nError: listen tcp: address already in use\n")
        fake.started.append((list(argv), dict(env)))
        fake.running = (list(argv), dict(env)) if runs else None
        return {"pid": 4242}
    monkeypatch.setattr(backends.proc, "start_process", start_process)


def test_an_ollama_that_never_answers_fails_its_start_with_its_log_asked_every_200_ms(rig, monkeypatch):
    rig.server.up = False
    c, fake = rig(health_timeout=1)
    _start_logging(c, fake, monkeypatch)
    clock = FakeClock()
    monkeypatch.setattr(H, "time", clock)
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", LLAMA)
    assert err.value.msg.startswith("Ollama did not become healthy within 1s")
    assert err.value.msg.endswith(f"Last lines of {c.log_file}:\n{P.LOG_START_MARK}ollama\n"
                                  "Error: listen tcp: address already in use")
    assert clock.sleeps and set(clock.sleeps[:-1]) == {E.HEALTH_INTERVAL} and E.HEALTH_INTERVAL == 0.2


def test_an_ollama_that_exits_while_starting_ends_the_wait_at_once(rig, monkeypatch):
    rig.server.up = False
    c, fake = rig(health_timeout=30)
    _start_logging(c, fake, monkeypatch, runs=False)
    clock = FakeClock()
    monkeypatch.setattr(H, "time", clock)
    with pytest.raises(RuntimeControlError, match="Ollama exited before it became healthy") as err:
        c.ensure("started", LLAMA)
    assert clock.sleeps == [] and err.value.details["log_tail"][-1] == "Error: listen tcp: address already in use"


def test_an_ollama_recorded_without_its_command_line_is_not_restarted_for_it(rig):
    c, fake, _res = serving_llama(rig)
    act = E.Activation.from_dict(c.read_state()["activation"])
    act.process = None   # as a run in systemd mode, or before process descriptions, recorded it
    c.write_state(act)
    c, fake = rig(fake.running, command=["ollama", "serve", "--verbose"])
    res = c.ensure("started", LLAMA)
    assert "restart" not in res["actions"] and fake.stops == 0 and fake.started == []


def test_a_failed_ollama_activation_is_a_failed_operation_and_the_state_keeps_the_previous_model(rig):
    c, fake, _res = serving_llama(rig)
    rig.server.fail_load = {QWEN}
    c, fake = rig(fake.running)
    with pytest.raises(RuntimeControlError):
        c.ensure("started", QWEN)
    assert c.read_state()["activation"]["model"] == LLAMA
    assert c.engine.loaded(LLAMA) is True and c.engine.loaded(QWEN) is False


def test_a_model_that_does_not_show_as_loaded_is_asked_for_every_200_ms_until_health_timeout(rig, monkeypatch):
    _c, fake, _res = serving_llama(rig)
    rig.server.fail_load = {QWEN}
    c, fake = rig(fake.running, health_timeout=2)
    clock = FakeClock()
    monkeypatch.setattr(H, "time", clock)
    with pytest.raises(RuntimeControlError, match=f"Ollama model {QWEN} did not become healthy within 2s"):
        c.ensure("started", QWEN)
    assert len(clock.sleeps) > 2 and set(clock.sleeps[:-1]) == {0.2}


def test_an_ollama_under_systemd_records_no_command_line(rig, monkeypatch):
    monkeypatch.setattr(R, "systemd_booted", lambda: True)
    c = R.RuntimeController(R.RuntimeSpec(name="ollama", models_dir=rig.models_dir, port=11434),
                            runner=lambda argv: (0, "LoadState=loaded\n", ""))
    act, entry = c.desired_activation(LLAMA)
    assert c.mode == "systemd" and act.model == LLAMA and act.process is None and entry["name"] == LLAMA


def test_an_ollama_restart_reports_its_stop_and_an_ollama_on_cpus_starts_confined(rig, monkeypatch):
    _c, fake, _res = serving_llama(rig)
    last = max(os.sched_getaffinity(0))
    c, fake = rig(fake.running, cpus=[last])
    confined = []
    start = backends.proc.start_process

    def start_process(argv, env=None, **kw):
        confined.append(kw.get("cpus"))
        return start(argv, env=env, **kw)
    monkeypatch.setattr(backends.proc, "start_process", start_process)
    res = c.ensure("started", LLAMA)
    assert "restart" in res["actions"] and res["stop"] == {"found": [4242]} and confined == [[last]]


def test_a_previous_model_still_loaded_is_not_loaded_again_after_a_failed_activation(rig):
    _c, fake, _res = serving_llama(rig)
    rig.server.fail_load = {QWEN}
    c, fake = rig(fake.running)
    rig.server.calls.clear()
    with pytest.raises(RuntimeControlError, match="Rolled back"):
        c.ensure("started", QWEN)
    assert rig.server.calls == [(QWEN, -1, 5.0)], "only the failed load: the previous model was never unloaded"


def test_a_failed_ollama_activation_says_what_to_do(rig):
    _c, fake, _res = serving_llama(rig)
    rig.server.fail_load = {QWEN}
    c, fake = rig(fake.running)
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", QWEN)
    assert "raise health_timeout" in err.value.fix


def test_a_first_ollama_model_that_does_not_load_says_only_why(rig):
    rig.server.fail_load = {LLAMA}
    c, _fake = rig()
    with pytest.raises(RuntimeControlError) as err:
        c.ensure("started", LLAMA)
    assert err.value.msg.startswith(f"Activating '{LLAMA}' on Ollama failed: Ollama model {LLAMA} did not become "
                                    "healthy within ")
    assert err.value.msg.endswith(").") and "Rolled back" not in err.value.msg


def test_every_ollama_request_of_a_start_waits_5_s_for_an_answer(rig):
    serving_llama(rig)
    assert {timeout for _url, timeout, _error in rig.server.clients} == {5.0}


def test_a_restart_loads_the_marked_model_again_when_the_state_names_none(rig):
    c, fake, _res = serving_llama(rig)
    act = E.Activation.from_dict(c.read_state()["activation"])
    act.model = act.provider = None   # the state lost its model; the manifest still marks it
    c.write_state(act)
    rig.server.loaded = []
    c, fake = rig(fake.running)
    res = c.ensure("restarted")
    assert res["previous_model"] == LLAMA and fake.stops == 1 and rig.server.loaded == [LLAMA]
    assert rig.server.calls[-1] == (LLAMA, -1, 5.0)
