# SPDX-License-Identifier: GPL-3.0-or-later
"""Runtime control: start, stop, restart a runtime (vLLM, Ollama) and activate a model on it.

The logic of ``venom.models.venom_runtime``, usable as a plain Python API::

    spec = RuntimeSpec(name="vllm", models_dir="/var/lib/venom/models", mode="process",
                       command=["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"],
                       port=8000)
    result = RuntimeController(spec, runner=my_runner).ensure("started", model="org/model")

Modes
    ``systemd`` controls the runtime's unit (``vllm.service`` / ``ollama.service``) with
    ``systemctl``; ``process`` runs it as a local process tree (``_process``: own session, PID
    file, log file); ``auto`` picks systemd when systemd is PID 1 and the unit exists.

Activation
    vLLM serves one model. Its active model and flags are the *activation*: in systemd mode the
    environment file the unit reads (``env_file``, below), in process mode the command line. A
    change is applied by a restart and gated on health; if the new model fails its gate and
    ``rollback`` is on, the previous activation is restored, restarted and confirmed healthy, and
    the task fails saying so. Ollama keeps its server running: the new model is preloaded with
    ``keep_alive`` and must show in ``/api/ps`` before the previous one is unloaded.

vLLM environment file (systemd mode; the vllm role's unit reads it)
    Only the keys below, systemd ``EnvironmentFile`` syntax, mode 0600 (it may hold the API key)::

        VLLM_MODEL="/var/lib/venom/models/huggingface/org/name/<commit>"
        VLLM_SERVED_MODEL_NAME="org/name"
        VLLM_EXTRA_ARGS="--max-model-len 4096 --gpu-memory-utilization 0.9"
        VLLM_API_KEY="..."            (only when api_key is set; vLLM reads it itself)

    The unit runs ``... --model ${VLLM_MODEL} --served-model-name ${VLLM_SERVED_MODEL_NAME}
    --host H --port P $VLLM_EXTRA_ARGS`` (``$VAR`` unbraced: split at whitespace).

State
    ``<models_dir>/.venom/runtimes/<name>.json`` records the current activation (no secrets: the
    API key only as a sha256), ``<name>.pid`` and ``<name>.log`` the process-mode process. The
    manifest marks the active model (``active: true, active_runtime: <name>``). A per-runtime
    inter-process lock serialises every start, stop and activation on the host.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field

from ansible_collections.venom.models.plugins.module_utils.runtimes import health
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as proc
from ansible_collections.venom.models.plugins.module_utils.errors import (
    NotFoundError, RuntimeControlError, ValidationError, VenomError)
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_bytes, atomic_write_json
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.locks import runtime_lock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.runtimes.systemd import Systemd, systemd_booted
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso
from ansible_collections.venom.models.plugins.module_utils.store.validation import parse_ollama_name

RUNTIMES = ("vllm", "ollama")
STATES = ("started", "stopped", "restarted")
MODES = ("auto", "systemd", "process")
DEFAULTS = {
    "vllm": {"unit": "vllm.service", "port": 8000,
             "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
             "env_file": "/etc/venom-models/vllm.env", "providers": ("huggingface", "local")},
    "ollama": {"unit": "ollama.service", "port": 11434, "command": ["ollama", "serve"],
               "env_file": None, "providers": ("ollama",)},
}
DEFAULT_HEALTH_TIMEOUT = 600.0
DEFAULT_STOP_TIMEOUT = proc.DEFAULT_STOP_TIMEOUT
HEALTH_INTERVAL = 0.2
ENV_KEYS = ("VLLM_MODEL", "VLLM_SERVED_MODEL_NAME", "VLLM_EXTRA_ARGS", "VLLM_API_KEY")
# systemd EnvironmentFile values are written double-quoted; refuse what would need escaping there.
_UNSAFE_ENV_VALUE = re.compile(r'["\\$`\n\r\0]')


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text else None


@dataclass
class RuntimeSpec:
    """What the caller asks for (the module's options). None means: keep what is configured."""

    name: str
    models_dir: str | None = None
    mode: str = "auto"
    unit: str | None = None
    command: list | None = None
    args: list | None = None
    env: dict | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    served_model_name: str | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    api_key: str | None = None
    keep_alive: object = -1
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    rollback: bool = True
    env_file: str | None = None
    lock_timeout: float = 600.0
    log_file: str | None = None

    def __post_init__(self):
        if self.name not in RUNTIMES:
            raise ValidationError(f"Unknown runtime {self.name!r}.", fix=f"Use one of {', '.join(RUNTIMES)}.")
        if self.mode not in MODES:
            raise ValidationError(f"Unknown mode {self.mode!r}.", fix=f"Use one of {', '.join(MODES)}.")
        d = DEFAULTS[self.name]
        self.unit = self.unit or d["unit"]
        self.port = int(self.port or d["port"])
        if self.env_file is None:
            self.env_file = d["env_file"]
        if isinstance(self.command, str):
            self.command = shlex.split(self.command)
        if self.command is not None and not self.command:
            raise ValidationError("'command' is empty.", fix="Give the runtime's executable and its first arguments.")
        for key, value in (("health_timeout", self.health_timeout), ("stop_timeout", self.stop_timeout)):
            if value is None or value < 0:
                raise ValidationError(f"'{key}' must be zero or more seconds, not {value!r}.")
        if self.args is not None:
            self.args = [str(a) for a in self.args]
        if self.env is not None:
            self.env = {str(k): str(v) for k, v in self.env.items()}


@dataclass
class Activation:
    """What a runtime serves and how: compared to decide whether anything must change."""

    model: str | None = None
    provider: str | None = None
    model_path: str | None = None
    served_model_name: str | None = None
    flags: list = field(default_factory=list)
    api_key_sha256: str | None = None
    process: dict | None = None  # process mode only: command, env (values hashed), host, port

    def as_dict(self) -> dict:
        return {"model": self.model, "provider": self.provider, "model_path": self.model_path,
                "served_model_name": self.served_model_name, "flags": list(self.flags),
                "api_key_sha256": self.api_key_sha256, "process": self.process}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Activation | None":
        if not isinstance(data, dict):
            return None
        keys = ("model", "provider", "model_path", "served_model_name", "api_key_sha256", "process")
        return cls(**{k: data.get(k) for k in keys}, flags=list(data.get("flags") or []))


class RuntimeController:
    """Controls one runtime on this host. ``runner(argv) -> (rc, out, err)`` runs systemctl."""

    def __init__(self, spec: RuntimeSpec, runner=None, check_mode: bool = False, warn=None,
                 systemctl: str = "systemctl", journalctl: str = "journalctl"):
        self.spec = spec
        self.touched = False  # set once the run began changing things (a failure then still changed them)
        self.runner = runner
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.paths = StatePaths(spec.models_dir)
        self.state_dir = os.path.join(self.paths.state_dir, "runtimes")
        self.pid_file = os.path.join(self.state_dir, f"{spec.name}.pid")
        self.log_file = spec.log_file or os.path.join(self.state_dir, f"{spec.name}.log")
        self.state_file = os.path.join(self.state_dir, f"{spec.name}.json")
        self.url = health.base_url(spec.host, spec.port)
        self.manifest = Manifest(spec.models_dir, lock_timeout=spec.lock_timeout)
        self._systemd = Systemd(runner, systemctl, journalctl) if runner is not None else None
        self.mode = None
        self._recovering = False  # the next state write counts a crash recovery (process-mode restarts)

    # -- mode ----------------------------------------------------------------------------------
    def resolve_mode(self) -> str:
        if self.mode:
            return self.mode
        want = self.spec.mode
        if want in ("auto", "systemd"):
            booted = systemd_booted()
            if want == "systemd" and not booted:
                raise RuntimeControlError("mode is systemd, but systemd is not the init system (PID 1) of this host.",
                                          fix="Use mode: process (or auto) on hosts without systemd.")
            if want == "systemd" and self._systemd is None:
                raise RuntimeControlError("mode is systemd, but no command runner was given to run systemctl.",
                                          fix="Pass runner= (the module passes module.run_command).")
            if booted and self._systemd is not None and self._systemd.unit_exists(self.spec.unit):
                self.mode = "systemd"
            elif want == "systemd":
                raise RuntimeControlError(f"mode is systemd, but the unit {self.spec.unit} does not exist.",
                                          fix=f"Install the runtime with the venom.models.{self.spec.name} role, "
                                              "set 'unit', or use mode: process.")
            else:
                self.mode = "process"
        else:
            self.mode = "process"
        return self.mode

    # -- reading the present ---------------------------------------------------------------------
    def _read_state(self) -> dict:
        try:
            with open(self.state_file, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_state(self, activation: Activation | None, extra: dict | None = None) -> None:
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        doc = {"kind": "venom.models/runtime", "name": self.spec.name, "mode": self.mode,
               "activation": activation.as_dict() if activation else None, "url": self.url,
               "host": self.spec.host, "port": self.spec.port,
               "unit": self.spec.unit if self.mode == "systemd" else None,
               "env_file": self.spec.env_file if self.mode == "systemd" else None,
               "pid_file": self.pid_file if self.mode == "process" else None,
               "log_file": self.log_file if self.mode == "process" else None, "updated_at": iso()}
        previous = self._read_state()
        doc["restarts"] = int(previous.get("restarts") or 0) + (1 if self._recovering else 0)
        self._recovering = False
        doc.update(extra or {})
        atomic_write_json(self.state_file, doc, mode=0o640)

    def read_env_file(self) -> dict:
        """The keys of the vLLM environment file (empty if there is none)."""
        path = self.spec.env_file
        values = {}
        if not path:
            return values
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return values
        except OSError as exc:
            raise RuntimeControlError(f"Cannot read the runtime environment file {path}: {exc.strerror}.",
                                      fix="Run the task with become: true.") from None
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key.strip()] = value
        return values

    def _env_file_activation(self) -> Activation | None:
        env = self.read_env_file()
        if not env.get("VLLM_MODEL"):
            return None
        state_act = Activation.from_dict(self._read_state().get("activation"))
        model = provider = None
        if state_act and state_act.model_path == env["VLLM_MODEL"]:
            model, provider = state_act.model, state_act.provider
        return Activation(model=model, provider=provider, model_path=env["VLLM_MODEL"],
                          served_model_name=env.get("VLLM_SERVED_MODEL_NAME") or None,
                          flags=(env.get("VLLM_EXTRA_ARGS") or "").split(),
                          api_key_sha256=_sha(env.get("VLLM_API_KEY")))

    def current_activation(self) -> Activation | None:
        if self.spec.name == "vllm" and self.resolve_mode() == "systemd":
            return self._env_file_activation()
        return Activation.from_dict(self._read_state().get("activation"))

    def _process_status(self) -> dict:
        rec = proc.read_pid_file(self.pid_file)
        if rec is None:
            return {"running": False, "crashed": False, "pid": None, "record": None}
        alive = proc.record_alive(rec)
        return {"running": alive, "crashed": not alive, "pid": rec["pid"] if alive else None, "record": rec}

    def _systemd_status(self) -> dict:
        st = self._systemd.status(self.spec.unit)
        active = st.get("ActiveState", "")
        pid = int(st["MainPID"]) if st.get("MainPID", "0").isdigit() and int(st["MainPID"]) else None
        return {"running": active in ("active", "activating", "reloading"), "crashed": active == "failed",
                "pid": pid, "active_state": active, "sub_state": st.get("SubState"),
                "restarts": int(st["NRestarts"]) if st.get("NRestarts", "").isdigit() else None}

    def _health(self, activation: Activation | None, timeout: float = 5.0) -> tuple[bool, str]:
        if self.spec.name == "vllm":
            served = activation.served_model_name if activation else None
            ok, reason, models = health.vllm_check(self.url, served, self.spec.api_key, timeout=timeout)
            if ok and activation and activation.model_path:
                roots = {m.get("id"): m.get("root") for m in models}
                if roots.get(served) not in (activation.model_path, None):
                    return False, f"'{served}' is served from {roots.get(served)}, not {activation.model_path}"
            return ok, reason
        model = activation.model if activation else None
        return health.ollama_check(self.url, model, timeout=timeout)

    def status(self) -> dict:
        """Read-only: mode, running, healthy, pid, url, active model (for facts and for ensure)."""
        mode = self.resolve_mode()
        st = self._systemd_status() if mode == "systemd" else self._process_status()
        st.pop("record", None)
        act = self.current_activation()
        healthy, reason = self._health(act) if st["running"] else (False, "not running")
        out = {"name": self.spec.name, "mode": mode, "url": self.url, "healthy": healthy, "health": reason,
               "model": act.model if act else None, "model_path": act.model_path if act else None,
               "served_model_name": act.served_model_name if act else None}
        out.update(st)
        out["port"] = self.spec.port
        if mode == "process":
            out["restarts"] = int(self._read_state().get("restarts") or 0)
        if mode == "systemd":
            out["unit"] = self.spec.unit
            if self.spec.name == "vllm":
                out["env_file"] = self.spec.env_file
        else:
            out["pid_file"] = self.pid_file
            out["log_file"] = self.log_file
        return out

    @classmethod
    def from_state(cls, models_dir: str | None, name: str, runner=None, api_key: str | None = None,
                   **kwargs) -> "RuntimeController":
        """A controller for the runtime as venom_runtime last configured it on this host (mode,
        host, port, unit, env file from its state file), e.g. for facts: ``.status()``."""
        paths = StatePaths(models_dir)
        try:
            with open(os.path.join(paths.state_dir, "runtimes", f"{name}.json"), encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            doc = {}
        spec = RuntimeSpec(name=name, models_dir=models_dir, mode=doc.get("mode") or "auto",
                           unit=doc.get("unit"), host=doc.get("host") or "127.0.0.1", port=doc.get("port"),
                           env_file=doc.get("env_file") or None, log_file=doc.get("log_file"), api_key=api_key)
        return cls(spec, runner=runner, **kwargs)

    def configured(self) -> bool:
        """venom_runtime has managed this runtime on this host, or its systemd unit is installed."""
        return os.path.exists(self.state_file) or self.resolve_mode() == "systemd"

    # -- the model -------------------------------------------------------------------------------
    def _model_entry(self, model: str) -> dict:
        providers = DEFAULTS[self.spec.name]["providers"]
        names = [model]
        if self.spec.name == "ollama":
            names = [parse_ollama_name(model)["display"], model]
        doc = self.manifest.load()
        candidates = [e for e in doc["models"] if e["name"] in names and e["provider"] in providers]
        if not candidates:
            other = [e for e in doc["models"] if e["name"] in names]
            if other:
                raise ValidationError(
                    f"The model '{model}' is installed with provider {other[0]['provider']}, which {self.spec.name} "
                    f"cannot serve (it serves {', '.join(providers)} models).",
                    fix=f"Activate it on the runtime that serves {other[0]['provider']} models.")
            raise NotFoundError(f"The model '{model}' is not installed in {self.paths.models_dir}.",
                                fix="Install it first with venom.models.venom_model (state: present), "
                                    "or check 'name' and 'models_dir'.")
        entry = candidates[0]
        if entry.get("runtime") not in (None, self.spec.name):
            raise ValidationError(f"The model '{entry['name']}' is meant for runtime {entry['runtime']}, not {self.spec.name}.",
                                  fix=f"Activate it with name: {entry['runtime']}, or reinstall it with runtime: {self.spec.name}.")
        if entry.get("status") != "installed":
            raise ValidationError(f"The model '{entry['name']}' is {entry.get('status')}, not installed.",
                                  fix="Repair it with venom.models.venom_model (state: verified) first.")
        if self.spec.name == "vllm":
            path = entry.get("local_path")
            if not path or not os.path.isdir(path):
                raise NotFoundError(f"The files of '{entry['name']}' are missing (local_path {path}).",
                                    fix="Reinstall it with venom.models.venom_model (state: verified or present).")
        return entry

    def _flags(self, base: Activation | None) -> list:
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

    def desired_activation(self, model: str | None) -> tuple[Activation | None, dict | None]:
        """The activation to have after this run, and the manifest entry of the model (if any)."""
        current = self.current_activation()
        entry = self._model_entry(model) if model else None
        s = self.spec
        if s.name == "ollama":
            name = entry["name"] if entry else (current.model if current else None)
            return Activation(model=name, provider="ollama" if name else None,
                              process=self._process_desc() if self.resolve_mode() == "process" else None), entry
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
        act.flags = self._flags(current)
        act.api_key_sha256 = _sha(s.api_key) if s.api_key is not None else (current.api_key_sha256 if current else None)
        if self.resolve_mode() == "process":
            act.process = self._process_desc()
        return act, entry

    def _process_desc(self) -> dict:
        s = self.spec
        env = dict(sorted((s.env or {}).items()))
        return {"command": list(s.command or DEFAULTS[s.name]["command"]), "host": s.host, "port": s.port,
                "env_keys": list(env), "env_sha256": _sha(json.dumps(env)) if env else None}

    # -- acting ----------------------------------------------------------------------------------
    def _argv(self, act: Activation | None) -> tuple[list, list, dict]:
        """(argv, argv shown in logs, env) of the process-mode runtime."""
        s = self.spec
        argv = list(s.command or DEFAULTS[s.name]["command"])
        env = dict(os.environ)
        env.update(s.env or {})
        if s.name == "vllm":
            if act is None or not act.model_path:
                raise RuntimeControlError("vLLM has no model to serve.", fix="Set 'model' to an installed model.")
            argv += ["--model", act.model_path, "--served-model-name", act.served_model_name,
                     "--host", s.host, "--port", str(s.port), *act.flags]
            if s.api_key:
                env["VLLM_API_KEY"] = s.api_key  # never on the command line: ps shows it to every user
        else:
            env["OLLAMA_HOST"] = f"{s.host}:{s.port}"
        return argv, list(argv), env

    def _write_env_file(self, act: Activation) -> bool:
        """Write the vLLM environment file; True if its content changed."""
        path = self.spec.env_file
        values = {"VLLM_MODEL": act.model_path, "VLLM_SERVED_MODEL_NAME": act.served_model_name,
                  "VLLM_EXTRA_ARGS": " ".join(act.flags)}
        api_key = self.spec.api_key if self.spec.api_key is not None else self.read_env_file().get("VLLM_API_KEY")
        if api_key:
            values["VLLM_API_KEY"] = api_key
        for key, value in values.items():
            if value is None or _UNSAFE_ENV_VALUE.search(value):
                shown = "(hidden)" if key == "VLLM_API_KEY" else repr(value)
                raise ValidationError(f"The value of {key} {shown} cannot go into a systemd environment file "
                                      '(it contains ", \\, $, ` or a line break).',
                                      fix="Use a model path, served name, flags and api_key without those characters.")
        for flag in act.flags:
            if not flag or any(c.isspace() for c in flag):
                raise ValidationError(f"The vLLM flag {flag!r} contains whitespace; systemd splits "
                                      "$VLLM_EXTRA_ARGS at whitespace.", fix="Pass flags without spaces (--flag=value).")
        text = ("# Managed by venom.models.venom_runtime: the vLLM unit's active model and flags.\n"
                + "".join(f'{k}="{v}"\n' for k, v in values.items()))
        try:
            with open(path, encoding="utf-8") as fh:
                if fh.read() == text:
                    return False
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        atomic_write_bytes(path, text.encode(), mode=0o600)
        return True

    def _start(self, act: Activation | None) -> dict:
        if self.mode == "systemd":
            if self.spec.name == "vllm" and act is not None:
                self._write_env_file(act)
            self._systemd.reset_failed(self.spec.unit)
            self._systemd.start(self.spec.unit)
            return {"pid": self._systemd.main_pid(self.spec.unit)}
        argv, shown, env = self._argv(act)
        rec = proc.start_process(argv, pid_file=self.pid_file, log_file=self.log_file, env=env, cwd="/",
                                 name=self.spec.name, port=self.spec.port, host=self.spec.host, argv_for_record=shown,
                                 startup_check=0)  # the health wait watches for an early exit
        return {"pid": rec["pid"]}

    def _stop(self) -> dict | None:
        """Stop completely; the stop's report, or None if nothing was running."""
        if self.mode == "systemd":
            st = self._systemd_status()
            if not st["running"] and not st["crashed"]:
                return None
            res = self._systemd.stop(self.spec.unit, confirm_timeout=max(10.0, self.spec.stop_timeout))
            self._systemd.reset_failed(self.spec.unit)
            self._confirm_port_free()
            return res
        res = proc.stop_pid_file(self.pid_file, stop_timeout=self.spec.stop_timeout, port=self.spec.port,
                                 host=self.spec.host)
        return res.as_dict() if res else None

    def _confirm_port_free(self) -> None:
        deadline = time.monotonic() + proc.PORT_GRACE
        while proc.port_in_use(self.spec.host, self.spec.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.port_in_use(self.spec.host, self.spec.port):
            holders = proc.port_holders(self.spec.port)
            raise RuntimeControlError(
                f"{self.spec.unit} is stopped, but port {self.spec.port} is still in use"
                + (f" by {proc.describe_pids(holders)}." if holders else "."),
                fix="Stop what holds the port, or point the unit and 'port' at another one.", pids=holders)

    def _log_tail(self) -> list:
        if self.mode == "systemd":
            return self._systemd.journal_tail(self.spec.unit, 40)
        lines = proc.tail_file(self.log_file, 400)
        starts = [i for i, line in enumerate(lines) if line.startswith(proc.LOG_START_MARK)]
        return lines[starts[-1]:][-40:] if starts else lines[-40:]

    def _alive(self) -> bool:
        if self.mode == "systemd":
            st = self._systemd_status()
            return st["running"]
        return self._process_status()["running"]

    def _wait_healthy(self, act: Activation | None, what: str) -> dict:
        where = f"journalctl -u {self.spec.unit}" if self.mode == "systemd" else self.log_file
        if self.spec.name == "ollama":  # the server first; the model is loaded afterwards
            return health.wait_ready(lambda: health.ollama_check(self.url, None), self.spec.health_timeout, what,
                                     alive=self._alive, log_tail=self._log_tail, interval=HEALTH_INTERVAL,
                                     log_where=where)
        return health.wait_ready(lambda: self._health(act), self.spec.health_timeout, what, alive=self._alive,
                                 log_tail=self._log_tail, interval=HEALTH_INTERVAL, log_where=where)

    def _ollama_activate(self, new: str, previous: str | None) -> None:
        """Preload ``new`` and see it in /api/ps, then unload ``previous``."""
        health.ollama_generate_keep_alive(self.url, new, self.spec.keep_alive, timeout=max(5.0, self.spec.health_timeout))
        health.wait_ready(lambda: health.ollama_check(self.url, new), min(30.0, self.spec.health_timeout),
                          f"Ollama model {new}", interval=HEALTH_INTERVAL)
        if previous and previous != new:
            try:
                health.ollama_generate_keep_alive(self.url, previous, 0, timeout=60)
            except RuntimeControlError as exc:
                self.warn(f"The previous model {previous} could not be unloaded: {exc}")

    def _mark_active(self, model: str | None, provider: str | None) -> bool:
        """Mark ``model`` as this runtime's active model in the manifest; True if that changed it."""
        changed = False
        with self.manifest.transaction() as doc:
            for entry in doc["models"]:
                is_it = model is not None and entry["name"] == model and entry["provider"] == provider
                if is_it and not (entry.get("active") and entry.get("active_runtime") == self.spec.name):
                    entry["active"], entry["active_runtime"] = True, self.spec.name
                    changed = True
                elif not is_it and entry.get("active_runtime") == self.spec.name:
                    entry["active"], entry["active_runtime"] = False, None
                    changed = True
        return changed

    def _marked_active(self) -> dict | None:
        for entry in self.manifest.load()["models"]:
            if entry.get("active") and entry.get("active_runtime") == self.spec.name:
                return entry
        return None

    # -- the one entry point ---------------------------------------------------------------------
    def ensure(self, state: str, model: str | None = None) -> dict:
        if state not in STATES:
            raise ValidationError(f"Unknown state {state!r}.", fix=f"Use one of {', '.join(STATES)}.")
        if model is not None and state == "stopped":
            raise ValidationError("'model' cannot be combined with state: stopped.",
                                  fix="Use state: started (or restarted) to activate a model.")
        mode = self.resolve_mode()
        if self.check_mode:
            return self._plan(state, model)
        self.paths.ensure()
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        with runtime_lock(self.paths.models_dir, self.spec.name, timeout=self.spec.lock_timeout,
                          purpose=f"venom_runtime {self.spec.name} {state}"):
            plan = self._plan(state, model)
            result = dict(plan)
            if not plan["changed"]:
                return result
            return self._apply(state, model, plan, result, mode)

    def _plan(self, state: str, model: str | None) -> dict:
        """What would change (also the check-mode answer)."""
        mode = self.resolve_mode()
        before = self.status()
        current = self.current_activation()
        desired, entry = (current, None) if state == "stopped" else self.desired_activation(model)
        marked = self._marked_active()
        marked_name = marked["name"] if marked else None
        if self.spec.name == "ollama":
            current_model = marked_name
            desired_model = desired.model if desired else None
        else:
            current_model = current.model if current else None
            desired_model = desired.model if desired else None
        result = {"changed": False, "mode": mode, "name": self.spec.name, "url": self.url, "state": state,
                  "model": desired_model if state != "stopped" else current_model, "previous_model": current_model,
                  "recovered": False, "rolled_back": False, "actions": []}
        actions = result["actions"]
        if state == "stopped":
            if before["running"] or before.get("crashed"):
                actions.append("stop")
        else:
            needs_restart = state == "restarted"
            if self.spec.name == "vllm":
                if desired is None and mode == "process":
                    raise RuntimeControlError("vLLM has no model to serve on this host yet.",
                                              fix="Set 'model' to an installed model (see venom_model).")
                if desired is not None and current is not None and desired.as_dict() != current.as_dict():
                    needs_restart = True
                    actions.append("activate")
                elif desired is not None and current is None:
                    actions.append("activate")
                    needs_restart = needs_restart or before["running"]
            elif desired_model and (desired_model != current_model or not before["healthy"]
                                    or not self._ollama_loaded(desired_model)):
                actions.append("activate")
            if self.spec.name == "ollama" and mode == "process" and current and current.process and \
                    desired and desired.process != current.process and before["running"]:
                needs_restart = True
            if before.get("crashed"):
                result["recovered"] = True
                actions.insert(0, "recover")
            if not before["running"]:
                actions.append("start")
            elif needs_restart:
                actions.append("restart")
            elif not self._server_healthy(before):
                actions.append("restart-unhealthy")
            if self.spec.name == "vllm" and desired and desired.model and desired.model != marked_name:
                actions.append("mark-active")
        result["changed"] = bool(actions)
        after_state = "stopped" if state == "stopped" else "started"
        result["diff"] = {
            "before": {"state": "started" if before["running"] else "stopped", "model": current_model,
                       "healthy": before["healthy"], "mode": mode},
            "after": {"state": after_state, "model": result["model"], "healthy": after_state == "started", "mode": mode},
        }
        result["_desired"] = desired
        result["_current"] = current
        result["_before"] = before
        result["_entry"] = entry
        return result

    def _server_healthy(self, before: dict) -> bool:
        """The server itself answers (Ollama: a model that is not loaded is no reason to restart it)."""
        if self.spec.name == "ollama":
            return health.ollama_version(self.url) is not None
        return before["healthy"]

    def _ollama_loaded(self, model: str) -> bool:
        try:
            return model in health.ollama_loaded(self.url)
        except (OSError, RuntimeControlError):
            return False

    def _apply(self, state: str, model: str | None, plan: dict, result: dict, mode: str) -> dict:
        desired, current, before = plan["_desired"], plan["_current"], plan["_before"]
        actions = plan["actions"]
        self.touched = True
        journal = Journal(self.spec.models_dir)
        op_type = "stop" if state == "stopped" else ("activate" if "activate" in actions else
                                                     ("restart" if state == "restarted" else "start"))
        op = journal.start(op_type, desired.model if desired else None, provider=desired.provider if desired else None,
                           message=f"{self.spec.name}: {', '.join(actions)}")
        result["operation"] = {"id": op.id, "type": op_type}
        self._recovering = bool(result.get("recovered"))
        t0 = time.monotonic()
        try:
            if state == "stopped":
                result["stop"] = self._stop()
                self._write_state(current, {"stopped_at": iso()})
            else:
                self._apply_started(state, plan, result, desired, current, before)
        except VenomError as exc:
            op.fail(str(exc))
            raise
        result["seconds"] = round(time.monotonic() - t0, 3)
        op.complete(f"{self.spec.name}: {', '.join(actions)} done in {result['seconds']}s")
        result["pid"] = self.status()["pid"] if state != "stopped" else None
        return result

    def _apply_started(self, state, plan, result, desired, current, before) -> None:
        actions = plan["actions"]
        if self.spec.name == "vllm" and set(actions) <= {"restart-unhealthy", "mark-active"} \
                and "/health: " in (before.get("health") or ""):
            # Running, same activation, not answering yet: most likely still loading (a unit that
            # was just started). Wait for it rather than throwing a minute of loading away.
            try:
                result["health_seconds"] = self._wait_healthy(desired, "vLLM")["seconds"]
                actions[:] = [a for a in actions if a != "restart-unhealthy"] + ["waited-until-healthy"]
                result["changed"] = "mark-active" in actions
                if desired and desired.model:
                    self._mark_active(desired.model, desired.provider)
                return
            except VenomError:
                pass  # not loading but stuck: restart it
        restart = any(a in actions for a in ("restart", "restart-unhealthy", "recover")) or (
            self.spec.name == "vllm" and "activate" in actions and before["running"])
        if before["running"] and restart or before.get("crashed"):
            result["stop"] = self._stop()
        if self.spec.name == "vllm":
            needs_start = restart or not before["running"]
            if needs_start:
                try:
                    self._start(desired)
                    what = f"vLLM serving '{desired.served_model_name if desired else '?'}'"
                    result["health_seconds"] = self._wait_healthy(desired, what)["seconds"]
                except VenomError as exc:
                    self._rollback_vllm(exc, desired, current, result)
            self._write_state(desired)
            if desired and desired.model:
                self._mark_active(desired.model, desired.provider)
            return
        # Ollama: the server, then the model
        if restart or not before["running"]:
            self._start(desired)
            result["health_seconds"] = self._wait_healthy(desired, "Ollama")["seconds"]
        previous = plan["previous_model"]
        want = desired.model if desired else None
        if want:
            try:
                self._ollama_activate(want, previous)
            except VenomError as exc:
                rolled = bool(previous and previous != want and self._ollama_loaded(previous))
                if not rolled and previous and previous != want:
                    try:  # a restart unloaded it: load it again
                        self._ollama_activate(previous, None)
                        rolled = True
                    except VenomError:
                        rolled = False
                result["rolled_back"] = rolled
                raise RuntimeControlError(
                    f"Activating '{want}' on Ollama failed: {exc.msg}"
                    + (f" Rolled back: '{previous}' stays the active model." if rolled else ""),
                    fix=exc.fix, rolled_back=rolled, previous_model=previous) from None
            self._mark_active(want, "ollama")
        elif plan["previous_model"]:
            # restarted server with a recorded active model: load it again
            self._ollama_activate(plan["previous_model"], None)
        self._write_state(desired)

    def _rollback_vllm(self, exc: VenomError, desired: Activation | None, current: Activation | None, result: dict):
        """The new activation failed its gate: restore the previous one (if any, and allowed)."""
        reason = exc.msg
        try:
            self._stop()
        except VenomError as stop_exc:
            reason += f" Stopping the failed server also failed: {stop_exc.msg}"
        can = (self.spec.rollback and current is not None and current.model_path
               and desired is not None and current.as_dict() != desired.as_dict())
        if not can:
            if self.mode == "process" or current is None:
                self._write_state(current)
            raise RuntimeControlError(
                f"vLLM did not become healthy with '{desired.model if desired else '?'}': {reason}"
                + (" Rollback is off, so" if not self.spec.rollback and current else
                   " There is no previous model to go back to, so")
                + " the runtime is left stopped.",
                fix=exc.fix, rolled_back=False, log_tail=exc.details.get("log_tail")) from None
        try:
            self._start(current)
            self._wait_healthy(current, f"vLLM serving '{current.served_model_name}' (rollback)")
        except VenomError as rb_exc:
            self._write_state(current)
            raise RuntimeControlError(
                f"vLLM did not become healthy with '{desired.model}': {reason} Rolling back to "
                f"'{current.model or current.model_path}' failed too: {rb_exc.msg}",
                fix="Read both log excerpts; fix the previous model or activate a working one.",
                rolled_back=False) from None
        self._write_state(current)
        result["rolled_back"] = True
        raise RuntimeControlError(
            f"Activating '{desired.model}' failed, so venom_runtime rolled back: '{current.model or current.model_path}' "
            f"is serving again and healthy. Why '{desired.model}' failed: {reason}",
            fix=exc.fix, rolled_back=True, previous_model=current.model, failed_model=desired.model,
            log_tail=exc.details.get("log_tail")) from None


def runtimes_status(models_dir: str | None, runner=None, api_key: str | None = None) -> dict:
    """Every runtime's status on this host (read-only), keyed by name: the facts' ``venom_runtimes``.

    A runtime that venom_runtime never managed and whose unit is not installed is reported with
    ``configured: false`` and no health request is made for it.
    """
    out = {}
    for name in RUNTIMES:
        ctrl = RuntimeController.from_state(models_dir, name, runner=runner,
                                            api_key=api_key if name == "vllm" else None)
        configured = ctrl.configured()
        if configured:
            st = ctrl.status()
        else:
            st = {"name": name, "mode": ctrl.resolve_mode(), "url": ctrl.url, "running": False, "healthy": False,
                  "health": "not configured on this host", "pid": None, "port": ctrl.spec.port, "model": None,
                  "model_path": None, "served_model_name": None, "crashed": False, "restarts": None}
        st["configured"] = configured
        out[name] = st
    return out


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def public_result(result: dict) -> dict:
    """The result without the planner's private keys."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
