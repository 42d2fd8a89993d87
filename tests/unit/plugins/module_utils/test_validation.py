# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os
import string

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.store import validation
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    SOURCE_NAME_RULE, ensure_inside, is_commit, model_key, parse_ollama_name, safe_join, validate_model_name,
    validate_relative_file_path, validate_revision)

HOSTILE = [
    ("../etc/passwd", "'..'"),
    ("org/../../etc", "'..'"),
    ("/etc/passwd", "absolute"),
    ("org//name", "empty path component"),
    ("org/name/", "empty path component"),
    ("org/na\x00me", "control character"),
    ("org/name\n", "control character"),
    ("org/name;rm -rf ~", "outside letters"),
    ("org/$(reboot)", "outside letters"),
    ("org/`id`", "outside letters"),
    ("org/name|cat", "outside letters"),
    ("org/n\u0430me", "non-ASCII"),  # Cyrillic a
    ("org/name\u200b", "non-ASCII"),  # zero-width space
    ("\uff4frg/name", "non-ASCII"),  # fullwidth o
    ("a" * 10_000, "too long"),
    ("", "empty"),
]


@pytest.mark.parametrize("provider", ["huggingface", "ollama", "local"])
@pytest.mark.parametrize("name,expect", HOSTILE)
def test_hostile_names_refused_with_clear_message(name, expect, provider):
    with pytest.raises(ValidationError) as err:
        validate_model_name(name, provider)
    assert expect in err.value.msg
    assert err.value.fix, "every refusal says how to fix it"
    assert len(str(err.value)) < 600, "a 10 kB name must not be echoed in full"


def test_non_string_refused():
    with pytest.raises(ValidationError, match="must be a string"):
        validate_model_name(["x"], "local")


@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "google/gemma-2b-it",
                                  "Qwen/Qwen2.5-0.5B-Instruct", "org_1/model.v2"])
def test_hf_names_accepted(name):
    assert validate_model_name(name, "huggingface") == name


@pytest.mark.parametrize("name,fragment", [
    ("gpt2", "org/name"), ("a/b/c", "org/name"), ("org/-bad", "not valid"), ("org/bad.", "not valid"),
    ("org/a--b", "not valid"), ("org/" + "x" * 100, "96"), ("org/name:tag", "':'")])
def test_hf_grammar(name, fragment):
    with pytest.raises(ValidationError) as err:
        validate_model_name(name, "huggingface")
    assert fragment in str(err.value)


@pytest.mark.parametrize("name,display,full", [
    ("llama3", "llama3:latest", "registry.ollama.ai/library/llama3:latest"),
    ("llama3:8b", "llama3:8b", "registry.ollama.ai/library/llama3:8b"),
    ("library/llama3", "llama3:latest", "registry.ollama.ai/library/llama3:latest"),
    ("jmorgan/mymodel:v1", "jmorgan/mymodel:v1", "registry.ollama.ai/jmorgan/mymodel:v1"),
    ("registry.local:5000/team/m:q4", "registry.local:5000/team/m:q4", "registry.local:5000/team/m:q4"),
    ("llama3.2:3b-instruct-q4_K_M", "llama3.2:3b-instruct-q4_K_M",
     "registry.ollama.ai/library/llama3.2:3b-instruct-q4_K_M"),
])
def test_ollama_normalisation(name, display, full):
    parsed = parse_ollama_name(name)
    assert parsed["display"] == display
    assert parsed["full"] == full
    assert validate_model_name(name, "ollama") == display


@pytest.mark.parametrize("a,b", [
    ("llama3", "llama3:latest"), ("library/llama3", "LLAMA3:latest"), ("LIBRARY/Llama3", "llama3"), ("registry.ollama.ai/library/llama3", "llama3"),
    ("registry.ollama.ai/jmorgan/m:v1", "JMorgan/M:V1"), ("registry.local:5000/team/m", "registry.local:5000/team/m:latest"),
])
def test_ollama_model_key_is_one_key_for_every_spelling_of_a_model(a, b):
    assert model_key(a, "ollama") == model_key(b, "ollama") == validate_model_name(b, "ollama").lower()


@pytest.mark.parametrize("a,b", [
    ("llama3", "llama3:8b"), ("jmorgan/llama3", "llama3"), ("registry.local:5000/library/llama3", "llama3"),
])
def test_ollama_model_key_keeps_different_models_apart(a, b):
    assert model_key(a, "ollama") != model_key(b, "ollama")


def test_model_key_of_other_providers_is_the_name_and_a_bad_ollama_name_still_has_one():
    assert model_key("Org/Model", "huggingface") == "Org/Model" and model_key("m", "local") == "m"
    assert model_key("Bad Name!", "ollama") == "bad name!"


@pytest.mark.parametrize("name", ["llama3:", "a/b/c/d", "ns.with.dot/model", "model@sha256:abc", "model:" + "t" * 81,
                                  "-model", "model:-tag"])
def test_ollama_grammar_refusals(name):
    with pytest.raises(ValidationError):
        validate_model_name(name, "ollama")


@pytest.mark.parametrize("rev", ["main", "v1.0", "refs/pr/3", "a" * 40, "release/2024-01"])
def test_revisions_accepted(rev):
    assert validate_revision(rev) == rev


@pytest.mark.parametrize("rev", ["../main", "main..x", "/main", "main/", "ma in", "-x", "x.lock", "m\x00", "m\u0430in"])
def test_revisions_refused(rev):
    with pytest.raises(ValidationError):
        validate_revision(rev)


def test_is_commit():
    assert is_commit("0123456789abcdef0123456789abcdef01234567")
    assert not is_commit("main")
    assert not is_commit("0123456789ABCDEF0123456789abcdef01234567")
    assert not is_commit(None)


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", "a/\x01", "./a", ""])
def test_relative_file_paths_refused(path):
    with pytest.raises(ValidationError):
        validate_relative_file_path(path)


def test_relative_file_paths_accepted():
    for p in ("config.json", "onnx/model.onnx", "1_Pooling/config.json", "données/ü.txt"):
        assert validate_relative_file_path(p) == p


def test_safe_join_refuses_symlink_pointing_out(tmp_path):
    base = tmp_path / "models"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (base / "evil").symlink_to(outside)
    with pytest.raises(ValidationError, match="outside"):
        safe_join(str(base), "evil", "file")
    assert safe_join(str(base), "ok", "file") == os.path.join(os.path.realpath(base), "ok", "file")
    with pytest.raises(ValidationError):
        safe_join(str(base), "/abs")
    with pytest.raises(ValidationError):
        ensure_inside(str(base), str(base / ".." / "outside"))


def test_safe_join_allows_symlink_inside(tmp_path):
    base = tmp_path / "models"
    (base / "real").mkdir(parents=True)
    (base / "alias").symlink_to(base / "real")
    assert safe_join(str(base), "alias", "f") == os.path.join(os.path.realpath(base), "real", "f")


_SAFE_CHARS = string.ascii_letters + string.digits + "_-."


@given(st.text(min_size=1, max_size=300))
@settings(max_examples=500, deadline=None)
def test_any_text_is_accepted_only_if_safe(text):
    """Whatever comes in, a name that passes is inside the source rule and holds no traversal."""
    for provider in ("huggingface", "ollama", "local"):
        try:
            out = validate_model_name(text, provider)
        except ValidationError as err:
            assert err.msg and err.fix
            continue
        assert SOURCE_NAME_RULE.match(out)
        assert ".." not in out and not out.startswith("/") and len(out) <= 256
        assert all(ord(c) < 128 for c in out)


@given(st.lists(st.text(alphabet=_SAFE_CHARS, min_size=1, max_size=20), min_size=1, max_size=3))
@settings(max_examples=300, deadline=None)
def test_local_names_accepted_exactly_when_grammar_allows(parts):
    name = "/".join(parts)
    grammar_ok = all(p[0] not in "-." for p in parts) and ".." not in name
    if grammar_ok:
        assert validate_model_name(name, "local") == name
    else:
        with pytest.raises(ValidationError):
            validate_model_name(name, "local")


# --- every refusal names the value, the problem and the fix (found by mutation testing) ----------

_OLLAMA_FIX = ("Model and tag use letters, digits, '_', '-', '.'; the namespace letters, digits, '_', '-'; "
               "each starts with a letter, digit or '_' and has at most 80 characters.")
_LOCAL_FIX = ("Use one to three '/'-separated parts of letters, digits, '_', '-', '.', each starting with a letter, "
              "digit or '_', optionally followed by ':tag'.")


@pytest.mark.parametrize("call, msg, fix", [
    (lambda: validation.validate_model_name(5, "local"), "model name must be a string, got int.",
     "Pass model name as a quoted string."),
    (lambda: validation.validate_model_name("", "local"), "model name is empty.", "Give a non-empty model name."),
    (lambda: validation.validate_model_name("a" * 257, "local"),
     "model name '" + "a" * 59 + "...' (257 characters) is too long: 257 characters, at most 256.",
     "Use a shorter model name."),
    (lambda: validation.validate_model_name("a\x7fb", "local"),
     "model name 'a\\x7fb' contains a control character (code 127).",
     "Remove control characters (NUL, newline, tab, escape) from model name."),
    (lambda: validation.validate_model_name("a\x1fb", "local"),
     "model name 'a\\x1fb' contains a control character (code 31).",
     "Remove control characters (NUL, newline, tab, escape) from model name."),
    (lambda: validation.validate_model_name("caf\u00e9", "local"),
     "model name 'caf\u00e9' contains the non-ASCII character '\u00e9' (U+00E9); look-alike characters are refused.",
     "Type model name in plain ASCII."),
    (lambda: validation.validate_model_name("/abs", "local"), "model name '/abs' is an absolute path.",
     "Give model name without a leading '/'."),
    (lambda: validation.validate_model_name("a/../b", "local"), "model name 'a/../b' contains '..' (path traversal).",
     "Remove '..' from model name."),
    (lambda: validation.validate_model_name("a..b", "local"), "model name 'a..b' contains '..' (path traversal).",
     "Remove '..' from model name."),   # inside a part too, not only as a whole '..' part
    (lambda: validation.validate_model_name("a//b", "local"),
     "model name 'a//b' has an empty path component ('//' or a trailing '/').", "Remove the extra '/' from model name."),
    (lambda: validation.validate_model_name("a/./b", "local"), "model name 'a/./b' has a '.' path component.",
     "Remove it from model name."),
    (lambda: validation.validate_model_name("a b!", "local"),
     "model name 'a b!' contains characters outside letters, digits, '_', '-', '.', ':' and '/': ' ' '!'.",
     "Use only letters, digits, '_', '-', '.', ':' and '/' in model names."),
    (lambda: validation.validate_model_name("m", "ftp"), "provider 'ftp' is not one of: huggingface, ollama, local.",
     "Set provider to one of: huggingface, ollama, local."),
    (lambda: validation.validate_model_name("gpt2", "huggingface"),
     "Hugging Face model name 'gpt2' must have the form 'org/name'.",
     "Give the repository id as shown on the Hub, e.g. 'sentence-transformers/all-MiniLM-L6-v2' (legacy names such "
     "as 'gpt2' now live under an organisation, e.g. 'openai-community/gpt2')."),
    (lambda: validation.validate_model_name("org/na:me", "huggingface"),
     "Hugging Face repository id 'org/na:me' contains ':'.",
     "Give the revision with the 'revision' option, not in the name."),
    (lambda: validation.validate_model_name("o/" + "n" * 95, "huggingface"),
     "Hugging Face repository id 'o/" + "n" * 57 + "...' (97 characters) is longer than 96 characters.",
     "Check the repository id."),
    (lambda: validation.validate_model_name("org/-bad", "huggingface"),
     "Hugging Face repository id 'org/-bad': part '-bad' is not valid (letters, digits, '-', '_', '.'; no '--' or "
     "'..'; '-' and '.' may not start or end a part).", "Check the repository id on the Hub."),
    (lambda: validation.validate_model_name("a/b/c/d", "local"), "local model name 'a/b/c/d' is not valid.", _LOCAL_FIX),
    (lambda: validation.validate_model_name("a:-t", "local"), "local model name 'a:-t' is not valid.", _LOCAL_FIX),
    (lambda: validation.parse_ollama_name(""), "Ollama model name is empty.", "Give a non-empty Ollama model name."),
    (lambda: validation.parse_ollama_name("llama3:"), "Ollama model name 'llama3:' ends with ':' but has no tag.",
     "Give a tag after ':' (e.g. ':latest') or drop the ':'."),
    (lambda: validation.parse_ollama_name("llama3@sha256:abc"),
     "Ollama model name 'llama3@sha256:abc': digests ('@sha256:...') are not supported.", "Pin an Ollama model by tag."),
    (lambda: validation.parse_ollama_name("a/b/c/d"),
     "Ollama model name 'a/b/c/d' has too many '/' parts; the form is [host/][namespace/]model[:tag].",
     "Check the model name on the registry."),
    (lambda: validation.parse_ollama_name("/m"), "Ollama model name '/m' is an absolute path.",
     "Give Ollama model name without a leading '/'."),
    (lambda: validation.parse_ollama_name("-h/ns/m"), "Ollama model name '-h/ns/m': the host '-h' is not valid for Ollama.",
     _OLLAMA_FIX),
    (lambda: validation.parse_ollama_name("a/b:c/d"),
     "Ollama model name 'a/b:c/d': the namespace 'b:c' is not valid for Ollama.", _OLLAMA_FIX),
    (lambda: validation.parse_ollama_name("n" * 81 + "/m"),
     "Ollama model name '" + "n" * 59 + "...' (83 characters): the namespace '" + "n" * 81 + "' is not valid for Ollama.",
     _OLLAMA_FIX),
    (lambda: validation.parse_ollama_name("m" * 81),
     "Ollama model name '" + "m" * 59 + "...' (81 characters): the model '" + "m" * 81 + "' is not valid for Ollama.",
     _OLLAMA_FIX),
    (lambda: validation.parse_ollama_name("m:" + "t" * 81),
     "Ollama model name 'm:" + "t" * 57 + "...' (83 characters): the tag '" + "t" * 81 + "' is not valid for Ollama.",
     _OLLAMA_FIX),
    (lambda: validation.validate_instance_name("-x"),
     "the runtime instance name '-x' may hold only letters, digits, '_' and '-', starting with a letter or digit "
     "(it becomes part of a systemd unit name and of file names).", "Use a name like 'chat', 'embed-1' or 'coder_b'."),
    (lambda: validation.validate_instance_name("i" * 65),
     "the runtime instance name '" + "i" * 65 + "' is too long: 65 characters, at most 64.",
     "Use a shorter the runtime instance name."),
    (lambda: validation.validate_choice("x" * 78, ("a", "b"), "runtime"),
     "runtime '" + "x" * 78 + "' is not one of: a, b.", "Set runtime to one of: a, b."),
    (lambda: validation.validate_choice("x" * 79, ("a", "b"), "runtime"),   # its repr is 81 characters: shortened
     "runtime '" + "x" * 59 + "...' (79 characters) is not one of: a, b.", "Set runtime to one of: a, b."),
    (lambda: validation.validate_non_negative(float("inf"), "quota_gb"), "quota_gb must be a finite number, got inf.",
     "Set quota_gb to a finite number (a size in GB or a time in seconds)."),
    (lambda: validation.validate_non_negative(2 ** 53 + 1, "quota_gb"),
     "quota_gb must be a finite number, got 9007199254740993.",
     "Set quota_gb to a finite number (a size in GB or a time in seconds)."),
    (lambda: validation.validate_size("5", "size"), "size is '5', not a whole number of bytes.",
     "The server or file reports a malformed size; check the source (mirror, registry)."),
    (lambda: validation.validate_size(True, "size"), "size is True, not a whole number of bytes.",
     "The server or file reports a malformed size; check the source (mirror, registry)."),
    (lambda: validation.validate_size(2 ** 50 + 1, "size"), "size is 1125899906842625 bytes, outside 0..1125899906842624.",
     "The server reports an impossible size; check the source (mirror, registry) before trusting anything it serves."),
    (lambda: validation.validate_size(-1, "size"), "size is -1 bytes, outside 0..1125899906842624.",
     "The server reports an impossible size; check the source (mirror, registry) before trusting anything it serves."),
    (lambda: validation.validate_relative_file_path("d/" * 2048 + "x"),
     "file path '" + "d/" * 29 + "d...' (4097 characters) is longer than 4096 characters.",
     "Exclude it with ignore_patterns."),
    (lambda: validation.validate_relative_file_path("a\x01"),
     "file path 'a\\x01' contains a control character or a backslash.", "Exclude it with ignore_patterns."),
    (lambda: validation.validate_relative_file_path("a/../b"), "file path 'a/../b' contains '..' (path traversal).",
     "Remove '..' from file path."),
    (lambda: validation.validate_relative_file_path("x" * 256),
     "file path '" + "x" * 59 + "...' (256 characters) has a component longer than 255 bytes.",
     "Exclude it with ignore_patterns."),
])
def test_each_refusal_names_the_value_the_problem_and_the_fix(call, msg, fix):
    with pytest.raises(ValidationError) as err:
        call()
    assert (err.value.msg, err.value.fix) == (msg, fix)


def test_names_at_each_length_limit_are_accepted():
    assert validation.validate_model_name("o/" + "n" * 94, "huggingface") == "o/" + "n" * 94   # 96 characters
    assert validation.validate_instance_name("i" * 64) == "i" * 64
    long = validation.parse_ollama_name("n" * 80 + "/" + "m" * 80 + ":" + "t" * 80)
    assert (long["namespace"], long["model"], long["tag"]) == ("n" * 80, "m" * 80, "t" * 80)
    assert validation.validate_non_negative(2 ** 53, "quota_gb") == float(2 ** 53)
    assert validation.validate_size(2 ** 50, "size") == 2 ** 50 and validation.validate_size(0, "size") == 0


def test_local_names_have_up_to_three_parts_and_an_optional_tag():
    for name in ("a", "a/b/c", "a:t", "org/m:v1.2"):
        assert validation.validate_model_name(name, "local") == name


@pytest.mark.parametrize("name, parsed", [
    ("m", ("registry.ollama.ai", "library", "m", "latest", "m:latest")),
    ("ns/m:7b", ("registry.ollama.ai", "ns", "m", "7b", "ns/m:7b")),
    ("h:1/ns/m", ("h:1", "ns", "m", "latest", "h:1/ns/m:latest")),   # a port is no tag
    ("reg.example/ns/m:q4", ("reg.example", "ns", "m", "q4", "reg.example/ns/m:q4")),
])
def test_ollama_names_are_split_with_ollamas_defaults(name, parsed):
    host, namespace, model, tag, display = parsed
    assert validation.parse_ollama_name(name) == {"host": host, "namespace": namespace, "model": model, "tag": tag,
                                                  "display": display, "full": f"{host}/{namespace}/{model}:{tag}"}
