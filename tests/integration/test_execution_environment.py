# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An execution environment with venom.models: meta/execution-environment.yml and bindep.txt as
ansible-builder reads them from the built collection, and the build context `ansible-builder
create` writes for an EE definition that installs the collection's tarball. (Building the image
needs a container engine and a base image, which the tests do not have: the context is checked.)"""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.lib.ansible_run import collections_root

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(argv: list, cwd: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300, cwd=cwd)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr[-3000:]}{proc.stdout[-2000:]}"
    return proc.stdout


def _requirements(path: str) -> list:
    with open(path, encoding="utf-8") as fh:
        return [line.split("#")[0].strip() for line in fh if line.split("#")[0].strip()]


def test_ansible_builder_finds_the_collections_dependencies_and_creates_a_context(tmp_path):
    source = os.path.join(collections_root(), "ansible_collections", "venom", "models")
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path)], cwd=source)
    tarball = tmp_path / "venom-models-0.1.0.tar.gz"
    assert tarball.is_file()

    # what the EE build runs after installing the collection: its dependencies, from the installed copy
    installed = tmp_path / "installed"
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-p", str(installed), str(tarball)])
    deps = yaml.safe_load(_run([os.path.join(BIN, "ansible-builder"), "introspect", str(installed)]))
    python = [d.split("#")[0].strip() for d in deps["python"] if "from collection venom.models" in d]
    system = [d.split("#")[0].strip() for d in deps["system"] if "from collection venom.models" in d]
    assert python == _requirements(os.path.join(REPO, "requirements-target.txt"))
    assert system == _requirements(os.path.join(REPO, "bindep.txt"))
    assert "openssh-client [platform:dpkg]" in system

    definition = {
        "version": 3,
        "images": {"base_image": {"name": "registry.example.internal/ee-minimal:latest"}},
        "dependencies": {
            "ansible_core": {"package_pip": "ansible-core>=2.19,<2.20"},
            "ansible_runner": {"package_pip": "ansible-runner"},
            "galaxy": {"collections": [{"name": "/build/venom-models-0.1.0.tar.gz", "type": "file"}]},
        },
        "additional_build_files": [{"src": str(tarball), "dest": "collections"}],
        "additional_build_steps": {"prepend_galaxy": ["COPY _build/collections/venom-models-0.1.0.tar.gz /build/"]},
    }
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump(definition))
    context = tmp_path / "context"
    _run([os.path.join(BIN, "ansible-builder"), "create", "--file", "execution-environment.yml",
          "--context", str(context), "--output-filename", "Containerfile"], cwd=str(tmp_path))
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="registry.example.internal/ee-minimal:latest"' in containerfile
    assert "COPY _build/collections/venom-models-0.1.0.tar.gz /build/" in containerfile
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile, containerfile
    assert (context / "_build" / "collections" / "venom-models-0.1.0.tar.gz").read_bytes() == tarball.read_bytes()
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert galaxy["collections"] == [{"name": "/build/venom-models-0.1.0.tar.gz", "type": "file"}]
