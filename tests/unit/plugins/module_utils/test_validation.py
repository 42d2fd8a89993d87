# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os
import string

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from ansible_collections.venom.models.plugins.module_utils.store.validation import (
    SOURCE_NAME_RULE, ensure_inside, is_commit, parse_ollama_name, safe_join, validate_model_name,
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
