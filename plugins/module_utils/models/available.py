# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a provider offers: the ``available`` subset of venom_model_facts, as plain Python.

* Hugging Face (the Hub or a mirror such as olah), through ``huggingface_hub``:
  with ``names``, each repository is resolved exactly as ``venom_model`` would resolve it (the
  commit of ``revision``, every file with its size), so the answer is what an install would
  download, and its capabilities are predicted as ``venom_model``'s check mode predicts them: from
  the small files only (``capabilities.files``: config.json, tokenizer_config.json, chat
  templates - kilobytes, never the weights); without ``names``, ``list_models(search=..., limit=...)`` lists what the Hub offers.
  Mirrors do not implement the listing endpoint (olah answers 404): then the error says to give
  ``names``.
* Ollama: the models an Ollama server has (``/api/tags``), filtered by ``search`` / ``names``.

Every model says whether this host's manifest already has it (``installed``) and at which
revision, so a playbook can tell what an install would change.
"""
from __future__ import annotations

from ansible_collections.venom.models.plugins.module_utils.errors import (
    NotFoundError, ProviderError, ValidationError, VenomError)
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls
from ansible_collections.venom.models.plugins.module_utils.store.validation import model_key, parse_ollama_name

LISTABLE_PROVIDERS = ("huggingface", "ollama")  # the providers with a catalogue to list
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


def _installed_index(models: list, provider: str) -> dict:
    """The manifest's entries of ``provider`` by ``model_key`` (in lower case: the Hub ignores case too)."""
    return {model_key(m["name"], provider).lower(): m for m in models or [] if m.get("provider") == provider}


def _hf_redact(text: str, token: str | None) -> str:
    from ansible_collections.venom.models.plugins.module_utils.models.huggingface import redact  # pylint: disable=import-outside-toplevel
    return redact(text, token)


def _mark(row: dict, installed: dict, key: str, provider: str = "huggingface") -> dict:
    entry = installed.get(model_key(key, provider).lower())
    row["installed"] = bool(entry and entry.get("status") == "installed")
    row["installed_revision"] = entry.get("revision") if entry else None
    return row


def _hf_resolve(name: str, revision: str | None, endpoint: str | None, token: str | None, models_dir: str,
                installed: dict, tls: Tls) -> dict:
    from ansible_collections.venom.models.plugins.module_utils.models.huggingface import HuggingFaceProvider  # pylint: disable=import-outside-toplevel
    request = ModelRequest(name=name, provider="huggingface", revision=revision, endpoint=endpoint, token=token,
                           models_dir=models_dir)
    provider = HuggingFaceProvider(request, StatePaths(models_dir))
    provider.tls = tls
    try:
        target = provider.resolve(None)
    except NotFoundError as exc:
        return _mark({"name": provider.model_id, "available": False, "reason": exc.msg, "revision": None,
                      "requested_revision": revision or "main", "size_bytes": None, "files_count": None,
                      "capabilities": None, "capabilities_error": None},
                     installed, provider.model_id)
    row = {"name": provider.model_id, "available": True, "reason": None, "revision": target.revision,
           "requested_revision": target.requested_revision, "size_bytes": target.size_bytes,
           "files_count": len(target.files)}
    try:  # the small files only, as venom_model's check mode reads them
        row["capabilities"], row["capabilities_error"] = provider.predict_capabilities(target), None
    except VenomError as exc:  # the listing stays useful: this row says why its capabilities are unknown
        row["capabilities"], row["capabilities_error"] = None, _hf_redact(exc.msg, token)
    row = _mark(row, installed, provider.model_id)
    row["update_available"] = bool(row["installed"] and row["installed_revision"] != target.revision)
    return row


def _hf_list(endpoint: str | None, token: str | None, search: str | None, limit: int, installed: dict,
             tls: Tls) -> list:
    from ansible_collections.venom.models.plugins.module_utils.models import huggingface as _hf  # pylint: disable=import-outside-toplevel
    url = _hf.validate_endpoint(endpoint)
    api = _hf.hub_api(url, token, tls)
    try:
        infos = list(api.list_models(search=search or None, limit=limit))
    except Exception as exc:  # pylint: disable=broad-except
        cert = tls.certificate_error(exc, url, f"Listing the models of {url}")
        if cert is not None:
            raise cert from None
        status = getattr(getattr(exc, "response", None), "status_code", None)
        detail = _hf.redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, token)
        if status in (404, 405, 501) or isinstance(exc, ValueError):  # ValueError: an answer that is not JSON
            what = f"HTTP {status}" if status else "no JSON answer"
            raise ProviderError(
                f"{url} does not list models ({what} on /api/models): mirrors such as olah serve "
                "repositories but not the Hub's search.",
                fix="Give the repositories to look up in 'names' (each is resolved to its commit and size), "
                    "or search the public Hub (endpoint https://huggingface.co).") from None
        raise ProviderError(f"Listing the models of {url} failed ({type(exc).__name__}: {detail}).",
                            fix="Check the endpoint, the host's network and proxy settings, and the token.") from None
    rows = []
    for info in infos:
        row = {"name": info.id, "available": True, "reason": None, "revision": getattr(info, "sha", None),
               "capabilities": None,  # not predicted in a search listing: give names
               "pipeline_tag": getattr(info, "pipeline_tag", None),
               "library_name": getattr(info, "library_name", None),
               "downloads": getattr(info, "downloads", None), "likes": getattr(info, "likes", None),
               "gated": getattr(info, "gated", None), "private": getattr(info, "private", None)}
        modified = getattr(info, "last_modified", None) or getattr(info, "created_at", None)
        row["last_modified"] = modified.isoformat() if hasattr(modified, "isoformat") else modified
        rows.append(_mark(row, installed, info.id))
    return rows


def _ollama_key(name: str) -> str:
    return parse_ollama_name(name)["display"]


def _ollama(endpoint: str | None, search: str | None, names: list, limit: int, installed: dict, tls: Tls) -> list:
    from ansible_collections.venom.models.plugins.module_utils.models.ollama_api import (  # pylint: disable=import-outside-toplevel
        DEFAULT_ENDPOINT, OllamaClient)
    client = OllamaClient(endpoint or DEFAULT_ENDPOINT, timeout=15.0, tls=tls)
    tags = client.tags()
    by_name = {}
    for tag in tags:
        name = tag.get("name") or tag.get("model")
        if not isinstance(name, str):
            continue
        try:
            key = _ollama_key(name)
        except ValidationError:
            key = name
        details = tag.get("details") if isinstance(tag.get("details"), dict) else {}
        by_name[model_key(key, "ollama")] = {
            "name": key, "available": True, "reason": None, "revision": tag.get("digest"),
            "size_bytes": tag.get("size"), "modified_at": tag.get("modified_at"),
            "family": details.get("family"), "parameter_size": details.get("parameter_size"),
            "quantization_level": details.get("quantization_level"), "format": details.get("format")}
    rows = []
    if names:
        for name in names:
            key = _ollama_key(name)
            row = by_name.get(model_key(key, "ollama")) or {
                "name": key, "available": False, "revision": None, "size_bytes": None,
                "reason": f"the Ollama server at {client.endpoint} does not have it (pull it with venom_model)"}
            rows.append(_mark(dict(row), installed, key, "ollama"))
        return rows
    needle = (search or "").lower()
    for key in sorted(by_name):
        if needle in key:
            rows.append(_mark(dict(by_name[key]), installed, key, "ollama"))
    return rows[:limit]


def available(provider: str, models_dir: str, models: list | None = None, endpoint: str | None = None,
              token: str | None = None, search: str | None = None, names: list | None = None,
              revision: str | None = None, limit: int = DEFAULT_LIMIT, tls: Tls | None = None) -> dict:
    """The models ``provider`` offers at ``endpoint``; see the module docstring.

    ``tls``: the TLS settings of the requests (default: validate against the host's trust store);
    it collects the warnings of ``validate_certs: false``."""
    tls = tls or Tls()
    if provider not in LISTABLE_PROVIDERS:
        raise ValidationError(f"The available subset cannot list provider {provider!r}.",
                              fix=f"Set provider to one of: {', '.join(LISTABLE_PROVIDERS)}.")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}, not {limit!r}.",
                              fix="Give a smaller limit and narrow the list with search.")
    names = list(names or [])
    installed = _installed_index(models, provider)
    if provider == "huggingface":
        if names:
            rows = [_hf_resolve(n, revision, endpoint, token, models_dir, installed, tls) for n in names]
        else:
            rows = _hf_list(endpoint, token, search, limit, installed, tls)
        from ansible_collections.venom.models.plugins.module_utils.models.huggingface import validate_endpoint  # pylint: disable=import-outside-toplevel
        where = validate_endpoint(endpoint)
    else:
        rows = _ollama(endpoint, search, names, limit, installed, tls)
        where = (endpoint or "http://127.0.0.1:11434").rstrip("/")
    return {"provider": provider, "endpoint": where, "search": search, "names": names,
            "count": len(rows), "models": rows}
