# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fixtures of the fleet tier: a test names them as arguments, nothing to import.

* ``fleet`` (session): the nspawn test hosts (tests/lib/fleet_env.py).
* ``olah`` (session): a real Hugging Face mirror with the test repositories (tests/lib/olah_env.py).
* ``oci_registry``, ``ollama_models`` (session): an OCI registry with the test models
  (tests/lib/ollama_env.py).
"""
from __future__ import annotations

from tests.lib.fleet_env import fleet
from tests.lib.olah_env import olah
from tests.lib.ollama_env import oci_registry, ollama_models

__all__ = ["fleet", "olah", "oci_registry", "ollama_models"]
