# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The validation rules of the library, in one place.

Model names: ``^[\\w\\-.:/]+$`` (ASCII) is the outer bound; on top of it
each provider's real grammar applies:

* ``huggingface``: ``org/name`` as the Hub accepts it (alphanumerics, ``-``, ``_``, ``.``; no
  ``--`` or ``..``; ``-`` and ``.`` neither start nor end a part; 96 characters at most).
* ``ollama``: ``[host/][namespace/]model[:tag]`` as Ollama parses it (model and tag
  ``[A-Za-z0-9_.-]``, namespace ``[A-Za-z0-9_-]``, each part starting with an alphanumeric or
  ``_``; model, namespace and tag 80 characters at most).
* ``local``: one to three ``/``-separated parts of ``[A-Za-z0-9_.-]`` starting with an
  alphanumeric or ``_``, optionally followed by ``:tag``.

Every name is refused when it holds a NUL or control character, non-ASCII characters (unicode
look-alikes), an absolute path, a ``..`` or empty component, or more than ``MAX_NAME_LENGTH``
characters. Paths the library writes are proven to stay inside ``models_dir`` after resolving
symlinks (``safe_join``).
"""
from __future__ import annotations

import math
import os
import re

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError

PROVIDERS = ("huggingface", "ollama", "local")
RUNTIMES = ("vllm", "ollama")
MAX_NAME_LENGTH = 256
MAX_PATH_LENGTH = 4096
MAX_SIZE_BYTES = 2 ** 50  # 1 PiB: no model file or model is larger; bigger sizes are refused as corrupt

SOURCE_NAME_RULE = re.compile(r"^[\w\-.:/]+$", re.ASCII)
_HF_PART = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_OLLAMA_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_OLLAMA_NS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_OLLAMA_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[0-9]{1,5})?$")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MAX_INSTANCE_LENGTH = 64

OLLAMA_DEFAULT_HOST = "registry.ollama.ai"
OLLAMA_DEFAULT_NAMESPACE = "library"
OLLAMA_DEFAULT_TAG = "latest"


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "...' (" + str(len(value)) + " characters)"


def _common_checks(value, what: str, max_len: int = MAX_NAME_LENGTH) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__}.",
                              fix=f"Pass {what} as a quoted string.")
    if value == "":
        raise ValidationError(f"{what} is empty.", fix=f"Give a non-empty {what}.")
    if len(value) > max_len:
        raise ValidationError(f"{what} {_describe(value)} is too long: {len(value)} characters, at most {max_len}.",
                              fix=f"Use a shorter {what}.")
    for ch in value:
        code = ord(ch)
        if code < 0x20 or code == 0x7F:
            raise ValidationError(f"{what} {_describe(value)} contains a control character (code {code}).",
                                  fix=f"Remove control characters (NUL, newline, tab, escape) from {what}.")
        if code > 0x7E:
            raise ValidationError(
                f"{what} {_describe(value)} contains the non-ASCII character {ch!r} (U+{code:04X}); "
                "look-alike characters are refused.",
                fix=f"Type {what} in plain ASCII.")
    return value


def _path_shape_checks(value: str, what: str) -> None:
    if value.startswith("/"):
        raise ValidationError(f"{what} {_describe(value)} is an absolute path.",
                              fix=f"Give {what} without a leading '/'.")
    parts = value.split("/")
    if any(p == ".." for p in parts) or ".." in value:
        raise ValidationError(f"{what} {_describe(value)} contains '..' (path traversal).",
                              fix=f"Remove '..' from {what}.")
    if any(p == "" for p in parts):
        raise ValidationError(f"{what} {_describe(value)} has an empty path component ('//' or a trailing '/').",
                              fix=f"Remove the extra '/' from {what}.")
    if any(p == "." for p in parts):
        raise ValidationError(f"{what} {_describe(value)} has a '.' path component.", fix=f"Remove it from {what}.")


def validate_model_name(name, provider: str) -> str:
    """Validate ``name`` for ``provider`` and return its canonical form.

    Hugging Face and local names are returned unchanged; Ollama names are normalised the way
    Ollama displays them (``llama3`` → ``llama3:latest``, ``library/x`` → ``x:latest``).
    """
    validate_choice(provider, PROVIDERS, "provider")
    what = "model name"
    _common_checks(name, what)
    _path_shape_checks(name, what)
    if not SOURCE_NAME_RULE.match(name):
        bad = sorted({c for c in name if not SOURCE_NAME_RULE.match(c)})
        raise ValidationError(
            f"{what} {_describe(name)} contains characters outside letters, digits, '_', '-', '.', ':' and '/': "
            + " ".join(repr(c) for c in bad) + ".",
            fix="Use only letters, digits, '_', '-', '.', ':' and '/' in model names.")
    if provider == "huggingface":
        return _validate_hf_name(name)
    if provider == "ollama":
        return parse_ollama_name(name)["display"]
    return _validate_local_name(name)


def _validate_hf_name(name: str) -> str:
    parts = name.split("/")
    if len(parts) != 2:
        raise ValidationError(
            f"Hugging Face model name {_describe(name)} must have the form 'org/name'.",
            fix="Give the repository id as shown on the Hub, e.g. 'sentence-transformers/all-MiniLM-L6-v2' "
                "(legacy names such as 'gpt2' now live under an organisation, e.g. 'openai-community/gpt2').")
    if ":" in name:
        raise ValidationError(f"Hugging Face repository id {_describe(name)} contains ':'.",
                              fix="Give the revision with the 'revision' option, not in the name.")
    if len(name) > 96:
        raise ValidationError(f"Hugging Face repository id {_describe(name)} is longer than 96 characters.",
                              fix="Check the repository id.")
    for part in parts:
        if not _HF_PART.match(part) or "--" in part or ".." in part:
            raise ValidationError(
                f"Hugging Face repository id {_describe(name)}: part {part!r} is not valid "
                "(letters, digits, '-', '_', '.'; no '--' or '..'; '-' and '.' may not start or end a part).",
                fix="Check the repository id on the Hub.")
    return name


def parse_ollama_name(name: str) -> dict:
    """Split an Ollama model name into host, namespace, model and tag, with Ollama's defaults.

    Returns ``{"host", "namespace", "model", "tag", "display", "full"}`` where ``display`` is the
    shortest form Ollama reports (``model:tag``, ``ns/model:tag`` or ``host/ns/model:tag``).
    """
    what = "Ollama model name"
    _common_checks(name, what)
    _path_shape_checks(name, what)
    rest, tag = name, OLLAMA_DEFAULT_TAG
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        rest, tag = name[:colon], name[colon + 1:]
        if tag == "":
            raise ValidationError(f"{what} {_describe(name)} ends with ':' but has no tag.",
                                  fix="Give a tag after ':' (e.g. ':latest') or drop the ':'.")
    if "@" in name:
        raise ValidationError(f"{what} {_describe(name)}: digests ('@sha256:...') are not supported.",
                              fix="Pin an Ollama model by tag.")
    parts = rest.split("/")
    if len(parts) > 3:
        raise ValidationError(f"{what} {_describe(name)} has too many '/' parts; the form is [host/][namespace/]model[:tag].",
                              fix="Check the model name on the registry.")
    host, namespace = OLLAMA_DEFAULT_HOST, OLLAMA_DEFAULT_NAMESPACE
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        namespace, model = parts
    else:
        model = parts[0]
    checks = (("host", host, _OLLAMA_HOST, 350), ("namespace", namespace, _OLLAMA_NS, 80),
              ("model", model, _OLLAMA_PART, 80), ("tag", tag, _OLLAMA_PART, 80))
    for label, value, rule, limit in checks:
        if not rule.match(value) or len(value) > limit:
            raise ValidationError(
                f"{what} {_describe(name)}: the {label} {value!r} is not valid for Ollama.",
                fix="Model and tag use letters, digits, '_', '-', '.'; the namespace letters, digits, '_', '-'; "
                    "each starts with a letter, digit or '_' and has at most 80 characters.")
    if host == OLLAMA_DEFAULT_HOST and namespace == OLLAMA_DEFAULT_NAMESPACE:
        display = f"{model}:{tag}"
    elif host == OLLAMA_DEFAULT_HOST:
        display = f"{namespace}/{model}:{tag}"
    else:
        display = f"{host}/{namespace}/{model}:{tag}"
    return {"host": host, "namespace": namespace, "model": model, "tag": tag,
            "display": display, "full": f"{host}/{namespace}/{model}:{tag}"}


def model_key(name: str, provider: str | None) -> str:
    """What two names of one provider's model are compared by: the one naming rule.

    Ollama: the canonical name (``parse_ollama_name``'s ``display``: default tag ``latest``,
    default host ``registry.ollama.ai`` and namespace ``library`` dropped) in lower case, as
    Ollama matches names case-insensitively; ``llama3``, ``LIBRARY/llama3:latest`` and
    ``registry.ollama.ai/library/LLAMA3`` are one model. A name Ollama would refuse is compared
    in lower case as given. Other providers: the name as given.
    """
    if provider != "ollama":
        return name
    try:
        return parse_ollama_name(name.lower())["display"]
    except (ValidationError, AttributeError):
        return str(name).lower()


def _validate_local_name(name: str) -> str:
    base, _sep, tag = name.partition(":")
    parts = base.split("/")
    if len(parts) > 3 or not all(_LOCAL_PART.match(p) for p in parts) or (_sep and not _LOCAL_PART.match(tag)):
        raise ValidationError(
            f"local model name {_describe(name)} is not valid.",
            fix="Use one to three '/'-separated parts of letters, digits, '_', '-', '.', each starting with a "
                "letter, digit or '_', optionally followed by ':tag'.")
    return name


def validate_instance_name(name) -> str:
    """A runtime instance name: it becomes part of a systemd unit name (``vllm@<name>.service``)
    and of file names, so letters, digits, ``_`` and ``-`` only, starting with a letter or digit."""
    what = "the runtime instance name"
    _common_checks(name, what, MAX_INSTANCE_LENGTH)
    if not _INSTANCE.match(name):
        raise ValidationError(
            f"{what} {_describe(name)} may hold only letters, digits, '_' and '-', starting with a letter or "
            "digit (it becomes part of a systemd unit name and of file names).",
            fix="Use a name like 'chat', 'embed-1' or 'coder_b'.")
    return name


def validate_revision(revision) -> str:
    """A Hugging Face revision: a branch, a tag, ``refs/pr/N`` or a 40-hex commit."""
    what = "revision"
    _common_checks(revision, what, max_len=256)
    if ".." in revision or revision.startswith("/") or revision.endswith("/") or "//" in revision:
        raise ValidationError(f"{what} {_describe(revision)} is not a valid git reference.",
                              fix="Give a branch, a tag or a 40-character commit id.")
    if not _REVISION.match(revision) or revision.endswith(".lock"):
        raise ValidationError(f"{what} {_describe(revision)} contains characters that git references do not allow.",
                              fix="Give a branch, a tag or a 40-character commit id.")
    return revision


def is_commit(revision: str | None) -> bool:
    return bool(revision) and bool(_COMMIT.match(revision))


def validate_relative_file_path(path) -> str:
    """A file path published by a provider (e.g. a Hub repository tree entry), before it is written."""
    what = "file path"
    # Unlike model names, published file names may be non-ASCII (the Hub allows it).
    if not isinstance(path, str) or path == "":
        raise ValidationError(f"{what} {_describe(path)} is empty or not a string.", fix="Report the repository to its owner.")
    if len(path) > MAX_PATH_LENGTH:
        raise ValidationError(f"{what} {_describe(path)} is longer than {MAX_PATH_LENGTH} characters.",
                              fix="Exclude it with ignore_patterns.")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or "\\" in path:
        raise ValidationError(f"{what} {_describe(path)} contains a control character or a backslash.",
                              fix="Exclude it with ignore_patterns.")
    _path_shape_checks(path, what)
    if any(len(p.encode("utf-8")) > 255 for p in path.split("/")):
        raise ValidationError(f"{what} {_describe(path)} has a component longer than 255 bytes.",
                              fix="Exclude it with ignore_patterns.")
    return path


def ensure_inside(base: str, path: str) -> str:
    """Return the fully resolved ``path`` after proving it lies inside resolved ``base``."""
    real_base = os.path.realpath(base)
    real = os.path.realpath(path)
    if real != real_base and os.path.commonpath([real_base, real]) != real_base:
        raise ValidationError(
            f"The path {path!r} resolves to {real!r}, outside {real_base!r}.",
            fix="Remove the symbolic link or the '..' that points outside the models directory.")
    return real


def safe_join(base: str, *parts: str) -> str:
    """Join ``parts`` under ``base`` and prove the result stays inside it after resolving symlinks."""
    for part in parts:
        if not isinstance(part, str) or part == "" or os.path.isabs(part) or "\x00" in part:
            raise ValidationError(f"Refusing to build a path from {_describe(part)} under {base!r}.",
                                  fix="Path parts must be non-empty relative strings.")
    return ensure_inside(base, os.path.join(base, *parts))


def validate_choice(value, choices, what: str) -> str:
    if value not in choices:
        raise ValidationError(f"{what} {_describe(value)} is not one of: {', '.join(choices)}.",
                              fix=f"Set {what} to one of: {', '.join(choices)}.")
    return value


def validate_non_negative(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValidationError(f"{what} must be a number >= 0, got {_describe(value)}.", fix=f"Set {what} to 0 or more.")
    if math.isinf(value) or value > 2 ** 53:
        raise ValidationError(f"{what} must be a finite number, got {_describe(value)}.",
                              fix=f"Set {what} to a finite number (a size in GB or a time in seconds).")
    return float(value)


def validate_size(value, what: str) -> int:
    """A size in bytes reported by a server or read from a file: an integer in 0..MAX_SIZE_BYTES."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} is {_describe(value)}, not a whole number of bytes.",
                              fix="The server or file reports a malformed size; check the source (mirror, registry).")
    if not 0 <= value <= MAX_SIZE_BYTES:
        raise ValidationError(f"{what} is {value} bytes, outside 0..{MAX_SIZE_BYTES}.",
                              fix="The server reports an impossible size; check the source (mirror, registry) "
                                  "before trusting anything it serves.")
    return value
