# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

import pytest

from ansible_collections.venom.models.plugins.module_utils.capabilities.detect import (
    CAPABILITY_KEYS, analyze_chat_template, detect_from_ollama_show, detect_gguf_capabilities,
    detect_hf_capabilities, max_context_from_config, merge_overrides)
from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import ChatTemplateError
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError
from tests.lib.gguf_writer import T, gguf_model
from tests.unit.plugins.module_utils.chat_data import HF_TEMPLATES, OLLAMA_TEMPLATES, tokens

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
