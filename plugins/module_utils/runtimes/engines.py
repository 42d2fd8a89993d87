# SPDX-License-Identifier: GPL-3.0-or-later
"""What a runtime is: vLLM (``VllmEngine``) or Ollama (``OllamaEngine``). An engine knows the
server's command line and environment, its health check, which models it serves and what
activating one means; the backend (``backends``) runs it, the controller drives both."""
from __future__ import annotations

import json
import os

from ansible_collections.venom.models.plugins.module_utils.errors import (
    NotFoundError, RuntimeControlError, ValidationError, VenomError)
from ansible_collections.venom.models.plugins.module_utils.runtimes import envfile, health
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import DEFAULTS, Activation, sha
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_bytes
from ansible_collections.venom.models.plugins.module_utils.models.ollama_api import OllamaClient
from ansible_collections.venom.models.plugins.module_utils.store.validation import model_key

HEALTH_INTERVAL = 0.2
ENV_KEYS = ("VLLM_MODEL", "VLLM_SERVED_MODEL_NAME", "VLLM_EXTRA_ARGS", "VLLM_API_KEY")


def gpu_env(gpus) -> dict:
    """The environment that puts an instance on ``gpus`` (NVML's order, as nvidia-smi numbers them)."""
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


class Engine:
    """The parts common to both engines. ``ctl`` is the controller (spec, manifest, backend)."""

    name = ""
    env_file = None

    def __init__(self, ctl):
        self.ctl = ctl
        self.spec = ctl.spec

    @property
    def defaults(self) -> dict:
        return DEFAULTS[self.name]

    def command(self) -> list:
        return list(self.spec.command or self.defaults["command"])

    def process_desc(self) -> dict:
        s = self.spec
        env = dict(sorted((s.env or {}).items()))
        desc = {"command": self.command(), "host": s.host, "port": s.port,
                "env_keys": list(env), "env_sha256": sha(json.dumps(env), s.models_dir, create=not self.ctl.check_mode) if env else None}
        if s.cpus:  # only when set: the description of a runtime started before 'cpus' existed stays equal
            desc["cpus"] = list(s.cpus)
        return desc

    def model_entry(self, model: str) -> dict:
        providers = self.defaults["providers"]
        doc = self.ctl.manifest.load()
        named = [e for e in doc["models"] if model_key(e["name"], e["provider"]) == model_key(model, e["provider"])]
        candidates = [e for e in named if e["provider"] in providers]
        if not candidates:
            other = named
            if other:
                raise ValidationError(
                    f"The model '{model}' is installed with provider {other[0]['provider']}, which {self.name} "
                    f"cannot serve (it serves {', '.join(providers)} models).",
                    fix=f"Activate it on the runtime that serves {other[0]['provider']} models.")
            raise NotFoundError(f"The model '{model}' is not installed in {self.ctl.paths.models_dir}.",
                                fix="Install it first with venom.models.venom_model (state: present), "
                                    "or check 'name' and 'models_dir'.")
        entry = candidates[0]
        if entry.get("runtime") not in (None, self.name):
            raise ValidationError(f"The model '{entry['name']}' is meant for runtime {entry['runtime']}, not {self.name}.",
                                  fix=f"Activate it with name: {entry['runtime']}, or reinstall it with runtime: {self.name}.")
        if entry.get("status") != "installed":
            raise ValidationError(f"The model '{entry['name']}' is {entry.get('status')}, not installed.",
                                  fix="Repair it with venom.models.venom_model (state: verified) first.")
        self.check_entry(entry)
        return entry

    def check_entry(self, entry: dict) -> None:
        """Engine-specific checks of an installed model."""

    def configure_unit(self, act) -> None:
        """Before a systemd start: write what the unit reads (nothing by default)."""

    def wait_healthy(self, act, what: str) -> dict:
        b = self.ctl.backend
        return health.wait_ready(lambda: self.health(act), self.spec.health_timeout, what, alive=b.alive,
                                 log_tail=b.log_tail, interval=HEALTH_INTERVAL, log_where=b.log_where)


class VllmEngine(Engine):
    """vLLM: one model per server; activation is a restart with the new model, gated on health."""

    name = "vllm"

    @property
    def env_file(self):
        return self.spec.env_file

    def check_entry(self, entry: dict) -> None:
        path = entry.get("local_path")
        if not path or not os.path.isdir(path):
            raise NotFoundError(f"The files of '{entry['name']}' are missing (local_path {path}).",
                                fix="Reinstall it with venom.models.venom_model (state: verified or present).")

    # -- the environment file (systemd mode) ----------------------------------------------------
    def read_env_file(self) -> dict:
        """The keys of the vLLM environment file (empty if there is none)."""
        path = self.env_file
        if not path:
            return {}
        try:
            with open(path, encoding="utf-8") as fh:
                return envfile.parse(fh.read())
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RuntimeControlError(f"Cannot read the runtime environment file {path}: {exc.strerror}.",
                                      fix="Run the task with become: true.") from None

    def write_env_file(self, act: Activation) -> bool:
        """Write the vLLM environment file; True if its content changed."""
        path = self.env_file
        values = {"VLLM_MODEL": act.model_path, "VLLM_SERVED_MODEL_NAME": act.served_model_name,
                  "VLLM_EXTRA_ARGS": " ".join(act.flags)}
        api_key = self.spec.api_key if self.spec.api_key is not None else self.read_env_file().get("VLLM_API_KEY")
        if api_key:
            values["VLLM_API_KEY"] = api_key
        values.update(gpu_env(act.gpus))
        for key, value in values.items():
            if value is None:
                raise ValidationError(f"{key} has no value for the vLLM environment file.",
                                      fix="Activate an installed model (set 'model').")
        for flag in act.flags:
            if not flag or any(c.isspace() for c in flag):
                raise ValidationError(f"The vLLM flag {flag!r} contains whitespace; systemd splits "
                                      "$VLLM_EXTRA_ARGS at whitespace.", fix="Pass flags without spaces (--flag=value).")
        text = envfile.render(values, ["Managed by venom.models.venom_runtime: the vLLM unit's active model and flags."],
                              secret_keys=("VLLM_API_KEY",))
        try:
            with open(path, encoding="utf-8") as fh:
                if fh.read() == text:
                    return False
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        atomic_write_bytes(path, text.encode(), mode=0o600)
        return True

    def configure_unit(self, act) -> None:
        if act is not None:
            self.write_env_file(act)

    def env_file_activation(self) -> Activation | None:
        env = self.read_env_file()
        if not env.get("VLLM_MODEL"):
            return None
        state_act = Activation.from_dict(self.ctl.read_state().get("activation"))
        model = provider = None
        if state_act and state_act.model_path == env["VLLM_MODEL"]:
            model, provider = state_act.model, state_act.provider
        return Activation(model=model, provider=provider, model_path=env["VLLM_MODEL"],
                          served_model_name=env.get("VLLM_SERVED_MODEL_NAME") or None,
                          flags=(env.get("VLLM_EXTRA_ARGS") or "").split(),
                          api_key_sha256=sha(env.get("VLLM_API_KEY"), self.spec.models_dir),
                          gpus=[int(g) for g in (env.get("CUDA_VISIBLE_DEVICES") or "").split(",") if g.strip().isdigit()]
                          or None)

    # -- activations ----------------------------------------------------------------------------
    def current_activation(self) -> Activation | None:
        if self.ctl.resolve_mode() == "systemd":
            return self.env_file_activation()
        return Activation.from_dict(self.ctl.read_state().get("activation"))

    def flags(self, base: Activation | None) -> list:
        """vLLM flags from the options; options left out keep the current values."""
        s = self.spec
        current = list(base.flags) if base else []
        managed = {"--max-model-len": s.max_model_len, "--gpu-memory-utilization": s.gpu_memory_utilization,
                   "--tensor-parallel-size": s.tensor_parallel_size}
        current_managed, current_args, i = {}, [], 0
        while i < len(current):
            if current[i] in managed and i + 1 < len(current):
                current_managed[current[i]] = current[i + 1]
                i += 2
            else:
                current_args.append(current[i])
                i += 1
        flags = []
        for flag, value in managed.items():
            value = current_managed.get(flag) if value is None else _fmt(value)
            if value is not None:
                flags += [flag, value]
        flags += current_args if s.args is None else list(s.args)
        return flags

    def desired_activation(self, model: str | None, current: Activation | None):
        entry = self.model_entry(model) if model else None
        s = self.spec
        if entry is None and current is None:
            return None, None
        if entry is not None:
            same_model = current is not None and current.model_path == entry["local_path"]
            served = s.served_model_name or (current.served_model_name if same_model and current else None) or entry["name"]
            act = Activation(model=entry["name"], provider=entry["provider"], model_path=entry["local_path"],
                             served_model_name=served)
        else:
            act = Activation(model=current.model, provider=current.provider, model_path=current.model_path,
                             served_model_name=s.served_model_name or current.served_model_name)
        act.flags = self.flags(current)
        act.gpus = (s.gpus if s.gpus is not None else (current.gpus if current else None)) or None
        if s.api_key is not None:
            act.api_key_sha256 = sha(s.api_key, s.models_dir, create=not self.ctl.check_mode)
        else:
            act.api_key_sha256 = current.api_key_sha256 if current else None
        if self.ctl.resolve_mode() == "process":
            act.process = self.process_desc()
        return act, entry

    def process_argv(self, act: Activation | None) -> tuple[list, dict]:
        """(argv, env) of the process-mode server."""
        s = self.spec
        if act is None or not act.model_path:
            raise RuntimeControlError("vLLM has no model to serve.", fix="Set 'model' to an installed model.")
        command = (act.process or {}).get("command") or self.command()  # a rollback: the previous command
        argv = [*command, "--model", act.model_path, "--served-model-name", act.served_model_name,
                "--host", s.host, "--port", str(s.port), *act.flags]
        env = dict(os.environ)
        env.update(s.env or {})
        env.update(gpu_env(act.gpus))
        if s.api_key:
            env["VLLM_API_KEY"] = s.api_key  # never on the command line: ps shows it to every user
        return argv, env

    def health(self, act: Activation | None, timeout: float = 5.0) -> tuple[bool, str]:
        served = act.served_model_name if act else None
        ok, reason, models = health.vllm_check(self.ctl.url, served, self.spec.api_key, timeout=timeout)
        if ok and act and act.model_path:
            roots = {m.get("id"): m.get("root") for m in models}
            if roots.get(served) not in (act.model_path, None):
                return False, f"'{served}' is served from {roots.get(served)}, not {act.model_path}"
        return ok, reason

    def server_healthy(self, before: dict) -> bool:
        return before["healthy"]

    # -- planning and applying --------------------------------------------------------------------
    def current_model(self, current: Activation | None, marked: dict | None) -> str | None:  # pylint: disable=unused-argument
        return current.model if current else None

    def plan_activation(self, plan, marked_name: str | None) -> bool:
        """Add the activation's actions to ``plan``; True if the server must restart for them."""
        desired, current = plan.desired, plan.current
        if desired is None and plan.mode == "process":
            raise RuntimeControlError("vLLM has no model to serve on this host yet.",
                                      fix="Set 'model' to an installed model (see venom_model).")
        if desired is not None and current is not None and desired.as_dict() != current.as_dict():
            plan.actions.append("activate")
            return True
        if desired is not None and current is None:
            plan.actions.append("activate")
            return plan.before["running"]
        return False

    def plan_marks(self, plan, marked_name: str | None) -> None:
        if plan.desired and plan.desired.model and plan.desired.model != marked_name:
            plan.actions.append("mark-active")

    def restarts_for(self, plan) -> bool:
        return "activate" in plan.actions and plan.before["running"]

    def apply_started(self, plan, result: dict) -> None:
        ctl, desired, before = self.ctl, plan.desired, plan.before
        actions = result["actions"]
        if set(actions) <= {"restart-unhealthy", "mark-active"} and "/health: " in (before.get("health") or ""):
            # Running, same activation, not answering yet: most likely still loading (a unit that
            # was just started). Wait for it rather than throwing a minute of loading away.
            try:
                result["health_seconds"] = self.wait_healthy(desired, "vLLM")["seconds"]
                actions[:] = [a for a in actions if a != "restart-unhealthy"] + ["waited-until-healthy"]
                result["changed"] = "mark-active" in actions
                if desired and desired.model:
                    ctl.mark_active(desired.model, desired.provider)
                return
            except VenomError:
                pass  # not loading but stuck: restart it
        restart = ctl.restart_planned(plan)
        if before["running"] and restart or before.get("crashed"):
            plan.previous_launch = ctl.backend.launch() if before["running"] else None
            result["stop"] = ctl.backend.stop()
        if restart or not before["running"]:
            try:
                ctl.backend.start(self, desired)
                what = f"vLLM serving '{desired.served_model_name if desired else '?'}'"
                result["health_seconds"] = self.wait_healthy(desired, what)["seconds"]
            except VenomError as exc:
                self.rollback(exc, plan, result)
        ctl.write_state(desired)
        if desired and desired.model:
            ctl.mark_active(desired.model, desired.provider)

    def rollback(self, exc: VenomError, plan, result: dict):
        """The new activation failed its gate: restore the previous one (if any, and allowed)."""
        ctl, desired, current = self.ctl, plan.desired, plan.current
        reason = exc.msg
        try:
            ctl.backend.stop()
        except VenomError as stop_exc:
            reason += f" Stopping the failed server also failed: {stop_exc.msg}"
        can = (self.spec.rollback and current is not None and current.model_path
               and desired is not None and current.as_dict() != desired.as_dict())
        if not can:
            if ctl.mode == "process" or current is None:
                ctl.write_state(current)
            raise RuntimeControlError(
                f"vLLM did not become healthy with '{desired.model if desired else '?'}': {reason}"
                + (" Rollback is off, so" if not self.spec.rollback and current else
                   " There is no previous model to go back to, so")
                + " the runtime is left stopped.",
                fix=exc.fix, rolled_back=False, log_tail=exc.details.get("log_tail")) from None
        try:
            # the previous server exactly as it ran (command and env included), else its activation
            ctl.backend.start(self, current, launch=plan.previous_launch)
            self.wait_healthy(current, f"vLLM serving '{current.served_model_name}' (rollback)")
        except VenomError as rb_exc:
            stopped = "venom_runtime stopped what the rollback started, so the runtime is left stopped."
            try:
                ctl.backend.stop()
            except VenomError as stop_exc:
                stopped = f"Stopping what the rollback started failed as well: {stop_exc.msg}"
            ctl.write_state(current)
            raise RuntimeControlError(
                f"vLLM did not become healthy with '{desired.model}': {reason} Rolling back to "
                f"'{current.model or current.model_path}' failed too: {rb_exc.msg} {stopped}",
                fix="Read both log excerpts; fix the previous model or activate a working one.",
                rolled_back=False, log_tail=rb_exc.details.get("log_tail")) from None
        ctl.write_state(current)
        result["rolled_back"] = True
        raise RuntimeControlError(
            f"Activating '{desired.model}' failed, so venom_runtime rolled back: '{current.model or current.model_path}' "
            f"is serving again and healthy. Why '{desired.model}' failed: {reason}",
            fix=exc.fix, rolled_back=True, previous_model=current.model, failed_model=desired.model,
            log_tail=exc.details.get("log_tail")) from None


class OllamaEngine(Engine):
    """Ollama: the server keeps running; activation preloads the model and unloads the previous one."""

    name = "ollama"

    def client(self, timeout: float = 5.0) -> OllamaClient:
        """The Ollama API of this instance (``timeout``: seconds to read an answer)."""
        return OllamaClient(self.ctl.url, timeout=timeout, error=RuntimeControlError)

    def current_activation(self) -> Activation | None:
        return Activation.from_dict(self.ctl.read_state().get("activation"))

    def desired_activation(self, model: str | None, current: Activation | None):
        entry = self.model_entry(model) if model else None
        name = entry["name"] if entry else (current.model if current else None)
        return Activation(model=name, provider="ollama" if name else None,
                          process=self.process_desc() if self.ctl.resolve_mode() == "process" else None), entry

    def process_argv(self, act: Activation | None) -> tuple[list, dict]:  # pylint: disable=unused-argument
        s = self.spec
        env = dict(os.environ)
        env.update(s.env or {})
        env["OLLAMA_HOST"] = f"{s.host}:{s.port}"
        return self.command(), env

    def health(self, act: Activation | None, timeout: float = 5.0) -> tuple[bool, str]:
        return health.ollama_check(self.client(timeout), act.model if act else None)

    def server_healthy(self, before: dict) -> bool:
        """The server itself answers (a model that is not loaded is no reason to restart it)."""
        return health.ollama_check(self.client())[0]

    def loaded(self, model: str) -> bool:
        try:
            return model in self.client().loaded()
        except VenomError:
            return False

    def wait_healthy(self, act, what: str) -> dict:
        b = self.ctl.backend  # the server first; the model is loaded afterwards
        client = self.client()
        return health.wait_ready(lambda: health.ollama_check(client, None), self.spec.health_timeout, what,
                                 alive=b.alive, log_tail=b.log_tail, interval=HEALTH_INTERVAL, log_where=b.log_where)

    def current_model(self, current: Activation | None, marked: dict | None) -> str | None:
        return marked["name"] if marked else None

    def plan_activation(self, plan, marked_name: str | None) -> bool:
        desired, current = plan.desired, plan.current
        desired_model = desired.model if desired else None
        if desired_model and (desired_model != plan.current_model or not plan.before["healthy"]
                              or not self.loaded(desired_model)):
            plan.actions.append("activate")
        return bool(plan.mode == "process" and current and current.process and desired
                    and desired.process != current.process and plan.before["running"])

    def plan_marks(self, plan, marked_name: str | None) -> None:
        """Ollama marks its model after the activation (part of 'activate')."""

    def restarts_for(self, plan) -> bool:  # pylint: disable=unused-argument
        return False

    def activate(self, new: str, previous: str | None) -> None:
        """Preload ``new`` and see it in /api/ps, then unload ``previous``."""
        client = self.client()
        client.keep_alive(new, self.spec.keep_alive, timeout=max(5.0, self.spec.health_timeout))
        health.wait_ready(lambda: health.ollama_check(client, new), min(30.0, self.spec.health_timeout),
                          f"Ollama model {new}", interval=HEALTH_INTERVAL)
        if previous and previous != new:
            try:
                client.keep_alive(previous, 0, timeout=60)
            except VenomError as exc:
                self.ctl.warn(f"The previous model {previous} could not be unloaded: {exc}")

    def apply_started(self, plan, result: dict) -> None:
        ctl, desired, before = self.ctl, plan.desired, plan.before
        restart = ctl.restart_planned(plan)
        if before["running"] and restart or before.get("crashed"):
            result["stop"] = ctl.backend.stop()
        if restart or not before["running"]:
            ctl.backend.start(self, desired)
            result["health_seconds"] = self.wait_healthy(desired, "Ollama")["seconds"]
        previous = plan.current_model
        want = desired.model if desired else None
        if want:
            try:
                self.activate(want, previous)
            except VenomError as exc:
                rolled = bool(previous and previous != want and self.loaded(previous))
                if not rolled and previous and previous != want:
                    try:  # a restart unloaded it: load it again
                        self.activate(previous, None)
                        rolled = True
                    except VenomError:
                        rolled = False
                result["rolled_back"] = rolled
                raise RuntimeControlError(
                    f"Activating '{want}' on Ollama failed: {exc.msg}"
                    + (f" Rolled back: '{previous}' stays the active model." if rolled else ""),
                    fix=exc.fix, rolled_back=rolled, previous_model=previous) from None
            ctl.mark_active(want, "ollama")
        elif previous:
            # restarted server with a recorded active model: load it again
            self.activate(previous, None)
        ctl.write_state(desired)


ENGINES = {"vllm": VllmEngine, "ollama": OllamaEngine}
