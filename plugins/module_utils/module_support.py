# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The thin glue between AnsibleModule and the library (the only module_utils file that knows Ansible)."""
from __future__ import annotations

import os

from ansible_collections.venom.models.plugins.module_utils.errors import VenomError
from ansible_collections.venom.models.plugins.module_utils.models.available import DEFAULT_LIMIT, LISTABLE_PROVIDERS
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.store.locks import DEFAULT_LOCK_TIMEOUT
from ansible_collections.venom.models.plugins.module_utils.store.paths import DEFAULT_MODELS_DIR


def fail_from(module, exc: VenomError, **extra) -> None:
    """Fail the task with the library error's message (what happened + how to fix it)."""
    result = {"error": type(exc).__name__}
    if exc.fix:
        result["fix"] = exc.fix
    if exc.details:
        result["details"] = exc.details
    result.update(extra)
    module.fail_json(msg=str(exc), **result)


def common_argument_spec(**options) -> dict:
    """The options every venom.models module accepts, plus the module's own ``options``.

    One place for what the doc fragment ``venom.models.common`` documents: ``module_defaults`` for
    ``group/venom.models.all`` (meta/runtime.yml) hands these options to every module of the group,
    so each of them must accept them (a module that does not use one ignores it).
    """
    spec = {
        "models_dir": {"type": "path", "default": DEFAULT_MODELS_DIR},
        "lock_timeout": {"type": "float", "default": DEFAULT_LOCK_TIMEOUT},
        "quota_gb": {"type": "float"},
        "reserve_gb": {"type": "float"},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
    }
    spec.update(options)
    return spec


def lookup_argument_spec() -> dict:
    """The options of a remote lookup (doc fragment ``venom.models.common.lookup``)."""
    return {
        "provider": {"type": "str", "choices": list(LISTABLE_PROVIDERS), "default": "huggingface"},
        "endpoint": {"type": "str"},
        "search": {"type": "str"},
        "names": {"type": "list", "elements": "str", "default": []},
        "revision": {"type": "str"},
        "limit": {"type": "int", "default": DEFAULT_LIMIT},
        "token": {"type": "str", "no_log": True},
    }


def lookup_query(module) -> dict:
    """The keyword arguments of ``models.available.available`` from the module's lookup options;
    the token (also from E(HF_TOKEN)) is registered as a value never to show."""
    p = module.params
    token = p["token"] or os.environ.get("HF_TOKEN") or None
    if token:
        module.no_log_values.add(token)
    query = {k: p[k] for k in ("provider", "endpoint", "search", "names", "revision", "limit")}
    query["token"] = token if p["provider"] == "huggingface" else None
    query["tls"] = module_tls(module)
    return query


def module_tls(module) -> Tls:
    """The TLS settings of the module's ``validate_certs`` and ``ca_path`` (``ca_path`` is read before
    the first request); warn with ``tls_warnings`` once the remotes were asked."""
    return Tls(module.params["validate_certs"], module.params["ca_path"])


def tls_warnings(module, tls: Tls) -> None:
    """One warning per https remote asked with ``validate_certs: false``."""
    for warning in tls.warnings():
        module.warn(warning)
