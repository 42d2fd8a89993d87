# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test creates its sanity/units virtualenvs without pip and runs a cached
``get_pip_<version>.py`` in them with pip's install arguments. Its usual download host
(ci-files.testing.ansible.com) is not reachable from every machine; this script does the same
job with the standard library's bundled pip (``ensurepip``) and then ``pip install`` from the
configured package index. ``scripts/test.sh`` copies it into ansible-test's cache.
"""
from __future__ import annotations

import ensurepip
import os
import subprocess
import sys


def main() -> int:
    ensurepip.bootstrap(upgrade=True, default_pip=True)
    # get-pip options that plain pip does not know
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    if not any(not a.startswith("-") for a in args):
        return 0
    env = dict(os.environ)
    # ansible-test hides pip's configuration from the bootstrap; the machine's configuration
    # (index mirror, CA bundle of a TLS-inspecting proxy) is what makes the index reachable.
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        del env["PIP_CONFIG_FILE"]
    return subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env)


if __name__ == "__main__":
    sys.exit(main())
