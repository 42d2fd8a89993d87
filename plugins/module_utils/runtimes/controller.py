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
    API key only as a keyed digest), ``<name>.pid`` and ``<name>.log`` the process-mode process. The
    manifest marks the active model (``active: true, active_runtime: <name>``). A per-runtime
    inter-process lock serialises every start, stop and activation on the host.

Structure (as community.docker splits ``Engine`` and ``EngineDriver``)
    ``RuntimeController`` plans a run (``spec.Plan``) and carries it out over two strategy
    objects: a **backend** (``backends``: the systemd unit, or a local process tree) that starts,
    stops and reports on the server, and an **engine** (``engines``: vLLM, Ollama) that knows the
    server's command line, health and what activating a model means.
"""
from __future__ import annotations

import os
import time

from ansible_collections.venom.models.plugins.module_utils.errors import RuntimeControlError, ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.host import gpu
from ansible_collections.venom.models.plugins.module_utils.runtimes import health, placement
from ansible_collections.venom.models.plugins.module_utils.runtimes.backends import (
    ProcessBackend, SystemdBackend, uptime_seconds)
from ansible_collections.venom.models.plugins.module_utils.runtimes.engines import ENGINES
from ansible_collections.venom.models.plugins.module_utils.runtimes.process import run_secrets, tree_rss_bytes
from ansible_collections.venom.models.plugins.module_utils.runtimes.spec import (
    RUNTIMES, STATES, Activation, Plan, RuntimeSpec)
from ansible_collections.venom.models.plugins.module_utils.runtimes.systemd import Systemd, systemd_booted
from ansible_collections.venom.models.plugins.module_utils.store.atomic import atomic_write_json
from ansible_collections.venom.models.plugins.module_utils.store.journal import Journal
from ansible_collections.venom.models.plugins.module_utils.store.locks import runtime_lock
from ansible_collections.venom.models.plugins.module_utils.store.manifest import Manifest
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.store.safeio import check_dir, read_state_json
from ansible_collections.venom.models.plugins.module_utils.store.validation import validate_instance_name
from ansible_collections.venom.models.plugins.module_utils.timeutil import iso


MAX_STATE_BYTES = 1 << 20


class RuntimeController:
    """Controls one runtime on this host. ``runner(argv) -> (rc, out, err)`` runs systemctl."""

    def __init__(self, spec: RuntimeSpec, runner=None, check_mode: bool = False, warn=None,
                 systemctl: str = "systemctl", journalctl: str = "journalctl", nvml=None):
        self.spec = spec
        self.nvml = nvml  # the NVML module (None: pynvml); unit tests pass a fake
        self.touched = False  # set once the run began changing things (a failure then still changed them)
        self.runner = runner
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.paths = StatePaths.of(spec.models_dir)
        self.state_dir = runtimes_dir(self.paths)
        self.pid_file = os.path.join(self.state_dir, f"{spec.name}.pid")
        self.log_file = spec.log_file or os.path.join(self.state_dir, f"{spec.name}.log")
        self.state_file = os.path.join(self.state_dir, f"{spec.name}.json")
        if spec.port is None:  # an instance keeps the port it was configured with
            spec.port = self.read_state().get("port")
            if not isinstance(spec.port, int):
                raise ValidationError(f"The runtime instance '{spec.name}' has no port yet.",
                                      fix="Set 'port': each instance needs its own.")
        self.url = health.base_url(spec.host, spec.port)
        self.manifest = Manifest(self.paths, lock_timeout=spec.lock_timeout)
        self._systemd = Systemd(runner, systemctl, journalctl) if runner is not None else None
        self.engine = ENGINES[spec.runtime](self)
        self.plan: Plan | None = None  # the last run's plan
        self._backend = None
        self.mode = None
        self._recovering = False  # the next state write counts a crash recovery (process-mode restarts)

    # -- mode and backend ------------------------------------------------------------------------
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
                                          fix=f"Install the runtime with the venom.models.{self.spec.runtime} role, "
                                              "set 'unit', or use mode: process.")
            else:
                self.mode = "process"
        else:
            self.mode = "process"
        return self.mode

    @property
    def backend(self):
        """The backend of the resolved mode: the systemd unit or the local process tree."""
        mode = self.resolve_mode()
        if self._backend is None or self._backend.mode != mode:
            self._backend = (SystemdBackend(self.spec, self._systemd) if mode == "systemd"
                             else ProcessBackend(self.spec, self.pid_file, self.log_file))
        return self._backend

    # -- state -----------------------------------------------------------------------------------
    def read_state(self) -> dict:
        """The state file's document ({} if there is none); a symlink in its place is refused."""
        return read_state_doc(self.paths, self.spec.name)

    def write_state(self, activation: Activation | None, extra: dict | None = None) -> None:
        check_runtimes_dir(self.paths)
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        doc = {"kind": "venom.models/runtime", "name": self.spec.name, "runtime": self.spec.runtime,
               "mode": self.mode,
               "activation": activation.as_dict() if activation else None, "url": self.url,
               "host": self.spec.host, "port": self.spec.port,
               "gpus": activation.gpus if activation else None, "gpu_share": bool(self.spec.gpu_share)}
        doc.update(self.backend.state_fields(self.engine))
        doc["updated_at"] = iso()
        previous = self.read_state()
        doc["restarts"] = int(previous.get("restarts") or 0) + (1 if self._recovering else 0)
        self._recovering = False
        doc.update(extra or {})
        atomic_write_json(self.state_file, doc, mode=0o640)

    def current_activation(self) -> Activation | None:
        return self.engine.current_activation()

    def desired_activation(self, model: str | None) -> tuple[Activation | None, dict | None]:
        """The activation to have after this run, and the manifest entry of the model (if any)."""
        return self.engine.desired_activation(model, self.current_activation())

    def status(self) -> dict:
        """Read-only: mode, running, healthy, pid, url, active model (for facts and for ensure)."""
        mode = self.resolve_mode()
        st = self.backend.status()
        act = self.current_activation()
        healthy, reason = self.engine.health(act) if st["running"] else (False, "not running")
        out = {"name": self.spec.name, "runtime": self.spec.runtime, "mode": mode, "url": self.url, "healthy": healthy, "health": reason,
               "model": act.model if act else None, "model_path": act.model_path if act else None,
               "served_model_name": act.served_model_name if act else None}
        out.update(st)
        out["port"] = self.spec.port
        if mode == "process":
            out["restarts"] = int(self.read_state().get("restarts") or 0)
        out.update(self.backend.describe(self.engine))
        return out

    def resources(self, status: dict, gpu_host=None) -> dict:
        """What the running instance uses: uptime of its main process, RSS of its whole process
        tree, VRAM of that tree on all GPUs (NVML per-process figures; None without NVML)."""
        pids = self.backend.tree_pids() if status.get("running") else []
        act = self.current_activation()
        return {"uptime": uptime_seconds(status.get("pid")), "pids": pids,
                "rss_bytes": tree_rss_bytes(pids) if pids else None,
                "vram_bytes": gpu_host.vram_of(pids) if gpu_host is not None and pids else None,
                "gpus": act.gpus if act else None, "cpus": (act.process or {}).get("cpus") if act else None}

    @classmethod
    def from_state(cls, models_dir: str | None, name: str, runner=None, api_key: str | None = None,
                   **kwargs) -> "RuntimeController":
        """A controller for the runtime as venom_runtime last configured it on this host (mode,
        host, port, unit, env file from its state file), e.g. for facts: ``.status()``."""
        doc = read_state_doc(StatePaths.of(models_dir), name)
        spec = RuntimeSpec(name=name, runtime=doc.get("runtime"), models_dir=models_dir, mode=doc.get("mode") or "auto",
                           unit=doc.get("unit"), host=doc.get("host") or "127.0.0.1", port=doc.get("port"),
                           env_file=doc.get("env_file") or None, log_file=doc.get("log_file"), api_key=api_key)
        return cls(spec, runner=runner, **kwargs)

    def configured(self) -> bool:
        """venom_runtime has managed this runtime on this host, or its systemd unit is installed."""
        return os.path.lexists(self.state_file) or self.resolve_mode() == "systemd"

    # -- the manifest ----------------------------------------------------------------------------
    def mark_active(self, model: str, provider: str) -> bool:
        """Mark ``model`` as served by this instance in the manifest (``Manifest.mark_active``);
        True if that changed it."""
        return self.manifest.mark_active(self.spec.name, model, provider)

    def marked_active(self) -> dict | None:
        """The manifest entry of the model this instance is marked to serve (None: none)."""
        return self.manifest.served_by(self.spec.name)

    def check_port_free_of_instances(self) -> None:
        """Refuse a port another instance of this host is configured with (and not stopped)."""
        for name, doc in instance_states(self.paths).items():
            if name != self.spec.name and doc.get("port") == self.spec.port and "stopped_at" not in doc:
                raise ValidationError(f"Port {self.spec.port} is the port of the runtime instance '{name}' on this host.",
                                      fix=f"Give '{self.spec.name}' another port, or stop '{name}' first.")

    # -- the one entry point ---------------------------------------------------------------------
    def ensure(self, state: str, model: str | None = None) -> dict:
        if state not in STATES:
            raise ValidationError(f"Unknown state {state!r}.", fix=f"Use one of {', '.join(STATES)}.")
        if model is not None and state == "stopped":
            raise ValidationError("'model' cannot be combined with state: stopped.",
                                  fix="Use state: started (or restarted) to activate a model.")
        self.resolve_mode()
        if self.check_mode:
            self.plan = self.make_plan(state, model)
            return self.plan.result()
        self.paths.ensure()
        check_runtimes_dir(self.paths)
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        with runtime_lock(self.paths, self.spec.name, timeout=self.spec.lock_timeout,
                          purpose=f"venom_runtime {self.spec.name} {state}"):
            self.plan = plan = self.make_plan(state, model)
            result = plan.result()
            if not plan.changed:
                return result
            return self._apply(plan, result)

    def make_plan(self, state: str, model: str | None) -> Plan:
        """What would change (also the check-mode answer)."""
        mode = self.resolve_mode()
        if state != "stopped":
            self.check_port_free_of_instances()
        before = self.status()
        current = self.current_activation()
        desired, entry = (current, None) if state == "stopped" else self.desired_activation(model)
        marked = self.marked_active()
        marked_name = marked["name"] if marked else None
        preflight = self.preflight(desired, entry) if state != "stopped" else []
        plan = Plan(preflight=preflight, name=self.spec.name, state=state, mode=mode, url=self.url, before=before, current=current,
                    desired=desired, entry=entry, current_model=self.engine.current_model(current, marked))
        actions = plan.actions
        if state == "stopped":
            if before["running"] or before.get("crashed"):
                actions.append("stop")
            return plan
        needs_restart = self.engine.plan_activation(plan, marked_name) or state == "restarted"
        if before.get("crashed"):
            plan.recovered = True
            actions.insert(0, "recover")
        if not before["running"]:
            actions.append("start")
        elif needs_restart:
            actions.append("restart")
        elif not self.engine.server_healthy(before):
            actions.append("restart-unhealthy")
        self.engine.plan_marks(plan, marked_name)
        return plan

    def preflight(self, desired: Activation | None, entry: dict | None) -> list:
        """CPU and GPU placement and GPU memory checks (``placement``), before anything is stopped."""
        gpus = desired.gpus if desired else None
        if not gpus and not self.spec.cpus:
            return []
        states = instance_states(self.paths)
        checks = placement.check_cpus(
            self.spec.name, self.spec.cpus, self.resolve_mode(), os.sched_getaffinity(0),
            others=[{"name": name, "cpus": ((act.process or {}).get("cpus"))}
                    for name, doc in states.items()
                    if name != self.spec.name and "stopped_at" not in doc
                    and (act := Activation.from_dict(doc.get("activation")))])
        if not gpus:
            return checks
        gpu_host, reason = gpu.probe(self.nvml)
        if entry is None and desired.model:
            entry = next((e for e in self.manifest.load()["models"]
                          if e["name"] == desired.model and e["provider"] == desired.provider), None)
        others = []
        for name, doc in states.items():
            act = Activation.from_dict(doc.get("activation"))
            if name != self.spec.name and act and act.gpus and "stopped_at" not in doc:
                others.append({"name": name, "gpus": act.gpus, "gpu_share": bool(doc.get("gpu_share")),
                               "utilization": act.gpu_memory_utilization})
        tp = desired.flag("--tensor-parallel-size")
        return checks + placement.check_placement(
            self.spec.name, gpus, gpu_host, reason, gpu_share=self.spec.gpu_share,
            utilization=desired.gpu_memory_utilization, tensor_parallel_size=int(tp) if tp and tp.isdigit() else None,
            weights_bytes=int((entry or {}).get("size_bytes") or 0),
            own_pids=self.backend.tree_pids() if gpu_host else (), others=others)

    def restart_planned(self, plan: Plan) -> bool:
        """The plan stops a running server and starts it again."""
        return any(a in plan.actions for a in ("restart", "restart-unhealthy", "recover")) or \
            self.engine.restarts_for(plan)

    def _apply(self, plan: Plan, result: dict) -> dict:
        desired, actions, state = plan.desired, plan.actions, plan.state
        self.touched = True
        journal = Journal(self.paths, secrets=run_secrets(self.spec.api_key, self.spec.env))
        op_type = "stop" if state == "stopped" else ("activate" if "activate" in actions else
                                                     ("restart" if state == "restarted" else "start"))
        op = journal.start(op_type, desired.model if desired else None, provider=desired.provider if desired else None,
                           message=f"{self.spec.name}: {', '.join(actions)}")
        result["operation"] = {"id": op.id, "type": op_type}
        self._recovering = plan.recovered
        t0 = time.monotonic()
        try:
            if state == "stopped":
                result["stop"] = self.backend.stop()
                self.write_state(plan.current, {"stopped_at": iso()})
            else:
                self.engine.apply_started(plan, result)
        except VenomError as exc:
            op.fail(str(exc))
            raise
        result["seconds"] = round(time.monotonic() - t0, 3)
        op.complete(f"{self.spec.name}: {', '.join(actions)} done in {result['seconds']}s")
        result["pid"] = self.status()["pid"] if state != "stopped" else None
        return result


def runtimes_dir(paths: StatePaths) -> str:
    """``<models_dir>/.venom/runtimes``: the runtimes' state, PID and log files."""
    return os.path.join(paths.state_dir, "runtimes")


def check_runtimes_dir(paths: StatePaths) -> str:
    """Refuse a ``.venom`` or ``.venom/runtimes`` that is a symlink (or, as root, a models_dir or
    ``.venom`` another user could change: ``StatePaths.check``); returns the runtimes directory."""
    paths.check()
    path = runtimes_dir(paths)
    check_dir(path, "state directory")
    return path


def read_state_doc(paths: StatePaths, name: str) -> dict:
    """The state file of instance ``name``, opened without following a symlink (refused: ValidationError,
    also for a symlinked state directory); {} when it is missing, too large or not a JSON object."""
    path = os.path.join(check_runtimes_dir(paths), f"{name}.json")
    try:
        doc = read_state_json(path, MAX_STATE_BYTES, "runtime state file")
    except FileNotFoundError:
        return {}
    return doc if isinstance(doc, dict) else {}


def instance_states(models_dir: str | StatePaths | None) -> dict:
    """The state documents of the runtime instances venom_runtime manages on this host, by name.
    A state file that is a symlink is left out (``venom_runtime`` on that instance refuses it)."""
    state_dir = check_runtimes_dir(StatePaths.of(models_dir))
    out = {}
    try:
        names = sorted(os.listdir(state_dir))
    except OSError:
        return out
    for file_name in names:
        name, ext = os.path.splitext(file_name)
        if ext != ".json":
            continue
        try:
            validate_instance_name(name)
            doc = read_state_json(os.path.join(state_dir, file_name), MAX_STATE_BYTES, "runtime state file")
        except (OSError, VenomError):
            continue
        if isinstance(doc, dict) and doc.get("kind") == "venom.models/runtime":
            out[name] = doc
    return out


def runtimes_status(models_dir: str | None, runner=None, api_key: str | None = None, nvml=None) -> dict:
    """Every runtime instance's status on this host (read-only), keyed by instance name: the facts'
    ``venom_runtimes``. The instances ``vllm`` and ``ollama`` are always listed; one that
    venom_runtime never managed and whose unit is not installed is reported with
    ``configured: false`` and no health request is made for it.

    Each: name, runtime, mode, unit (systemd), port, url, model, healthy, health, pid, running,
    crashed, restarts, configured, and uptime (s), gpus, cpus (process mode), pids (the whole tree), rss_bytes (of the
    tree), vram_bytes (NVML's per-process figures summed over the tree; None without NVML).
    """
    gpu_host, _reason = gpu.probe(nvml)
    out = {}
    for name in sorted(set(RUNTIMES) | set(instance_states(models_dir))):
        ctrl = RuntimeController.from_state(models_dir, name, runner=runner)
        if ctrl.spec.runtime == "vllm":
            ctrl.spec.api_key = api_key
        configured = ctrl.configured()
        if configured:
            st = ctrl.status()
            st.update(ctrl.resources(st, gpu_host))
        else:
            st = {"name": name, "runtime": ctrl.spec.runtime, "mode": ctrl.resolve_mode(), "url": ctrl.url, "running": False, "healthy": False,
                  "health": "not configured on this host", "pid": None, "port": ctrl.spec.port, "model": None,
                  "model_path": None, "served_model_name": None, "crashed": False, "restarts": None,
                  "uptime": None, "pids": [], "rss_bytes": None, "vram_bytes": None, "gpus": None, "cpus": None}
        st.setdefault("unit", None)
        st["configured"] = configured
        out[name] = st
    return out


def public_result(result: dict) -> dict:
    """The result without private keys."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
