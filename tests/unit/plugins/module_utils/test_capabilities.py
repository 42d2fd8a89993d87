# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import copy
import json
import os
import threading

import pytest

from ansible_collections.venom.models.plugins.module_utils.capabilities.detect import (
    CAPABILITY_KEYS, analyze_chat_template, chat_templates_from, detect_from_ollama_show, detect_gguf_capabilities,
    detect_hf_capabilities, max_context_from_config, merge_overrides)
from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import ChatTemplateError
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from tests.lib.gguf_writer import T, gguf_model
from tests.unit.plugins.module_utils.chat_data import (
    HF_TEMPLATES, OLLAMA_TEMPLATES, fresh_template_state, tokens)


@pytest.fixture(autouse=True)
def fresh_templates():
    """Each test analyses and compiles its templates itself (no answer cached by an earlier test)."""
    fresh_template_state()


# what each real template accepts: system role, function calling, allowed roles, alternation
EXPECTED = {
    "gemma-2": (False, False, ["user", "assistant"], True),
    "llama-3": (True, False, ["system", "user", "assistant"], False),
    "llama-3.1": (True, True, ["system", "user", "assistant", "tool"], False),
    "mistral-7b-v0.1": (False, False, ["user", "assistant"], True),
    "mistral-nemo": (True, True, ["system", "user", "assistant", "tool"], True),
    "qwen2.5": (True, True, ["system", "user", "assistant", "tool"], False),
    "phi-3-mini": (False, False, ["user", "assistant"], False),
    "phi-3.5-mini": (True, False, ["system", "user", "assistant"], False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_templates(name):
    info = analyze_chat_template(HF_TEMPLATES[name]["template"], tokens(name))
    system, tools, roles, alternation = EXPECTED[name]
    assert info["supports_system_role"] is system
    assert info["supports_function_calling"] is tools
    assert info["allowed_roles"] == roles
    assert info["requires_alternation"] is alternation


def test_reasons_are_noted():
    gemma = analyze_chat_template(HF_TEMPLATES["gemma-2"]["template"], tokens("gemma-2"))
    assert any("System role not supported" in n for n in gemma["notes"])
    phi = analyze_chat_template(HF_TEMPLATES["phi-3-mini"]["template"], tokens("phi-3-mini"))
    assert any("drops it" in n for n in phi["notes"])


@pytest.mark.parametrize("template,kind", [
    ("{% for m in messages %}{{ m.__class__.__mro__ }}{% endfor %}", "unsafe"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "limit"),
    ("{{ 'x' * 100000 * 100000 }}", "limit"),
    ("{% for m in messages %}", "syntax"),
    ("{{ .System }}", "format"),
])
def test_unusable_templates_raise(template, kind, monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.capabilities import sandbox as _chat_template
    monkeypatch.setattr(_chat_template, "DEFAULT_TIMEOUT", 0.5)
    with pytest.raises(ChatTemplateError) as err:
        analyze_chat_template(template)
    assert err.value.kind == kind


# --- Hugging Face model directories ---------------------------------------------------------------

def _model_dir(tmp_path, config=None, tokenizer_config=None, files=None):
    d = tmp_path / "model"
    d.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    if tokenizer_config is not None:
        (d / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    for name, text in (files or {}).items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    return str(d)


def _tok(name):
    t = HF_TEMPLATES[name]
    return {"chat_template": t["template"], "bos_token": {"content": t["bos_token"], "__type": "AddedToken"},
            "eos_token": t["eos_token"], "model_max_length": 1000000000000000019884624838656}


def test_gemma_directory(tmp_path):
    d = _model_dir(tmp_path, {"model_type": "gemma2", "max_position_embeddings": 8192, "torch_dtype": "float32"},
                   _tok("gemma-2"))
    caps = detect_hf_capabilities(d)
    assert set(CAPABILITY_KEYS) <= set(caps)
    assert caps["supports_system_role"] is False and caps["supports_function_calling"] is False
    assert caps["allowed_roles"] == ["user", "assistant"]
    assert caps["prompt_template"] == HF_TEMPLATES["gemma-2"]["template"]
    assert caps["max_context_length"] == 8192 and caps["quantization"] == "F32"
    assert caps["detected_from"]["supports_system_role"] == "tokenizer_config.json"
    assert caps["detected_from"]["max_context_length"] == "config.json:max_position_embeddings"
    assert any("System role not supported" in n for n in caps["notes"])


def test_awq_qwen_directory_with_yarn(tmp_path):
    config = {"model_type": "qwen2", "max_position_embeddings": 32768,
              "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
              "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}
    caps = detect_hf_capabilities(_model_dir(tmp_path, config, _tok("qwen2.5")))
    assert caps["max_context_length"] == 131072
    assert caps["quantization"] == "awq-4bit" and caps["detected_from"]["quantization"] == "config.json:quantization_config"
    assert caps["supports_function_calling"] is True and caps["supports_system_role"] is True


def test_chat_template_jinja_wins_and_named_templates(tmp_path):
    files = {"chat_template.jinja": HF_TEMPLATES["llama-3.1"]["template"],
             "additional_chat_templates/rag.jinja": "{{ messages[0]['content'] }}"}
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"max_position_embeddings": 131072},
                                             _tok("gemma-2"), files))
    assert caps["prompt_template"] == HF_TEMPLATES["llama-3.1"]["template"]
    assert caps["detected_from"]["prompt_template"] == "chat_template.jinja"
    assert caps["supports_system_role"] is True
    assert any("rag" in n for n in caps["notes"])


def test_template_list_with_tool_use(tmp_path):
    tok = {"chat_template": [{"name": "default", "template": HF_TEMPLATES["llama-3"]["template"]},
                             {"name": "tool_use", "template": HF_TEMPLATES["qwen2.5"]["template"]}]}
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 2048}, tok))
    assert caps["prompt_template"] == HF_TEMPLATES["llama-3"]["template"]
    assert caps["supports_function_calling"] is True
    assert caps["detected_from"]["supports_function_calling"].endswith("(tool_use template)")
    assert caps["max_context_length"] == 2048


def test_unknown_stays_none(tmp_path):
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"model_type": "bert"}, {"model_max_length": 512}))
    assert caps["supports_system_role"] is None and caps["allowed_roles"] is None
    assert caps["supports_function_calling"] is None and caps["prompt_template"] is None
    assert caps["quantization"] is None
    assert caps["max_context_length"] == 512
    assert caps["detected_from"]["max_context_length"] == "tokenizer_config.json:model_max_length"
    assert any("no chat template" in n for n in caps["notes"])
    empty = detect_hf_capabilities(_model_dir(tmp_path / "x"))
    assert all(empty[k] is None for k in CAPABILITY_KEYS)


def test_broken_files_and_hostile_template_do_not_crash(tmp_path):
    d = _model_dir(tmp_path, files={"config.json": "{not json", "tokenizer_config.json": json.dumps(
        {"chat_template": "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ messages }}"})})
    caps = detect_hf_capabilities(d)
    assert all(caps[k] is None for k in CAPABILITY_KEYS if k != "prompt_template")
    assert any("config.json cannot be read" in n for n in caps["notes"])
    assert any("cannot be used" in n for n in caps["notes"])


def test_not_a_directory(tmp_path):
    with pytest.raises(ValidationError, match="not a directory"):
        detect_hf_capabilities(str(tmp_path / "missing"))


@pytest.mark.parametrize("config,tok,expected", [
    ({"max_position_embeddings": 4096}, None, 4096),
    ({"max_position_embeddings": 4096, "n_positions": 2048, "seq_length": 8192}, None, 2048),
    ({"text_config": {"max_position_embeddings": 32768}, "max_position_embeddings": 1}, None, 32768),
    ({"max_position_embeddings": 8192, "model_max_length": 131072}, None, 131072),  # Command-R
    ({"max_position_embeddings": 8192}, {"model_max_length": 4096}, 4096),
    ({"max_position_embeddings": 2048, "rope_scaling": {"type": "linear", "factor": 4.0}}, None, 8192),
    ({"max_position_embeddings": 2048, "rope_scaling": {"type": "dynamic", "factor": 2.0}}, None, 4096),
    ({"max_position_embeddings": 131072, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                                          "original_max_position_embeddings": 8192}}, None, 131072),
    ({"max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
      "rope_scaling": {"type": "longrope", "long_factor": [1.0], "short_factor": [1.0]}}, None, 4096),
    ({"model_type": "gemma3_text", "max_position_embeddings": 131072,
      "rope_scaling": {"rope_type": "linear", "factor": 8.0}}, None, 131072),
    ({"max_position_embeddings": 32768, "rope_parameters": {
        "full_attention": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16384},
        "sliding_attention": {"rope_type": "default"}}}, None, 32768),
    ({"hidden_size": 8}, None, None),
])
def test_context_length_like_vllm(config, tok, expected):
    assert max_context_from_config(config, tok)[0] == expected


def test_sentence_transformers_max_seq_length():
    assert max_context_from_config({"max_position_embeddings": 512}, None, {"max_seq_length": 256})[0] == 256


@pytest.mark.parametrize("qc,expected", [
    ({"quant_method": "gptq", "bits": 4}, "gptq-4bit"),
    ({"quant_method": "fp8"}, "fp8"),
    ({"load_in_4bit": True}, "bitsandbytes-4bit"),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes-8bit"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {"num_bits": 8}}}},
     "compressed-tensors-8bit"),
])
def test_quantization_config(tmp_path, qc, expected):
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"max_position_embeddings": 8, "quantization_config": qc}))
    assert caps["quantization"] == expected


# --- GGUF ----------------------------------------------------------------------------------------

def test_gguf_capabilities(tmp_path):
    path = tmp_path / "gemma.gguf"
    path.write_bytes(gguf_model("gemma2", file_type=7, context_length=8192,
                                chat_template=HF_TEMPLATES["gemma-2"]["template"]))
    caps = detect_gguf_capabilities(str(path))
    assert caps["quantization"] == "Q8_0" and caps["detected_from"]["quantization"] == "gguf:general.file_type"
    assert caps["max_context_length"] == 8192
    assert caps["detected_from"]["max_context_length"] == "gguf:gemma2.context_length"
    assert caps["supports_system_role"] is False and caps["allowed_roles"] == ["user", "assistant"]
    assert caps["prompt_template"] == HF_TEMPLATES["gemma-2"]["template"]


def test_gguf_tool_use_template_and_unknown_file_type(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_model("llama", file_type=4, chat_template=HF_TEMPLATES["llama-3"]["template"],
                                extra=[("tokenizer.chat_template.tool_use", T.STRING,
                                        HF_TEMPLATES["llama-3.1"]["template"])]))
    caps = detect_gguf_capabilities(str(path))
    assert caps["quantization"] is None and any("not a known llama.cpp file type" in n for n in caps["notes"])
    assert caps["supports_function_calling"] is True


def test_corrupt_gguf_gives_unknowns_and_a_note(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    caps = detect_gguf_capabilities(str(path))
    assert all(caps[k] is None for k in CAPABILITY_KEYS)
    assert any("not a valid GGUF file" in n for n in caps["notes"])


# --- Ollama ----------------------------------------------------------------------------------------

def _show(template_name, capabilities=("completion",), arch="llama", ctx=131072, quant="Q4_K_M"):
    return {"template": OLLAMA_TEMPLATES[template_name]["template"], "capabilities": list(capabilities),
            "model_info": {"general.architecture": arch, f"{arch}.context_length": ctx, "general.file_type": 15},
            "details": {"format": "gguf", "family": arch, "quantization_level": quant},
            "parameters": "num_ctx 4096\nstop \"<|eot_id|>\""}


def test_ollama_llama32_with_tools():
    caps = detect_from_ollama_show(_show("llama3.2", ("completion", "tools")))
    assert caps["supports_function_calling"] is True
    assert caps["detected_from"]["supports_function_calling"] == "ollama:capabilities"
    assert caps["supports_system_role"] is True
    assert caps["allowed_roles"] == ["system", "user", "assistant", "tool"]
    assert caps["max_context_length"] == 131072 and caps["quantization"] == "Q4_K_M"
    assert caps["prompt_template"] == OLLAMA_TEMPLATES["llama3.2"]["template"]
    assert any("num_ctx 4096" in n for n in caps["notes"])


def test_ollama_gemma_places_system_itself():
    caps = detect_from_ollama_show(_show("gemma-instruct", arch="gemma2", ctx=8192))
    assert caps["supports_system_role"] is True  # Ollama's template puts .System into the first user turn
    assert caps["supports_function_calling"] is False
    assert caps["allowed_roles"] == ["system", "user", "assistant"]
    assert caps["max_context_length"] == 8192


def test_ollama_alpaca_and_mistral():
    alpaca = detect_from_ollama_show(_show("alpaca"))
    assert alpaca["supports_system_role"] is True and alpaca["allowed_roles"] == ["system", "user", "assistant"]
    mistral = detect_from_ollama_show(_show("mistral-instruct"))
    assert mistral["supports_system_role"] is True and "tool" not in mistral["allowed_roles"]


def test_ollama_legacy_template_without_system_and_no_capabilities():
    show = {"template": "{{ .Prompt }}\n### Response:\n{{ .Response }}", "model_info": {}, "details": {}}
    caps = detect_from_ollama_show(show)
    assert caps["supports_system_role"] is False and caps["allowed_roles"] == ["user", "assistant"]
    assert caps["supports_function_calling"] is False
    assert caps["detected_from"]["supports_function_calling"] == "ollama:template"
    assert caps["max_context_length"] is None and caps["quantization"] is None


def test_ollama_empty_show():
    caps = detect_from_ollama_show({})
    assert all(caps[k] is None for k in CAPABILITY_KEYS)
    with pytest.raises(ValidationError):
        detect_from_ollama_show(["not", "a", "mapping"])


# --- overrides -------------------------------------------------------------------------------------

def test_overrides():
    detected = detect_from_ollama_show(_show("gemma-instruct"))
    out = merge_overrides(detected, {"supports_system_role": False, "max_context_length": 4096,
                                     "allowed_roles": ["user", "assistant", "user"], "quantization": None})
    assert out["supports_system_role"] is False and out["max_context_length"] == 4096
    assert out["allowed_roles"] == ["user", "assistant"] and out["quantization"] is None
    assert out["detected_from"]["max_context_length"] == "override"
    assert any("supports_system_role overridden" in n for n in out["notes"])
    assert detected["supports_system_role"] is True  # the input is not changed
    assert merge_overrides(detected, None) == detected


@pytest.mark.parametrize("overrides,words", [
    ({"context": 4}, "Unknown capability override"),
    ({"supports_system_role": "yes"}, "true or false"),
    ({"max_context_length": -1}, "positive integer"),
    ({"allowed_roles": []}, "non-empty list"),
    ({"allowed_roles": ["User Role"]}, "non-empty list"),
    ({"prompt_template": ""}, "chat template text"),
    ({"quantization": "x" * 100}, "short name"),
    ("supports_system_role", "must be a mapping"),
])
def test_bad_overrides(overrides, words):
    with pytest.raises(ValidationError, match=words) as err:
        merge_overrides({}, overrides)
    assert err.value.fix


# --- where each value comes from, and what detection notes on the way ----------------------------

def test_analysing_a_template_twice_gives_equal_answers_that_do_not_share_lists():
    first = analyze_chat_template(HF_TEMPLATES["llama-3"]["template"], tokens("llama-3"))
    first["allowed_roles"].append("changed")
    first["notes"].append("changed")
    second = analyze_chat_template(HF_TEMPLATES["llama-3"]["template"], tokens("llama-3"))
    assert second["allowed_roles"] == ["system", "user", "assistant"] and "changed" not in second["notes"]
    second["notes"].append("changed")
    assert "changed" not in analyze_chat_template(HF_TEMPLATES["llama-3"]["template"], tokens("llama-3"))["notes"]


def test_the_analysis_cache_keeps_the_64_most_recent_templates():
    from ansible_collections.venom.models.plugins.module_utils.capabilities import detect as _detect
    templates = [f"{{% for m in messages %}}{{{{ m.role }}}} {i}: {{{{ m.content }}}}{{% endfor %}}" for i in range(65)]
    for template in templates:
        assert analyze_chat_template(template)["supports_system_role"] is True
    kept = [key[0] for key in _detect._ANALYSIS_CACHE]  # pylint: disable=protected-access
    assert len(kept) == 64 and templates[0] not in kept and kept[-1] == templates[-1]


# needs the tokenizer's bos_token: without it every render fails (an undefined value added to text)
BOS_TEMPLATE = ("{% for m in messages %}{{ bos_token + m['role'] + ': ' + m['content'] }}\n{% endfor %}"
                "{% if tools %}{% for t in tools %}{{ t['function']['name'] }}{% endfor %}{% endif %}")


def test_special_tokens_from_the_tokenizer_config_reach_the_template(tmp_path):
    for bos in ("<s>", {"content": "<s>", "__type": "AddedToken"}):
        caps = detect_hf_capabilities(_model_dir(tmp_path / str(type(bos).__name__), {"n_positions": 8},
                                                 {"chat_template": BOS_TEMPLATE, "bos_token": bos}))
        assert caps["supports_system_role"] is True and caps["supports_function_calling"] is True
        assert caps["allowed_roles"] == ["system", "user", "assistant", "tool"]
    caps = detect_hf_capabilities(_model_dir(tmp_path / "none", {"n_positions": 8},
                                             {"chat_template": BOS_TEMPLATE, "bos_token": {"id": 1}}))
    assert caps["supports_system_role"] is None and caps["allowed_roles"] is None


def test_a_tool_use_template_gets_the_special_tokens_too(tmp_path):
    tok = {"chat_template": [{"name": "default", "template": HF_TEMPLATES["llama-3"]["template"]},
                             {"name": "tool_use", "template": BOS_TEMPLATE}], "bos_token": "<s>"}
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 8}, tok))
    assert caps["supports_function_calling"] is True
    assert any("'tool_use' chat template" in n and "selects" in n for n in caps["notes"])


def test_a_broken_tool_use_template_is_noted_and_function_calling_stays_false(tmp_path):
    tok = {"chat_template": [{"name": "default", "template": HF_TEMPLATES["llama-3"]["template"]},
                             {"name": "tool_use", "template": "{% for m in messages %}"}]}
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 8}, tok))
    assert caps["supports_function_calling"] is False
    assert caps["detected_from"]["supports_function_calling"] == "tokenizer_config.json"
    assert any(n.startswith("the 'tool_use' chat template cannot be used") for n in caps["notes"])


def test_without_a_default_template_the_first_by_name_is_the_main_one(tmp_path):
    tok = {"chat_template": [{"name": "zeta", "template": HF_TEMPLATES["gemma-2"]["template"]},
                             {"name": "rag", "template": HF_TEMPLATES["llama-3"]["template"]}], **tokens("llama-3")}
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 8}, tok))
    assert caps["prompt_template"] == HF_TEMPLATES["llama-3"]["template"] and caps["supports_system_role"] is True
    assert "named chat templates besides 'rag': zeta" in caps["notes"]


def test_every_template_value_names_its_source(tmp_path):
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 8}, _tok("qwen2.5")))
    assert {k: caps["detected_from"][k] for k in CAPABILITY_KEYS} == {
        "supports_system_role": "tokenizer_config.json", "supports_function_calling": "tokenizer_config.json",
        "allowed_roles": "tokenizer_config.json", "prompt_template": "tokenizer_config.json",
        "max_context_length": "config.json:n_positions", "quantization": None}


def test_unknown_values_have_no_source(tmp_path):
    caps = detect_hf_capabilities(_model_dir(tmp_path))
    assert caps["detected_from"] == {k: None for k in CAPABILITY_KEYS}
    assert "no readable config.json: context length and quantization are unknown" in caps["notes"]
    assert "no readable config.json: context length and quantization are unknown" not in detect_hf_capabilities(
        _model_dir(tmp_path / "with", {"n_positions": 8}))["notes"]


def test_a_processor_chat_template_json_is_read(tmp_path):
    d = _model_dir(tmp_path, {"n_positions": 8},
                   files={"chat_template.json": json.dumps({"chat_template": HF_TEMPLATES["gemma-2"]["template"]})})
    caps = detect_hf_capabilities(d)
    assert caps["prompt_template"] == HF_TEMPLATES["gemma-2"]["template"]
    assert caps["detected_from"]["allowed_roles"] == "chat_template.json"
    assert caps["supports_system_role"] is False
    bad = _model_dir(tmp_path / "bad", {"n_positions": 8}, files={"chat_template.json": "[1]"})
    assert "chat_template.json is not a JSON object; ignored" in detect_hf_capabilities(bad)["notes"]


def test_named_templates_beside_chat_template_jinja(tmp_path):
    files = {"chat_template.jinja": HF_TEMPLATES["llama-3"]["template"],
             "additional_chat_templates/tool_use.jinja": HF_TEMPLATES["qwen2.5"]["template"],
             "additional_chat_templates/blank.jinja": "  \n", "additional_chat_templates/notes.txt": "x"}
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 8}, files=files))
    assert caps["supports_function_calling"] is True
    assert caps["detected_from"]["supports_function_calling"] == "chat_template.jinja (tool_use template)"
    assert "named chat templates besides 'default': tool_use" in caps["notes"]


def test_at_most_32_additional_templates_are_read(tmp_path):
    files = {"chat_template.jinja": HF_TEMPLATES["llama-3"]["template"]}
    files.update({f"additional_chat_templates/t{i:02d}.jinja": "{{ messages }}" for i in range(33)})
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 8}, files=files))
    named = next(n for n in caps["notes"] if n.startswith("named chat templates"))
    assert "t31" in named and "t32" not in named


def test_files_that_cannot_be_used_are_noted_by_name(tmp_path, monkeypatch):
    from ansible_collections.venom.models.plugins.module_utils.capabilities import detect as _detect
    monkeypatch.setattr(_detect, "MAX_JSON_BYTES", 100)
    exact = json.dumps({"n_positions": 64, "p": "x" * (100 - len(json.dumps({"n_positions": 64, "p": ""})))})
    assert len(exact) == 100
    caps = detect_hf_capabilities(_model_dir(tmp_path / "a", files={
        "config.json": exact, "tokenizer_config.json": "{bad", "generation_config.json": " " * 101,
        "sentence_bert_config.json": "[]"}))
    assert caps["max_context_length"] == 64
    notes = caps["notes"]
    assert any(n.startswith("tokenizer_config.json cannot be read as JSON (JSONDecodeError: ") for n in notes)
    assert "generation_config.json is 101 bytes, beyond the 100 bytes read; ignored" in notes
    assert "sentence_bert_config.json is not a JSON object; ignored" in notes


def test_chat_template_jinja_size_and_encoding(tmp_path):
    limit = 1024 * 1024
    exact = _model_dir(tmp_path / "exact", files={"chat_template.jinja": "{{ messages }}" + " " * (limit - 14)})
    caps = detect_hf_capabilities(exact)
    assert len(caps["prompt_template"]) == limit  # read, then refused as too long to be a chat template
    assert any("cannot be used" in n for n in caps["notes"])
    over = _model_dir(tmp_path / "over", files={"chat_template.jinja": "{{ messages }}" + " " * (limit - 13)})
    caps = detect_hf_capabilities(over)
    assert caps["prompt_template"] is None
    assert f"chat_template.jinja is larger than {limit} bytes; ignored" in caps["notes"]
    latin = tmp_path / "latin"
    latin.mkdir()
    (latin / "chat_template.jinja").write_bytes("{{ 'é' }}".encode("latin-1"))
    assert "chat_template.jinja is not UTF-8 text; ignored" in detect_hf_capabilities(str(latin))["notes"]


def test_odd_chat_template_values_are_noted(tmp_path):
    tok = {"chat_template": [{"name": "default", "template": HF_TEMPLATES["llama-3"]["template"]},
                             {"name": "x"}, {"template": "y"}, "z"], **tokens("llama-3")}
    caps = detect_hf_capabilities(_model_dir(tmp_path / "list", {"n_positions": 8}, tok))
    assert caps["supports_system_role"] is True
    assert caps["notes"].count("an entry of the chat_template list is not {name, template}; ignored") == 3
    caps = detect_hf_capabilities(_model_dir(tmp_path / "int", {"n_positions": 8}, {"chat_template": 5}))
    assert "chat_template is neither a string nor a list of {name, template}; ignored" in caps["notes"]
    caps = detect_hf_capabilities(_model_dir(tmp_path / "blank", {"n_positions": 8}, {"chat_template": "  "}))
    assert caps["prompt_template"] is None


def test_generation_max_length_is_noted_but_not_the_context(tmp_path):
    d = _model_dir(tmp_path, {"max_position_embeddings": 4096},
                   files={"generation_config.json": json.dumps({"max_length": 20})})
    caps = detect_hf_capabilities(d)
    assert caps["max_context_length"] == 4096
    assert ("generation_config.json max_length 20 is a generation default, not the context length"
            in caps["notes"])


def test_a_sentence_transformers_directory(tmp_path):
    d = _model_dir(tmp_path, {"max_position_embeddings": 512},
                   files={"sentence_bert_config.json": json.dumps({"max_seq_length": 256})})
    caps = detect_hf_capabilities(d)
    assert caps["max_context_length"] == 256
    assert caps["detected_from"]["max_context_length"] == "sentence_bert_config.json:max_seq_length"


def test_probes_are_rendered_as_a_request_with_tools_and_documents_passed():
    template = ("{% if tools is not defined or documents is not defined or not add_generation_prompt %}"
                "{{ raise_exception('called unlike transformers') }}{% endif %}"
                "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    info = analyze_chat_template(template)
    assert info["supports_system_role"] is True and info["allowed_roles"] == ["system", "user", "assistant"]


@pytest.mark.parametrize("config,expected", [
    ({"max_position_embeddings": 4096.0}, 4096),
    ({"max_position_embeddings": 1}, 1),
    ({"max_position_embeddings": 0, "n_positions": 2048}, 2048),
    ({"max_position_embeddings": True, "n_positions": 2048}, 2048),
    ({"max_position_embeddings": 4096.5}, None),
    ({"max_position_embeddings": float("inf")}, None),
])
def test_context_values_must_be_positive_whole_numbers(config, expected):
    assert max_context_from_config(config)[0] == expected


@pytest.mark.parametrize("config,tok,source", [
    ({"max_position_embeddings": 4096, "n_positions": 4096}, None, "config.json:max_position_embeddings"),
    ({"max_position_embeddings": 4096}, {"model_max_length": 4096}, "config.json:max_position_embeddings"),
    ({"max_position_embeddings": 4096, "model_max_length": 8192}, None, "config.json:model_max_length"),
    ({"max_position_embeddings": 2048, "rope_scaling": {"type": "linear", "factor": 2.0}}, None,
     "config.json:max_position_embeddings x rope factor"),
    ({"max_position_embeddings": 2048, "rope_scaling": {"type": "linear", "factor": 1.0}}, None,
     "config.json:max_position_embeddings"),
])
def test_the_context_source_names_the_key_that_decided(config, tok, source):
    assert max_context_from_config(config, tok)[1] == source


def test_rope_scaling_is_noted():
    value, source, notes = max_context_from_config({"max_position_embeddings": 2048,
                                                    "rope_scaling": {"type": "dynamic", "factor": 2.5}})
    assert (value, source) == (5120, "config.json:max_position_embeddings x rope factor")
    assert notes == ["context length scaled by the rope scaling factor 2.5"]
    value, source, notes = max_context_from_config({"max_position_embeddings": 2048,
                                                    "rope_scaling": {"type": "yarn", "factor": 4.0}})
    assert (value, source) == (None, None)
    assert notes == ["yarn rope scaling without original_max_position_embeddings; context length not derived"]
    value, source, notes = max_context_from_config({"max_position_embeddings": 131072,
                                                    "original_max_position_embeddings": 4096,
                                                    "rope_scaling": {"rope_type": "longrope", "factor": 32.0}})
    assert (value, source) == (4096, "config.json:original_max_position_embeddings (LongRoPE)")
    assert notes == ["LongRoPE model: vLLM defaults to original_max_position_embeddings 4096 "
                     "(the model supports up to 131072)"]


@pytest.mark.parametrize("config,expected", [
    # the older 'type' key names the same scalings as 'rope_type'
    ({"max_position_embeddings": 131072, "rope_scaling": {"type": "llama3", "factor": 8.0}}, 131072),
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "su", "factor": 4.0}}, 4096),
    ({"max_position_embeddings": 4096, "rope_scaling": {"rope_type": "su", "factor": 4.0}}, 4096),
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "longrope", "factor": 4.0}}, 4096),
    # transformers v5 names them rope_parameters; one set or one per layer type
    ({"max_position_embeddings": 2048, "rope_parameters": {"rope_type": "linear", "factor": 2.0}}, 4096),
    ({"max_position_embeddings": 32768, "rope_parameters": {
        "full_attention": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 8192},
        "sliding_attention": {"rope_type": "default"}}}, 16384),
    # one set whose fields include a mapping is still one set
    ({"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear", "factor": 2.0, "extra": {"a": 1}}},
     4096),
    # a factor that is missing, zero, negative, a bool or text leaves the length unscaled
    ({"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear"}}, 2048),
    ({"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear", "factor": 0}}, 2048),
    ({"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear", "factor": -2.0}}, 2048),
    ({"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear", "factor": True}}, 2048),
    ({"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear", "factor": "4"}}, 2048),
    ({"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "linear", "factor": 0.5}}, 1024),
    # a rope_scaling that is not a mapping is ignored
    ({"max_position_embeddings": 2048, "rope_scaling": "linear"}, 2048),
    # Gemma 3: the model type in text_config or at the top leaves the length unscaled
    ({"model_type": "gemma3", "text_config": {"max_position_embeddings": 131072,
                                              "rope_scaling": {"rope_type": "linear", "factor": 8.0}}}, 131072),
    ({"text_config": {"model_type": "gemma3_text", "max_position_embeddings": 131072,
                      "rope_scaling": {"rope_type": "linear", "factor": 8.0}}}, 131072),
    ({"model_type": "llama", "text_config": {"max_position_embeddings": 2048,
                                             "rope_scaling": {"rope_type": "linear", "factor": 2.0}}}, 4096),
])
def test_rope_scaling_shapes(config, expected):
    assert max_context_from_config(config)[0] == expected


@pytest.mark.parametrize("config,expected,source", [
    ({"quantization_config": {"quant_method": "awq", "w_bit": 4, "version": "gemm"}}, "awq-4bit",
     "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": "gptq", "bits": 8, "w_bit": 4}}, "gptq-8bit",
     "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": "gptq", "bits": "4", "w_bit": "4"}}, "gptq",
     "config.json:quantization_config"),
    ({"quantization_config": {"load_in_8bit": True}}, "bitsandbytes-8bit", "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": "", "load_in_4bit": True}}, "bitsandbytes-4bit",
     "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": 7}}, None, None),
    ({"quantization_config": {"quant_method": "bitsandbytes"}}, "bitsandbytes", "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": "fp8", "bits": True}}, "fp8", "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {
        "g0": {"weights": {"num_bits": 4}}, "g1": {"weights": {"num_bits": 8}}}}}, "compressed-tensors",
     "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {
        "g0": {"weights": {"num_bits": 4}}, "g1": {"input_activations": {"num_bits": 8}}, "g2": "x"}}},
     "compressed-tensors-4bit", "config.json:quantization_config"),
    ({"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {
        "g0": {"weights": {"num_bits": "4"}}}}}, "compressed-tensors", "config.json:quantization_config"),
    ({"torch_dtype": "bfloat16"}, "BF16", "config.json:torch_dtype (not quantized)"),
    ({"dtype": "float16"}, "F16", "config.json:torch_dtype (not quantized)"),
    ({"torch_dtype": "half"}, "F16", "config.json:torch_dtype (not quantized)"),
    ({"torch_dtype": "float"}, "F32", "config.json:torch_dtype (not quantized)"),
    ({"text_config": {"torch_dtype": "bfloat16"}}, "BF16", "config.json:torch_dtype (not quantized)"),
    ({"text_config": {"dtype": "float32"}}, "F32", "config.json:torch_dtype (not quantized)"),
    ({"dtype": "float16", "text_config": {"dtype": "float32"}}, "F16", "config.json:torch_dtype (not quantized)"),
    ({"torch_dtype": "int8"}, None, None),
    ({"torch_dtype": ["bfloat16"]}, None, None),
])
def test_quantization_from_real_config_shapes(tmp_path, config, expected, source):
    caps = detect_hf_capabilities(_model_dir(tmp_path, dict(config, max_position_embeddings=8)))
    assert (caps["quantization"], caps["detected_from"]["quantization"]) == (expected, source)


def test_gguf_sources_tokens_and_notes(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_model("llama", file_type=2, context_length=4096, chat_template=BOS_TEMPLATE))
    caps = detect_gguf_capabilities(str(path))
    assert caps["supports_system_role"] is True and caps["supports_function_calling"] is True
    assert caps["detected_from"]["supports_system_role"] == "gguf:tokenizer.chat_template"
    assert caps["detected_from"]["prompt_template"] == "gguf:tokenizer.chat_template"
    assert caps["quantization"] == "Q4_0" and "GGUF architecture llama, version 3" in caps["notes"]
    assert not any("not a known llama.cpp file type" in n for n in caps["notes"])


@pytest.mark.parametrize("key", ["bos", "eos", "unk", "pad"])
def test_each_gguf_special_token_reaches_the_template(tmp_path, key):
    template = (f"{{% for m in messages %}}{{{{ {key}_token + m['role'] + ': ' + m['content'] }}}}\n"
                "{% endfor %}")
    path = tmp_path / "m.gguf"
    extra = [] if key in ("bos", "eos") else [(f"tokenizer.ggml.{key}_token_id", T.UINT32, 3)]
    path.write_bytes(gguf_model("llama", chat_template=template, extra=extra))
    caps = detect_gguf_capabilities(str(path))
    assert caps["supports_system_role"] is True and caps["allowed_roles"] == ["system", "user", "assistant"]


def test_a_gguf_without_architecture_or_file_type(tmp_path):
    from tests.lib.gguf_writer import build_gguf
    path = tmp_path / "bare.gguf"
    path.write_bytes(build_gguf([("general.name", T.STRING, "bare")]))
    caps = detect_gguf_capabilities(str(path))
    assert caps["max_context_length"] is None and caps["quantization"] is None
    assert not any("architecture" in n or "file type" in n for n in caps["notes"])
    assert caps["detected_from"]["max_context_length"] is None


# --- Ollama, further shapes -----------------------------------------------------------------------

def test_ollama_sources_are_named():
    caps = detect_from_ollama_show(_show("llama3.2", ("completion", "tools")))
    assert {k: caps["detected_from"][k] for k in CAPABILITY_KEYS} == {
        "supports_system_role": "ollama:template", "supports_function_calling": "ollama:capabilities",
        "allowed_roles": "ollama:template", "prompt_template": "ollama:template",
        "max_context_length": "ollama:model_info.llama.context_length",
        "quantization": "ollama:details.quantization_level"}
    assert "Ollama capabilities: completion, tools" in caps["notes"]
    assert not any("does not look like a Go template" in n for n in caps["notes"])


def test_ollama_file_type_when_no_quantization_level_is_given():
    for file_type, name in ((0, "F32"), (15, "Q4_K_M"), (1, "F16")):
        show = {"model_info": {"general.file_type": file_type}, "details": {"quantization_level": " "}}
        caps = detect_from_ollama_show(show)
        assert caps["quantization"] == name
        assert caps["detected_from"]["quantization"] == "ollama:model_info.general.file_type"
    assert detect_from_ollama_show({"model_info": {"general.file_type": -1}})["quantization"] is None
    assert detect_from_ollama_show({"model_info": {"general.file_type": 15}, "details": "Q4"})["quantization"] == \
        "Q4_K_M"
    caps = detect_from_ollama_show({"details": {"quantization_level": " Q8_0 "}})
    assert caps["quantization"] == "Q8_0"


def test_ollama_templates_that_print_the_role_accept_every_role():
    template = "{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}"
    caps = detect_from_ollama_show({"template": template})
    assert caps["supports_system_role"] is True
    assert caps["allowed_roles"] == ["system", "user", "assistant", "tool"]
    assert caps["supports_function_calling"] is False
    assert caps["detected_from"]["supports_function_calling"] == "ollama:template"
    # without .Messages a printed role is not enough: no place for a system message
    legacy = detect_from_ollama_show({"template": "{{ .Role }}: {{ .Prompt }}"})
    assert legacy["supports_system_role"] is False and legacy["allowed_roles"] == ["user", "assistant"]
    assert any("no place for a system message" in n for n in legacy["notes"])


def test_ollama_roles_compared_in_the_template():
    template = ('{{- range .Messages }}{{ if eq .Role "user" }}U: {{ .Content }}{{ else if eq .Role "assistant" }}'
                'A: {{ .Content }}{{ end }}{{ end }}')
    caps = detect_from_ollama_show({"template": template})
    assert caps["supports_system_role"] is False and caps["allowed_roles"] == ["user", "assistant"]
    with_system = detect_from_ollama_show({"template": "{{ .System }}" + template})
    assert with_system["allowed_roles"] == ["system", "user", "assistant"]
    tools = detect_from_ollama_show({"template": template + "{{ if .Tools }}{{ .Tools }}{{ end }}"})
    assert tools["supports_function_calling"] is True
    calls = detect_from_ollama_show({"template": template + "{{ range .ToolCalls }}{{ .Name }}{{ end }}"})
    assert calls["supports_function_calling"] is True


def test_ollama_odd_answers():
    note = "the Ollama template does not look like a Go template; reading it anyway"
    caps = detect_from_ollama_show({"template": "{% for m in messages %}{{ m }}{% endfor %}"})
    assert note in caps["notes"] and caps["supports_system_role"] is False
    caps = detect_from_ollama_show({"template": 5, "capabilities": ["completion"], "model_info": [],
                                    "details": None})
    assert caps["prompt_template"] is None and caps["supports_function_calling"] is False
    assert "Ollama returned no template: system role and roles are unknown" in caps["notes"]
    caps = detect_from_ollama_show({"model_info": {"general.architecture": "", ".context_length": 4096}})
    assert caps["max_context_length"] is None and caps["detected_from"]["max_context_length"] is None
    caps = detect_from_ollama_show({"model_info": {"general.architecture": 7}})
    assert caps["max_context_length"] is None
    caps = detect_from_ollama_show({"parameters": "stop x\nnum_ctx 8192\n"})
    assert "the Modelfile sets num_ctx 8192 (the context Ollama runs it with)" in caps["notes"]
    with pytest.raises(ValidationError) as err:
        detect_from_ollama_show("not a mapping")
    assert "mapping" in err.value.msg and "/api/show" in err.value.fix


# --- overrides, further -----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,words", [
    ({"supports_function_calling": "yes"}, "true or false"),
    ({"prompt_template": 5}, "chat template text"),
    ({"quantization": "  "}, "short name"),
    ({"quantization": 4}, "short name"),
    ({"quantization": "q" * 65}, "short name"),
])
def test_more_bad_overrides(overrides, words):
    with pytest.raises(ValidationError, match=words) as err:
        merge_overrides({}, overrides)
    key = next(iter(overrides))
    assert err.value.msg.startswith(f"Capability override {key}=") and key in err.value.fix


def test_override_values_at_their_bounds_are_accepted():
    out = merge_overrides(None, {"quantization": "q" * 64, "max_context_length": 4096.0,
                                 "supports_function_calling": True, "prompt_template": "{{ messages }}"})
    assert out["quantization"] == "q" * 64 and out["max_context_length"] == 4096
    assert isinstance(out["max_context_length"], int) and out["supports_function_calling"] is True
    assert set(CAPABILITY_KEYS) <= set(out) and out["detected_from"]["quantization"] == "override"
    assert out["detected_from"]["allowed_roles"] is None


def test_override_notes_say_what_was_detected():
    detected = detect_from_ollama_show(_show("llama3.2", ("completion", "tools")))
    before = copy.deepcopy(detected)
    out = merge_overrides(detected, {"quantization": None, "prompt_template": "{{ messages }}",
                                     "supports_system_role": True})
    assert "quantization overridden (detected: \"Q4_K_M\")" in out["notes"]
    shown = json.dumps(OLLAMA_TEMPLATES["llama3.2"]["template"])[:80]
    assert f"prompt_template overridden (detected: {shown})" in out["notes"]
    assert not any(n.startswith("supports_system_role overridden") for n in out["notes"])  # the same value
    assert out["detected_from"]["supports_system_role"] == "override"
    assert detected == before
    assert merge_overrides({"quantization": "F16"}, {})["detected_from"] == {k: None for k in CAPABILITY_KEYS}


# --- which files of a Hugging Face repository check mode fetches ----------------------------------

@pytest.mark.parametrize("path,expected", [
    ("config.json", True), ("tokenizer_config.json", True), ("chat_template.json", True),
    ("chat_template.jinja", True), ("additional_chat_templates/tool_use.jinja", True),
    ("additional_chat_templates/sub/x.jinja", False), ("additional_chat_templates/notes.txt", False),
    ("additional_chat_templates/x.JINJA", False), ("other/tool_use.jinja", False),
    ("x/additional_chat_templates/a.jinja", False),
    ("tool_use.jinja", False), ("model.safetensors", False), ("sub/config.json", False),
])
def test_only_the_small_files_detection_reads_are_capability_files(path, expected):
    from ansible_collections.venom.models.plugins.module_utils.capabilities.files import is_capability_file
    assert is_capability_file(path) is expected


@pytest.mark.parametrize("path,expected", [
    ("generation_config.json", True), ("sentence_bert_config.json", True), ("additional_chat_templates", False),
    ("additional_chat_templates/a.jinja.bak", False), ("chat_template.jinja/x", False), ("", False),
])
def test_generation_and_sentence_configs_are_capability_files_but_not_other_names(path, expected):
    from ansible_collections.venom.models.plugins.module_utils.capabilities.files import is_capability_file
    assert is_capability_file(path) is expected


# --- detection imported on first use ----------------------------------------------------------------

def test_the_deferred_wrappers_answer_as_detection_does(tmp_path):
    from ansible_collections.venom.models.plugins.module_utils.capabilities import deferred
    model = _model_dir(tmp_path, {"model_type": "gemma2", "max_position_embeddings": 8192}, _tok("gemma-2"))
    assert deferred.detect_hf_capabilities(model) == detect_hf_capabilities(model)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(gguf_model("qwen2", chat_template="{{ messages }}"))
    assert deferred.detect_gguf_capabilities(str(gguf)) == detect_gguf_capabilities(str(gguf))
    detected = detect_gguf_capabilities(str(gguf))
    assert deferred.merge_overrides(detected, {"supports_system_role": True}) == \
        merge_overrides(detected, {"supports_system_role": True})


# --- what the probe conversations must satisfy --------------------------------------------------------

# A strict template in the OpenAI shape: every message has a role and content, an assistant tool call has an id,
# type 'function', a function name and a mapping of arguments, and a tool result answers the call just before it
# (same id, same tool name). It renders tool calls but no tool definitions, and refuses roles it does not know.
STRICT_TOOL_CALLS = (
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' -%}<user>{{ m.content }}</user>"
    "{%- elif m.role == 'assistant' -%}"
    "{%- if m.content is not defined -%}{{ raise_exception('an assistant message without content') }}{%- endif -%}"
    "{%- if m.tool_calls -%}"
    "{%- for c in m.tool_calls -%}"
    "{%- if c.type != 'function' or c.id is not defined or c.function is not mapping"
    " or c.function.name is not defined or c.function.arguments is not mapping -%}"
    "{{ raise_exception('a malformed tool call') }}{%- endif -%}"
    "<call id=\"{{ c.id }}\">{{ c.function.name }}({{ c.function.arguments | tojson }})</call>"
    "{%- endfor -%}"
    "{%- else -%}<assistant>{{ m.content }}</assistant>{%- endif -%}"
    "{%- elif m.role == 'tool' -%}"
    "{%- set prev = messages[loop.index0 - 1] -%}"
    "{%- if loop.first or not prev.tool_calls or prev.tool_calls[0].id != m.tool_call_id"
    " or prev.tool_calls[0].function.name != m.name -%}"
    "{{ raise_exception('a tool result must answer the tool call before it') }}{%- endif -%}"
    "<result of=\"{{ m.name }}\">{{ m.content }}</result>"
    "{%- else -%}{{ raise_exception('unknown role ' ~ m.role) }}"
    "{%- endif -%}"
    "{%- endfor -%}")


def test_a_strict_template_that_checks_the_tool_conversation_accepts_the_probe():
    info = analyze_chat_template(STRICT_TOOL_CALLS)
    assert info["allowed_roles"] == ["user", "assistant", "tool"]
    assert info["supports_system_role"] is False
    assert info["supports_function_calling"] is True
    assert "the template renders tool calls but no tool definitions" in info["notes"]
    assert info["requires_alternation"] is False


_TOOL_ROLE_TEMPLATES = {
    # tool results rendered only after a call (others dropped silently): the tool role, and function calling
    "drops results without a call": (
        "{%- for m in messages -%}"
        "{%- if m.role == 'tool' -%}"
        "{%- if not loop.first and messages[loop.index0 - 1].tool_calls -%}<result>{{ m.content }}</result>"
        "{%- endif -%}"
        "{%- elif m.tool_calls -%}<call>{{ m.tool_calls[0].function.name }}</call>"
        "{%- else -%}<{{ m.role }}>{{ m.content }}{%- endif -%}"
        "{%- endfor -%}", True),
    # assistant tool calls refused, lone tool results rendered: the tool role, no function calling
    "refuses calls, renders results": (
        "{%- for m in messages -%}"
        "{%- if m.tool_calls is defined -%}{{ raise_exception('tool calls are not supported') }}{%- endif -%}"
        "{%- if m.role == 'tool' -%}<tool>{{ m.content }}</tool>"
        "{%- else -%}<{{ m.role }}>{{ m.content }}{%- endif -%}"
        "{%- endfor -%}", False),
    # tool results handled by their call id only: the tool role is the template's own handling
    "results by their call id": (
        "{%- for m in messages -%}"
        "{%- if m.tool_call_id is defined -%}[result {{ m.tool_call_id }}] {{ m.content }}\n"
        "{%- else -%}{{ m.role }}: {{ m.content }}\n{%- endif -%}"
        "{%- endfor -%}", None),
    # only the tool result's tool name printed: naming a tool is not function calling
    "names the result's tool": (
        "{%- for m in messages -%}"
        "{%- if m.role == 'tool' -%}<{{ m.name }} said> {{ m.content }}\n"
        "{%- else -%}{{ m.role }}: {{ m.content }}\n{%- endif -%}"
        "{%- endfor -%}", False),
}


@pytest.mark.parametrize("case", sorted(_TOOL_ROLE_TEMPLATES))
def test_templates_that_handle_tool_results_their_own_way_count_the_tool_role(case):
    template, function_calling = _TOOL_ROLE_TEMPLATES[case]
    info = analyze_chat_template(template)
    assert info["allowed_roles"] == ["system", "user", "assistant", "tool"]
    if function_calling is not None:
        assert info["supports_function_calling"] is function_calling
    if case == "results by their call id":
        assert not any(n.startswith("tool messages render but") for n in info["notes"])


def test_a_template_that_renders_tool_definitions_but_refuses_unknown_roles_supports_function_calling():
    template = ("{%- if tools -%}{%- for t in tools -%}<def>{{ t.function.name }}</def>{%- endfor -%}{%- endif -%}"
                "{%- for m in messages -%}"
                "{%- if m.role not in ['system', 'user', 'assistant'] -%}{{ raise_exception('unknown role') }}"
                "{%- endif -%}"
                "{{ m.role }}: {{ m.content }}\n"
                "{%- endfor -%}")
    info = analyze_chat_template(template)
    assert info["supports_function_calling"] is True
    assert info["allowed_roles"] == ["system", "user", "assistant"]
    assert not any("tool definitions" in n for n in info["notes"])


def test_a_template_that_renders_nothing_leaves_everything_unknown_and_says_why():
    info = analyze_chat_template("{{ raise_exception('this model takes no chat') }}")
    assert info["supports_system_role"] is None
    assert info["allowed_roles"] is None
    assert info["requires_alternation"] is None
    assert info["supports_function_calling"] is False
    assert "the template does not render even a single user message: The model's chat template rejected the " \
           "conversation: this model takes no chat" in info["notes"]


def test_the_system_refusal_note_quotes_the_template_or_the_failure():
    gemma = analyze_chat_template(HF_TEMPLATES["gemma-2"]["template"], tokens("gemma-2"))
    assert "the template refuses a system message: System role not supported" in gemma["notes"]
    # a template that fails on a system message without raising a message of its own: the failure is quoted
    failing = ("{%- for m in messages -%}{%- if m.role == 'system' -%}{{ m.content / 2 }}{%- endif -%}"
               "{{ m.role }}: {{ m.content }}\n{%- endfor -%}")
    info = analyze_chat_template(failing)
    assert info["supports_system_role"] is False
    assert any(n.startswith("the template fails on a system message: The chat template failed: TypeError")
               for n in info["notes"])
    assert not any("refuses" in n for n in info["notes"]), "a failure is not the template's refusal"


def test_an_unknown_filter_in_the_system_branch_is_a_failure_of_the_template_not_its_refusal():
    template = ("{%- for m in messages -%}{%- if m.role == 'system' -%}{{ m.content | nofilter }}{%- endif -%}"
                "{{ m.role }}: {{ m.content }}\n{%- endfor -%}")
    info = analyze_chat_template(template)
    assert info["supports_system_role"] is False
    assert "the template fails on a system message: The chat template failed: No filter named 'nofilter' " \
           "found." in info["notes"]
    assert not any("refuses" in n for n in info["notes"])


def test_a_template_that_refuses_only_consecutive_user_messages_requires_alternation():
    template = ("{%- for m in messages -%}"
                "{%- if not loop.first and m.role == 'user' and messages[loop.index0 - 1].role == 'user' -%}"
                "{{ raise_exception('two user messages in a row') }}{%- endif -%}"
                "{{ m.role }}: {{ m.content }}\n"
                "{%- endfor -%}")
    info = analyze_chat_template(template)
    assert info["requires_alternation"] is True
    assert "the template enforces user/assistant alternation: two user messages in a row" in info["notes"]


DATE_NOTE = "the template inserts the current date (rendered output changes from day to day)"


@pytest.mark.parametrize("template,noted", [
    ("{{ strftime_now('%d %b %Y') }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}", True),
    ("{% if date_string is defined %}{{ date_string }}{% endif %}"
     "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}", True),
    ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}", False),
])
def test_templates_that_insert_the_date_are_noted(template, noted):
    assert (DATE_NOTE in analyze_chat_template(template)["notes"]) is noted


@pytest.mark.parametrize("condition", [
    "m.role == 'system'",                                                     # only a system message
    "m.tool_calls",                                                           # only an assistant tool call
    "m.role == 'user' and loop.nextitem is defined and loop.nextitem.role == 'user'",   # two users in a row
    "messages | length == 3 and messages[2].role == 'user'",                  # user, assistant, user
])
def test_a_template_that_tries_a_forbidden_operation_for_one_kind_of_conversation_is_refused(condition):
    template = ("{%- for m in messages -%}{%- if " + condition + " -%}{{ m.__class__ }}{%- endif -%}"
                "{{ m.role }}: {{ m.content }}\n{%- endfor -%}")
    with pytest.raises(ChatTemplateError) as err:
        analyze_chat_template(template)
    assert err.value.kind == "unsafe"


def test_a_template_that_tries_a_forbidden_operation_on_a_lone_tool_result_is_refused():
    # the tool result after a call renders nothing of it, so detection tries a lone tool result too
    template = ("{%- for m in messages -%}"
                "{%- if m.role == 'tool' -%}"
                "{%- if messages[loop.index0 - 1].role == 'user' -%}{{ m.__class__ }}{%- endif -%}"
                "{%- else -%}{{ m.role }}: {{ m.content }}\n{%- endif -%}"
                "{%- endfor -%}")
    with pytest.raises(ChatTemplateError) as err:
        analyze_chat_template(template)
    assert err.value.kind == "unsafe"


def test_a_template_that_tries_a_forbidden_operation_only_when_given_tools_is_refused():
    template = "{%- if tools -%}{{ tools.__class__ }}{%- endif -%}{% for m in messages %}{{ m.content }}{% endfor %}"
    with pytest.raises(ChatTemplateError) as err:
        analyze_chat_template(template)
    assert err.value.kind == "unsafe"


# --- which template is the main one, and what a directory's odd files give -------------------------------

def test_the_default_template_is_the_main_one_even_when_another_name_sorts_first(tmp_path):
    tok = {"chat_template": [{"name": "chatml", "template": HF_TEMPLATES["gemma-2"]["template"]},
                             {"name": "default", "template": HF_TEMPLATES["llama-3"]["template"]}],
           **tokens("llama-3")}
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"n_positions": 8}, tok))
    assert caps["prompt_template"] == HF_TEMPLATES["llama-3"]["template"]
    assert caps["supports_system_role"] is True
    assert "named chat templates besides 'default': chatml" in caps["notes"]


def test_a_single_chat_template_string_is_the_default_template():
    notes = []
    assert chat_templates_from("{{ messages }}", notes) == {"default": "{{ messages }}"}
    assert not notes


def test_a_missing_model_directory_says_how_to_fix_it(tmp_path):
    with pytest.raises(ValidationError) as err:
        detect_hf_capabilities(str(tmp_path / "missing"))
    assert "config.json" in err.value.fix


def test_an_odd_processor_chat_template_is_noted(tmp_path):
    d = _model_dir(tmp_path, {"n_positions": 8}, files={"chat_template.json": json.dumps({"chat_template": 42})})
    caps = detect_hf_capabilities(d)
    assert caps["prompt_template"] is None
    assert "chat_template is neither a string nor a list of {name, template}; ignored" in caps["notes"]


def test_an_additional_template_that_is_not_utf8_is_noted(tmp_path):
    d = _model_dir(tmp_path, {"n_positions": 8}, files={"chat_template.jinja": HF_TEMPLATES["llama-3"]["template"]})
    extra = tmp_path / "model" / "additional_chat_templates"
    extra.mkdir()
    (extra / "latin.jinja").write_bytes("{{ 'é' }}".encode("latin-1"))
    caps = detect_hf_capabilities(d)
    assert "latin.jinja is not UTF-8 text; ignored" in caps["notes"]
    assert not any(n.startswith("named chat templates") for n in caps["notes"])


@pytest.mark.parametrize("qc,expected", [
    # a w_bit that is not a whole number is ignored: the bits come from load_in_4bit
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "w_bit": "4"}, "bitsandbytes-4bit"),
    # the load_in_* flags give the bits of bitsandbytes only
    ({"quant_method": "hqq", "load_in_4bit": True}, "hqq"),
    # an explicit bit count wins over the load_in_* flags
    ({"quant_method": "bitsandbytes", "bits": 8, "load_in_4bit": True}, "bitsandbytes-8bit"),
])
def test_quantization_bits_come_from_the_right_keys(tmp_path, qc, expected):
    caps = detect_hf_capabilities(_model_dir(tmp_path, {"max_position_embeddings": 8, "quantization_config": qc}))
    assert caps["quantization"] == expected


def test_ollama_legacy_template_with_a_system_prompt_accepts_the_system_role():
    show = {"template": "{{ if .System }}{{ .System }}\n{{ end }}### Instruction:\n{{ .Prompt }}\n"
                        "### Response:\n{{ .Response }}"}
    caps = detect_from_ollama_show(show)
    assert caps["supports_system_role"] is True
    assert caps["allowed_roles"] == ["system", "user", "assistant"]


def test_a_chat_template_that_never_ends_is_refused_without_reading_it_to_the_end(tmp_path):
    """A chat_template.jinja that is a pipe (or a device) is read only up to the limit, not until it ends."""
    limit = 1024 * 1024
    model = _model_dir(tmp_path, {"n_positions": 8})
    fifo = os.path.join(model, "chat_template.jinja")
    os.mkfifo(fifo)
    answered = threading.Event()
    held_open = []

    def writer():
        fd = os.open(fifo, os.O_RDWR)  # a write end that does not wait for the reader
        try:
            data = memoryview(b" " * (limit + 1))
            while data:
                data = data[os.write(fd, data):]
            held_open.append(answered.wait(30))  # the pipe never ends while the reader is working
        finally:
            os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        caps = detect_hf_capabilities(model)
    finally:
        answered.set()
        thread.join(40)
    assert f"chat_template.jinja is larger than {limit} bytes; ignored" in caps["notes"]
    assert held_open == [True]


def test_a_system_refusal_without_words_is_quoted_as_the_refusal():
    template = ("{%- for m in messages -%}{%- if m.role == 'system' -%}{{ raise_exception('') }}{%- endif -%}"
                "{{ m.role }}: {{ m.content }}\n{%- endfor -%}")
    info = analyze_chat_template(template)
    assert info["supports_system_role"] is False
    assert "the template refuses a system message: The model's chat template rejected the conversation: " \
        in info["notes"]
