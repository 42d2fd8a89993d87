# SPDX-License-Identifier: GPL-3.0-or-later
"""The data of runtime control: what the caller asks for (``RuntimeSpec``), what a runtime serves
(``Activation``) and what a run will do (``Plan``). Plain data, no I/O."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field, fields

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.runtimes import process as proc
from ansible_collections.venom.models.plugins.module_utils.store.locks import DEFAULT_LOCK_TIMEOUT
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.store.safeio import keyed_digest
from ansible_collections.venom.models.plugins.module_utils.store.validation import RUNTIMES, validate_instance_name

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


def sha(text: str | None, models_dir: str | None, create: bool = False) -> str | None:
    """A keyed digest (per-host 0600 key, see store.safeio.keyed_digest), never a plain sha256 of a secret.

    Only a real run's desired activation passes ``create=True``: check mode and readers (facts)
    never create the key file."""
    return keyed_digest(StatePaths(models_dir).state_dir, text, create=create)


def _int_list(option: str, value, what: str, fix: str) -> list:
    """``value`` as a list of ints, or a ValidationError naming ``option`` (a string is refused, not split
    into its characters)."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError(value)
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ValidationError(f"'{option}' must be a list of {what}, not {value!r}.", fix=fix) from None


@dataclass
class RuntimeSpec:
    """What the caller asks for (the module's options). None means: keep what is configured.

    ``name`` is the instance; ``runtime`` its engine (vllm, ollama). The instances named ``vllm``
    and ``ollama`` imply their runtime and keep the single-runtime names (``vllm.service``,
    ``/etc/venom-models/vllm.env``, default ports); any other instance of vLLM is a unit of the
    vllm role's template unit, ``vllm@<name>.service``, with ``/etc/venom-models/vllm-<name>.env``,
    and needs its own port.
    """

    name: str
    runtime: str | None = None
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
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    log_file: str | None = None
    gpus: list | None = None  # GPU indexes (NVML order) for this instance only; [] = none (CPU)
    gpu_share: bool = False
    cpus: list | None = None  # process mode: the CPUs the instance's whole process tree may run on

    def __post_init__(self):
        validate_instance_name(self.name)
        if self.runtime is None:
            if self.name not in RUNTIMES:
                raise ValidationError(f"The runtime instance {self.name!r} needs 'runtime': only the instances named "
                                      f"{' and '.join(RUNTIMES)} imply theirs.",
                                      fix=f"Set runtime to one of {', '.join(RUNTIMES)}.")
            self.runtime = self.name
        if self.runtime not in RUNTIMES:
            raise ValidationError(f"Unknown runtime {self.runtime!r}.", fix=f"Use one of {', '.join(RUNTIMES)}.")
        if self.name in RUNTIMES and self.name != self.runtime:
            raise ValidationError(f"The instance name {self.name!r} is the name of the other runtime.",
                                  fix=f"Name the {self.runtime} instance differently, or use name: {self.runtime}.")
        if self.mode not in MODES:
            raise ValidationError(f"Unknown mode {self.mode!r}.", fix=f"Use one of {', '.join(MODES)}.")
        d = DEFAULTS[self.runtime]
        if self.default_instance:
            self.unit = self.unit or d["unit"]
            self.port = int(self.port or d["port"])
            if self.env_file is None:
                self.env_file = d["env_file"]
        else:
            self.unit = self.unit or f"{self.runtime}@{self.name}.service"
            self.port = int(self.port) if self.port else None  # else: the instance's recorded port
            if self.env_file is None and d["env_file"]:
                self.env_file = os.path.join(os.path.dirname(d["env_file"]), f"{self.runtime}-{self.name}.env")
        if isinstance(self.command, str):
            self.command = shlex.split(self.command)
        if self.command is not None and not self.command:
            raise ValidationError("'command' is empty.", fix="Give the runtime's executable and its first arguments.")
        for key, value in (("health_timeout", self.health_timeout), ("stop_timeout", self.stop_timeout)):
            if value is None or value < 0:
                raise ValidationError(f"'{key}' must be zero or more seconds, not {value!r}.")
        if self.args is not None:
            self.args = [str(a) for a in self.args]
        if self.gpus is not None:
            self.gpus = _int_list("gpus", self.gpus, "GPU indexes", "Give indexes as nvidia-smi lists them, e.g. gpus: [0, 1].")
            if self.gpus and self.runtime != "vllm":
                raise ValidationError("'gpus' places vLLM instances; Ollama spreads its models over the GPUs itself.",
                                      fix="Leave 'gpus' out for Ollama (its unit's CUDA_VISIBLE_DEVICES limits it).")
            if self.gpus and self.tensor_parallel_size is None:
                self.tensor_parallel_size = len(self.gpus)
        if self.cpus is not None:
            self.cpus = _int_list("cpus", self.cpus, "CPU numbers",
                                  "Give CPU numbers as /proc/cpuinfo (or lscpu) lists them, e.g. cpus: [0, 1].")
            if any(c < 0 for c in self.cpus) or len(set(self.cpus)) != len(self.cpus):
                raise ValidationError(f"'cpus' {self.cpus} has a negative number or lists a CPU twice.",
                                      fix="List each CPU number (0 or more) once.")
            self.cpus = sorted(self.cpus) or None
        if self.env is not None:
            self.env = {str(k): str(v) for k, v in self.env.items()}

    @classmethod
    def from_options(cls, options: dict) -> "RuntimeSpec":
        """The spec of a task's options (``venom_runtime``'s): each field from the option of its name
        (other options are ignored); ``env`` and ``secret_env`` are merged, a variable in both refused."""
        env, secret = options.get("env") or {}, options.get("secret_env") or {}
        both = sorted(set(env) & set(secret))
        if both:
            raise ValidationError(f"The variables {', '.join(both)} are given in both env and secret_env.",
                                  fix="Give each variable once: secrets in secret_env, the rest in env.")
        command = options.get("command")
        if command is not None and not isinstance(command, (str, list)):
            raise ValidationError("'command' must be a list or a string.",
                                  fix="Give the executable and its first arguments as a list, or as one string.")
        given = {f.name: options[f.name] for f in fields(cls) if f.name in options}
        given["env"] = dict(env, **secret) if (env or secret) else None
        return cls(**given)

    @property
    def default_instance(self) -> bool:
        """The instance named after its runtime (the single-runtime names and defaults)."""
        return self.name == self.runtime


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
    gpus: list | None = None  # CUDA_VISIBLE_DEVICES of the instance (None: all the host shows it)

    def as_dict(self) -> dict:
        return {"model": self.model, "provider": self.provider, "model_path": self.model_path,
                "served_model_name": self.served_model_name, "flags": list(self.flags),
                "api_key_sha256": self.api_key_sha256, "process": self.process, "gpus": self.gpus}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Activation | None":
        if not isinstance(data, dict):
            return None
        keys = ("model", "provider", "model_path", "served_model_name", "api_key_sha256", "process", "gpus")
        return cls(**{k: data.get(k) for k in keys}, flags=list(data.get("flags") or []))

    def flag(self, name: str) -> str | None:
        """The value of a ``--flag value`` or ``--flag=value`` vLLM flag (None if absent)."""
        for i, item in enumerate(self.flags):
            if item == name and i + 1 < len(self.flags):
                return self.flags[i + 1]
            if item.startswith(name + "="):
                return item.split("=", 1)[1]
        return None

    @property
    def gpu_memory_utilization(self) -> float | None:
        value = self.flag("--gpu-memory-utilization")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


def _placement(act: Activation | None) -> dict:
    """Where an activation runs, as the diff shows it: its GPUs and (process mode) its CPUs."""
    return {"gpus": act.gpus if act else None, "cpus": (act.process or {}).get("cpus") if act else None}


@dataclass
class Plan:
    """What one run of ``RuntimeController.ensure`` will do, decided before anything changes."""

    name: str
    state: str
    mode: str
    url: str
    before: dict
    current: Activation | None
    desired: Activation | None
    entry: dict | None = None
    current_model: str | None = None
    actions: list = field(default_factory=list)
    recovered: bool = False
    preflight: list = field(default_factory=list)  # the GPU checks passed (text)
    # (argv, env) of the server that ran before this run stopped it, read from /proc: kept only in
    # memory (the env may hold secrets) to start exactly that again on a rollback.
    previous_launch: tuple | None = field(default=None, repr=False)

    @property
    def model(self) -> str | None:
        if self.state == "stopped":
            return self.current_model
        return self.desired.model if self.desired else None

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def diff(self) -> dict:
        after_state = "stopped" if self.state == "stopped" else "started"
        before_state = "started" if self.before["running"] else "stopped"
        return {
            "before": {"state": before_state, "model": self.current_model,
                       "healthy": self.before["healthy"], "mode": self.mode,
                       **_placement(self.current if before_state == "started" else None)},
            "after": {"state": after_state, "model": self.model, "healthy": after_state == "started",
                      "mode": self.mode, **_placement(self.desired if after_state == "started" else None)},
        }

    def result(self) -> dict:
        """The module's result as planned (the check-mode answer); the run adds to it."""
        return {"changed": self.changed, "mode": self.mode, "name": self.name, "url": self.url,
                "state": self.state, "model": self.model, "previous_model": self.current_model,
                "recovered": self.recovered, "rolled_back": False, "actions": self.actions,
                "diff": self.diff(), **({"preflight": self.preflight} if self.preflight else {})}
