# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom.models.ollama installing from a release archive URL with a checksum, on a fleet host.

The archive holds the Ollama test double as bin/ollama (no Ollama binary can be had here) and is
served over HTTP from this machine; the role downloads it, checks it, unpacks it and runs it
under the hardened unit. The molecule scenario covers the other install methods.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import tarfile

import pytest

from tests.lib.ansible_run import run_playbook
from tests.lib.servers import LocalHTTPServer, QuietHandler

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOUBLE = os.environ.get("VENOM_OLLAMA_DOUBLE") or os.path.join(REPO, "tests", "doubles", "ollama", "ollama_test_double.py")
HTTP_PORT = 11539  # this suite's file server
HOST_INDEX = 2


def _archive(path: str, marker: str) -> str:
    """A release archive laid out like upstream's (bin/ollama, lib/ollama/...); its sha256."""
    if not os.path.isfile(DOUBLE):
        pytest.fail(f"the Ollama test double is not at {DOUBLE} (tests/doubles/ollama); set VENOM_OLLAMA_DOUBLE")
    with open(DOUBLE, encoding="utf-8") as fh:
        program = fh.read().split("\n", 1)[1]
    exe = f"#!/usr/bin/env python3\n{program}\n# {marker}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, mode in (("bin/ollama", exe, 0o755), ("lib/ollama/NOTICE", b"test double\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as fh:
        fh.write(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


class _QuietFiles(QuietHandler, http.server.SimpleHTTPRequestHandler):
    """Files of a directory, without a log line per request."""


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Two releases and a corrupt download, served on 127.0.0.1:HTTP_PORT."""
    root = tmp_path_factory.mktemp("ollama-releases")
    sums = {name: _archive(str(root / f"{name}.tgz"), name) for name in ("r1", "r2")}
    with open(root / "bad.tgz", "wb") as fh:
        fh.write(b"not the archive the checksum names")
    with LocalHTTPServer(functools.partial(_QuietFiles, directory=str(root)), port=HTTP_PORT) as server:
        yield {"url": server.url, "sha256": sums}


def _play(fleet_env, role_vars: dict, check: bool = False):
    host = fleet_env.host(HOST_INDEX).name
    plays = [{"name": "ollama", "hosts": host, "gather_facts": False,
              "roles": [{"role": "venom.models.ollama", "vars": role_vars}]}]
    return run_playbook(plays, inventory=fleet_env.inventory, check=check)


def _changed(res) -> list:
    return [r["task"] for r in res.results if r["status"] == "ok" and r["result"].get("changed")]


def _invocation(fleet_env) -> str:
    return fleet_env.ssh(HOST_INDEX, "systemctl show ollama.service -p InvocationID --value").stdout.strip()


def test_install_from_url_with_checksum(fleet, releases):
    host = fleet.host(HOST_INDEX)
    r1 = {"ollama_install_method": "url", "ollama_version": "0.33.0",
          "ollama_archive_url": f"{releases['url']}/r1.tgz",
          "ollama_archive_checksum": f"sha256:{releases['sha256']['r1']}"}

    # check mode on a fresh host: runs clean and predicts changes, touches nothing
    res = _play(fleet, r1, check=True)
    assert res.rc == 0, res.stdout[-4000:]
    assert _changed(res)
    assert fleet.ssh(host, "test -e /opt/ollama || test -e /etc/systemd/system/ollama.service", check=False).returncode == 1

    res = _play(fleet, r1)
    assert res.rc == 0, res.stdout[-4000:]
    url = f"http://127.0.0.1:{host.ollama_port}/api/version"
    out = fleet.ssh(host, "readlink /opt/ollama/current; readlink /usr/local/bin/ollama; "
                          f"python3 -c 'import urllib.request; print(urllib.request.urlopen(\"{url}\").read().decode())'").stdout
    release = f"/opt/ollama/releases/0.33.0-{releases['sha256']['r1'][:16]}"
    assert out.split("\n")[0] == release
    assert out.split("\n")[1] == "/opt/ollama/current/bin/ollama"
    assert '"version"' in out
    first = _invocation(fleet)

    # again: nothing changes, nothing is downloaded or restarted
    res = _play(fleet, r1)
    assert res.rc == 0 and _changed(res) == [], _changed(res)
    assert _invocation(fleet) == first

    # a new release: unpacked beside the old one, "current" moves, one restart
    r2 = dict(r1, ollama_archive_url=f"{releases['url']}/r2.tgz", ollama_archive_checksum=f"sha256:{releases['sha256']['r2']}")
    res = _play(fleet, r2)
    assert res.rc == 0, res.stdout[-4000:]
    second = _invocation(fleet)
    assert second != first
    starts = fleet.ssh(host, "journalctl -u ollama.service -o cat --no-pager | grep -c '^Started '").stdout.strip()
    assert starts == "2", f"expected 2 starts (install, upgrade), journal has {starts}"
    out = fleet.ssh(host, "readlink /opt/ollama/current; ls /opt/ollama/releases").stdout.split()
    assert out[0].endswith(releases["sha256"]["r2"][:16])
    assert len(out[1:]) == 2

    # a download that does not match its checksum fails, names the problem, changes nothing
    bad = dict(r1, ollama_archive_url=f"{releases['url']}/bad.tgz", ollama_archive_checksum=f"sha256:{'0' * 64}")
    res = _play(fleet, bad)
    assert res.rc != 0
    assert "checksum" in (res.stdout + res.stderr).lower()
    assert _invocation(fleet) == second
    assert fleet.ssh(host, "readlink /opt/ollama/current").stdout.strip().endswith(releases["sha256"]["r2"][:16])

    # stopped: the unit stays installed and enabled, the server does not run
    res = _play(fleet, dict(r2, ollama_service_state="stopped"))
    assert res.rc == 0, res.stdout[-4000:]
    state = fleet.ssh(host, "systemctl is-active ollama.service; systemctl is-enabled ollama.service", check=False).stdout.split()
    assert state == ["inactive", "enabled"]


def test_url_install_needs_a_checksum(fleet):
    res = _play(fleet, {"ollama_install_method": "url", "ollama_version": "0.33.0"})
    assert res.rc != 0
    assert "ollama_archive_checksum" in res.stdout + res.stderr


def test_settings_with_line_breaks_are_refused(fleet):
    res = _play(fleet, {"ollama_install_method": "path", "ollama_executable": "/bin/true",
                        "ollama_environment": {"OLLAMA_ORIGINS": "http://a\nEVIL=1"}}, check=True)
    assert res.rc != 0
    assert "line break" in res.stdout + res.stderr
