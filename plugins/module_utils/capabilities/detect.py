# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capability detection: what a model accepts, read from the model itself.

The result always has the same keys (what the manifest records as a model's capabilities)::

    supports_system_role       bool | None   the chat template renders a system message
    supports_function_calling  bool | None   the template renders tool definitions / tool calls
    allowed_roles              list | None   roles the template renders (of system, user, assistant, tool)
    prompt_template            str | None    the chat template (Jinja for HF/GGUF, Go for Ollama)
    max_context_length         int | None    tokens, as vLLM derives it (config.json) or GGUF/Ollama metadata
    quantization               str | None    quant method (+ bits), GGUF file type name, or the weights' dtype
    detected_from              dict          for each key, the source that decided it (None: unknown)
    notes                      list          what was found on the way (named templates, limits, ...)

Unknown stays ``None``; nothing is guessed. The template checks render the model's own chat template
in the sandbox of ``_chat_template`` (the environment transformers and vLLM use): the system role is
supported only if ``[system NEEDLE, user hi]`` renders and NEEDLE appears in the output (Gemma-style
templates raise ``System role not supported``; some templates silently drop the system message).
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import threading
from collections import OrderedDict

from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import (
    NEEDLE_PREFIX, ChatTemplateError, render_template, template_kind, template_references)
from ansible_collections.venom.models.plugins.module_utils.capabilities.files import (
    ADDITIONAL_TEMPLATES_DIR, MAX_CAPABILITY_FILE_BYTES)
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError, VenomError
from ansible_collections.venom.models.plugins.module_utils.capabilities.gguf import GGUFError, file_type_name, read_gguf_metadata

CAPABILITY_KEYS = ("supports_system_role", "supports_function_calling", "allowed_roles", "prompt_template",
                   "max_context_length", "quantization")
PROBE_ROLES = ("system", "user", "assistant", "tool")
MAX_JSON_BYTES = MAX_CAPABILITY_FILE_BYTES

# vLLM's _get_and_verify_max_len: the smallest of these config.json keys is the context length
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")
_TOOL_ROLE_MARKERS = ("tool", "ipython", "tool_results", "function")

_PROBE_TOOL = {"type": "function", "function": {
    "name": NEEDLE_PREFIX + "_fn", "description": "Probe tool.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "query"}},
                   "required": ["q"]}}}


def empty_capabilities() -> dict:
    out = {k: None for k in CAPABILITY_KEYS}
    out["detected_from"] = {k: None for k in CAPABILITY_KEYS}
    out["notes"] = []
    return out


def _set(caps: dict, key: str, value, source: str) -> None:
    caps[key] = value
    caps["detected_from"][key] = source if value is not None else None


# ---------------------------------------------------------------------------------------------
# Chat template analysis (Jinja)
# ---------------------------------------------------------------------------------------------

def _needle(tag: str) -> str:
    return f"{NEEDLE_PREFIX}_{tag}_7f3a"


def _probe(template: str, tokens: dict, messages: list, **extra):
    """(rendered text, None) or (None, ChatTemplateError)."""
    variables = {"tools": None, "documents": None}  # always passed by transformers, None when absent
    variables.update(tokens)
    variables.update(messages=messages, add_generation_prompt=True)
    variables.update(extra)
    try:
        return render_template(template, variables), None
    except ChatTemplateError as exc:
        return None, exc


_FATAL_KINDS = ("syntax", "unsafe", "limit", "format", "input")
_ANALYSIS_CACHE: OrderedDict = OrderedDict()
_ANALYSIS_LOCK = threading.Lock()


def analyze_chat_template(template: str, special_tokens: dict | None = None) -> dict:
    """What a Jinja chat template accepts, found by rendering probe conversations.

    Returns ``supports_system_role``, ``supports_function_calling``, ``allowed_roles``,
    ``requires_alternation`` (user/assistant turns must alternate), ``content_format`` and ``notes``;
    a value is None when the template could not tell. Raises ChatTemplateError when the template
    cannot be used at all (does not compile, is refused by the sandbox, is not Jinja).
    """
    tokens = {k: v for k, v in (special_tokens or {}).items() if isinstance(v, str)}
    cache_key = (template, tuple(sorted(tokens.items())))
    with _ANALYSIS_LOCK:
        if cache_key in _ANALYSIS_CACHE:
            return copy.deepcopy(_ANALYSIS_CACHE[cache_key])
    result = _analyze(template, tokens)
    with _ANALYSIS_LOCK:
        _ANALYSIS_CACHE[cache_key] = result
        while len(_ANALYSIS_CACHE) > 64:
            _ANALYSIS_CACHE.popitem(last=False)
    return copy.deepcopy(result)


def _analyze(template: str, tokens: dict) -> dict:
    refs = template_references(template)  # raises for syntax / format / size
    notes: list = []

    def fatal(err):
        if err is not None and err.kind in _FATAL_KINDS:
            raise err

    probes = {
        "system": [{"role": "system", "content": _needle("system")}, {"role": "user", "content": "hi"}],
        "user": [{"role": "user", "content": _needle("user")}],
        "assistant": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _needle("assistant")}],
    }
    rendered: dict = {}
    errors: dict = {}
    for role, msgs in probes.items():
        out, err = _probe(template, tokens, msgs)
        fatal(err)
        rendered[role], errors[role] = out, err
    # a tool result after an assistant tool call (the OpenAI shape); then a bare one
    call_id = "call00001"
    tool_msgs = [{"role": "user", "content": "hi"},
                 {"role": "assistant", "content": "", "tool_calls": [
                     {"id": call_id, "type": "function",
                      "function": {"name": NEEDLE_PREFIX + "_fn", "arguments": {"q": "x"}}}]},
                 {"role": "tool", "tool_call_id": call_id, "name": NEEDLE_PREFIX + "_fn",
                  "content": _needle("tool")}]
    out, err = _probe(template, tokens, tool_msgs)
    fatal(err)
    if out is None or _needle("tool") not in out:
        out2, err2 = _probe(template, tokens, [tool_msgs[0], tool_msgs[2]])
        fatal(err2)
        if out2 is not None:
            out, err = out2, err2
    rendered["tool"], errors["tool"] = out, err

    allowed = []
    for role in PROBE_ROLES:
        out = rendered[role]
        if out is None or _needle(role) not in out:
            continue
        if role == "tool" and not (set(_TOOL_ROLE_MARKERS) & refs["consts"] or "tool_call_id" in refs["attrs"]):
            notes.append("tool messages render but the template has no handling of its own for them "
                         "(it prints any role name as is); the tool role is not counted as supported")
            continue
        allowed.append(role)

    if rendered["system"] is not None and _needle("system") in rendered["system"]:
        system = True
    elif rendered["user"] is None:
        system = None
        notes.append("the template does not render even a single user message: " + str(errors["user"].msg))
    else:
        system = False
        if errors["system"] is not None and errors["system"].kind == "rejected":
            notes.append("the template refuses a system message: " + str(errors["system"].template_message
                                                                         or errors["system"].msg))
        elif errors["system"] is not None:
            notes.append("the template fails on a system message: " + str(errors["system"].msg))
        else:
            notes.append("the template renders a system message without its text (it drops it)")

    # alternation: consecutive user messages refused, alternating ones accepted
    alternation = None
    if rendered["user"] is not None:
        two, err_two = _probe(template, tokens, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        fatal(err_two)
        alt, err_alt = _probe(template, tokens, [{"role": "user", "content": "a"},
                                                 {"role": "assistant", "content": "b"},
                                                 {"role": "user", "content": "c"}])
        fatal(err_alt)
        if two is None and alt is not None:
            alternation = True
            notes.append("the template enforces user/assistant alternation: "
                         + str(err_two.template_message or err_two.msg))
        elif two is not None:
            alternation = False

    # function calling: tool definitions rendered, or assistant tool calls rendered
    tools_out, err_tools = _probe(template, tokens, [{"role": "user", "content": "hi"}], tools=[_PROBE_TOOL])
    fatal(err_tools)
    calls_out = rendered["tool"]
    if tools_out is not None and NEEDLE_PREFIX + "_fn" in tools_out:
        function_calling = True
    elif "tool_calls" in refs["attrs"] | refs["consts"] and calls_out is not None \
            and NEEDLE_PREFIX + "_fn" in calls_out:
        function_calling = True
        notes.append("the template renders tool calls but no tool definitions")
    else:
        function_calling = False

    if "strftime_now" in refs["names"] or "date_string" in refs["names"]:
        notes.append("the template inserts the current date (rendered output changes from day to day)")
    return {"supports_system_role": system, "supports_function_calling": function_calling,
            "allowed_roles": allowed or None, "requires_alternation": alternation, "notes": notes}


def _apply_template_analysis(caps: dict, templates: dict, tokens: dict, source: str) -> None:
    """Fill the template-derived keys from ``templates`` (name → text; 'default' is the main one)."""
    if not templates:
        caps["notes"].append("no chat template found: system role, roles and function calling are unknown")
        return
    default_name = "default" if "default" in templates else sorted(templates)[0]
    default = templates[default_name]
    _set(caps, "prompt_template", default, source)
    others = sorted(n for n in templates if n != default_name)
    if others:
        caps["notes"].append(f"named chat templates besides '{default_name}': {', '.join(others)}")
    try:
        info = analyze_chat_template(default, tokens)
    except (ChatTemplateError, VenomError) as exc:
        caps["notes"].append(f"the chat template cannot be used: {exc.msg}")
        return
    _set(caps, "supports_system_role", info["supports_system_role"], source)
    _set(caps, "allowed_roles", info["allowed_roles"], source)
    fc = info["supports_function_calling"]
    fc_source = source
    if not fc and "tool_use" in templates and default_name != "tool_use":
        try:
            if analyze_chat_template(templates["tool_use"], tokens)["supports_function_calling"]:
                fc, fc_source = True, source + " (tool_use template)"
                caps["notes"].append("function calling comes from the 'tool_use' chat template, which the "
                                     "runtime selects when a request carries tools")
        except (ChatTemplateError, VenomError) as exc:
            caps["notes"].append(f"the 'tool_use' chat template cannot be used: {exc.msg}")
    _set(caps, "supports_function_calling", fc, fc_source)
    caps["notes"].extend(info["notes"])


# ---------------------------------------------------------------------------------------------
# Hugging Face model directories
# ---------------------------------------------------------------------------------------------

def _read_json(path: str, notes: list):
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    name = os.path.basename(path)
    if size > MAX_JSON_BYTES:
        notes.append(f"{name} is {size} bytes, beyond the {MAX_JSON_BYTES} bytes read; ignored")
        return None
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        notes.append(f"{name} cannot be read as JSON ({type(exc).__name__}: {exc}); ignored")
        return None
    if not isinstance(doc, dict):
        notes.append(f"{name} is not a JSON object; ignored")
        return None
    return doc


def _read_text(path: str, notes: list, limit: int = 1024 * 1024):
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return None
    if len(data) > limit:
        notes.append(f"{os.path.basename(path)} is larger than {limit} bytes; ignored")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        notes.append(f"{os.path.basename(path)} is not UTF-8 text; ignored")
        return None


def _token_text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def special_tokens_from(tokenizer_config: dict | None) -> dict:
    """The special tokens transformers passes to chat templates, from tokenizer_config.json."""
    out = {}
    for key in SPECIAL_TOKEN_KEYS:
        text = _token_text((tokenizer_config or {}).get(key))
        if text is not None:
            out[key] = text
    return out


def chat_templates_from(value, notes: list) -> dict:
    """tokenizer_config's ``chat_template``: a string, or a list of ``{name, template}`` → name → text."""
    if isinstance(value, str) and value.strip():
        return {"default": value}
    out = {}
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("template"), str):
                out[item["name"]] = item["template"]
            else:
                notes.append("an entry of the chat_template list is not {name, template}; ignored")
    elif value is not None:
        notes.append("chat_template is neither a string nor a list of {name, template}; ignored")
    return out


def _positive_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _rope_parameters(config: dict) -> list:
    for key in ("rope_parameters", "rope_scaling"):
        value = config.get(key)
        if isinstance(value, dict) and value:
            nested = [v for v in value.values() if isinstance(v, dict)]
            if nested and len(nested) == len(value):  # per layer type (transformers v5)
                return nested
            return [value]
    return []


def max_context_from_config(config: dict, tokenizer_config: dict | None = None,
                            sentence_config: dict | None = None):
    """The context length as vLLM derives it (``_get_and_verify_max_len``); (value, source, notes)."""
    notes: list = []
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    derived, key_used = math.inf, None
    for key in MAX_LEN_KEYS:
        value = _positive_int(text.get(key))
        if value is not None and value < derived:
            derived, key_used = value, key
    model_max = _positive_int(text.get("model_max_length"))
    if model_max is not None:  # Command-R / Cohere: model_max_length wins
        derived, key_used = model_max, "model_max_length"
    source = f"config.json:{key_used}" if key_used else None
    tok_max = _positive_int((tokenizer_config or {}).get("model_max_length"))
    if tok_max is not None and tok_max < derived:
        derived, source = tok_max, "tokenizer_config.json:model_max_length"
    if derived == math.inf:
        return None, None, notes
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    params = _rope_parameters(text)
    if params and "gemma3" not in model_type:
        factor = 1.0
        for rp in params:
            rope_type = rp.get("rope_type", rp.get("type"))
            if rope_type not in ("su", "longrope", "llama3"):
                f = rp.get("factor", factor)
                if isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0:
                    factor = float(f)
                if rope_type == "yarn":
                    original = _positive_int(rp.get("original_max_position_embeddings"))
                    if original is None:
                        notes.append("yarn rope scaling without original_max_position_embeddings; "
                                     "context length not derived")
                        return None, None, notes
                    derived = original
        if factor != 1.0:
            notes.append(f"context length scaled by the rope scaling factor {factor:g}")
            source = (source or "config.json") + " x rope factor"
        derived *= factor
        if any(rp.get("rope_type", rp.get("type")) == "longrope" for rp in params):
            original = _positive_int(text.get("original_max_position_embeddings"))
            if original is not None:
                notes.append(f"LongRoPE model: vLLM defaults to original_max_position_embeddings {original} "
                             f"(the model supports up to {int(derived)})")
                derived, source = original, "config.json:original_max_position_embeddings (LongRoPE)"
    encoder_max = _positive_int((sentence_config or {}).get("max_seq_length"))
    if encoder_max is not None:
        derived, source = encoder_max, "sentence_bert_config.json:max_seq_length"
    return int(derived), source, notes


def _hf_quantization(config: dict):
    qc = config.get("quantization_config")
    if isinstance(qc, dict):
        method = qc.get("quant_method")
        if not isinstance(method, str) or not method:
            method = "bitsandbytes" if (qc.get("load_in_4bit") or qc.get("load_in_8bit")) else None
        if method is None:
            return None, None
        bits = qc.get("bits") if isinstance(qc.get("bits"), int) else qc.get("w_bit") if isinstance(
            qc.get("w_bit"), int) else None
        if bits is None and method == "bitsandbytes":
            bits = 4 if qc.get("load_in_4bit") else 8 if qc.get("load_in_8bit") else None
        if bits is None and isinstance(qc.get("config_groups"), dict):  # compressed-tensors
            found = {g.get("weights", {}).get("num_bits") for g in qc["config_groups"].values()
                     if isinstance(g, dict) and isinstance(g.get("weights"), dict)}
            if len(found) == 1 and isinstance(next(iter(found)), int):
                bits = next(iter(found))
        value = f"{method}-{bits}bit" if isinstance(bits, int) and not isinstance(bits, bool) else method
        return value, "config.json:quantization_config"
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    dtype = config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or text.get("dtype")
    names = {"bfloat16": "BF16", "float16": "F16", "half": "F16", "float32": "F32", "float": "F32"}
    if isinstance(dtype, str) and dtype in names:
        return names[dtype], "config.json:torch_dtype (not quantized)"
    return None, None


def detect_hf_capabilities(model_dir: str) -> dict:
    """Capabilities of a Hugging Face model directory (config.json, tokenizer_config.json, chat templates)."""
    caps = empty_capabilities()
    notes = caps["notes"]
    if not os.path.isdir(model_dir):
        raise ValidationError(f"{model_dir} is not a directory.",
                              fix="Point capability detection at the model's directory (where config.json is).")

    def join(name):
        return os.path.join(model_dir, name)

    config = _read_json(join("config.json"), notes)
    tok_config = _read_json(join("tokenizer_config.json"), notes)
    gen_config = _read_json(join("generation_config.json"), notes)
    sentence_config = _read_json(join("sentence_bert_config.json"), notes)
    if config is None:
        notes.append("no readable config.json: context length and quantization are unknown")

    templates, source = {}, None
    jinja_file = _read_text(join("chat_template.jinja"), notes)
    if jinja_file and jinja_file.strip():
        templates, source = {"default": jinja_file}, "chat_template.jinja"
        extra_dir = join(ADDITIONAL_TEMPLATES_DIR)
        if os.path.isdir(extra_dir):
            for name in sorted(os.listdir(extra_dir))[:32]:
                if name.endswith(".jinja"):
                    text = _read_text(os.path.join(extra_dir, name), notes)
                    if text and text.strip():
                        templates[name[:-len(".jinja")]] = text
    elif tok_config is not None and tok_config.get("chat_template") is not None:
        templates, source = chat_templates_from(tok_config.get("chat_template"), notes), "tokenizer_config.json"
    else:
        processor = _read_json(join("chat_template.json"), notes)
        if processor is not None:
            templates, source = chat_templates_from(processor.get("chat_template"), notes), "chat_template.json"
    _apply_template_analysis(caps, templates, special_tokens_from(tok_config), source or "")

    if config is not None:
        value, src, more = max_context_from_config(config, tok_config, sentence_config)
        notes.extend(more)
        _set(caps, "max_context_length", value, src)
        q, qsrc = _hf_quantization(config)
        _set(caps, "quantization", q, qsrc)
    if gen_config is not None and _positive_int(gen_config.get("max_length")):
        notes.append(f"generation_config.json max_length {gen_config['max_length']} is a generation default, "
                     "not the context length")
    return caps


# ---------------------------------------------------------------------------------------------
# GGUF files
# ---------------------------------------------------------------------------------------------

def detect_gguf_capabilities(path: str) -> dict:
    """Capabilities of a GGUF model file (architecture, file type, context length, chat template)."""
    caps = empty_capabilities()
    try:
        meta = read_gguf_metadata(path)
    except GGUFError as exc:
        caps["notes"].append(exc.msg)
        return caps
    if meta.architecture:
        caps["notes"].append(f"GGUF architecture {meta.architecture}, version {meta.version}")
    _set(caps, "max_context_length", meta.context_length,
         f"gguf:{meta.architecture}.context_length" if meta.architecture else "gguf")
    if meta.file_type is not None and meta.quantization is None:
        caps["notes"].append(f"general.file_type {meta.file_type} is not a known llama.cpp file type")
    _set(caps, "quantization", meta.quantization, "gguf:general.file_type")
    tokens = {}
    for key in ("bos", "eos", "unk", "pad"):
        text = meta.token(key)
        if text is not None:
            tokens[f"{key}_token"] = text
    _apply_template_analysis(caps, meta.chat_templates(), tokens, "gguf:tokenizer.chat_template")
    return caps


# ---------------------------------------------------------------------------------------------
# Ollama (/api/show)
# ---------------------------------------------------------------------------------------------

_GO_ROLE_EQ = re.compile(r'eq\s+(?:\$\.|\$[A-Za-z_]\w*\.|\.)Role\s+"([A-Za-z_]+)"')
_GO_ROLE_PRINT = re.compile(r"\{\{-?\s*\.Role\s*-?\}\}")


def detect_from_ollama_show(show: dict) -> dict:
    """Capabilities from Ollama's ``/api/show`` answer (capabilities, template, model_info, details)."""
    caps = empty_capabilities()
    notes = caps["notes"]
    if not isinstance(show, dict):
        raise ValidationError("The Ollama show answer must be a mapping.",
                              fix="Pass the JSON object /api/show returned.")
    template = show.get("template") if isinstance(show.get("template"), str) else None
    if template and template.strip():
        _set(caps, "prompt_template", template, "ollama:template")
        kind = template_kind(template)
        if kind != "go":
            notes.append("the Ollama template does not look like a Go template; reading it anyway")
        roles_eq = set(_GO_ROLE_EQ.findall(template))
        uses_messages = ".Messages" in template
        prints_role = bool(_GO_ROLE_PRINT.search(template))
        if re.search(r"\.System\b", template) or "system" in roles_eq or (uses_messages and prints_role):
            system = True
        else:
            system = False
            notes.append("the Ollama template has no place for a system message (no .System, no system role)")
        _set(caps, "supports_system_role", system, "ollama:template")
        if uses_messages:
            roles = set(PROBE_ROLES) if prints_role else roles_eq & set(PROBE_ROLES)
            if re.search(r"\.System\b", template):
                roles.add("system")
        else:  # legacy .System/.Prompt/.Response templates
            roles = {"user", "assistant"} | ({"system"} if system else set())
        _set(caps, "allowed_roles", [r for r in PROBE_ROLES if r in roles] or None, "ollama:template")
    else:
        notes.append("Ollama returned no template: system role and roles are unknown")

    reported = show.get("capabilities")
    if isinstance(reported, list):
        _set(caps, "supports_function_calling", "tools" in reported, "ollama:capabilities")
        notes.append("Ollama capabilities: " + ", ".join(str(c) for c in reported))
    elif template:
        _set(caps, "supports_function_calling", bool(re.search(r"\.(Tools|ToolCalls)\b", template)),
             "ollama:template")

    info = show.get("model_info") if isinstance(show.get("model_info"), dict) else {}
    arch = info.get("general.architecture")
    if isinstance(arch, str) and arch:
        _set(caps, "max_context_length", _positive_int(info.get(f"{arch}.context_length")),
             f"ollama:model_info.{arch}.context_length")
    details = show.get("details") if isinstance(show.get("details"), dict) else {}
    level = details.get("quantization_level")
    if isinstance(level, str) and level.strip():
        _set(caps, "quantization", level.strip(), "ollama:details.quantization_level")
    elif _positive_int(info.get("general.file_type")) is not None or info.get("general.file_type") == 0:
        _set(caps, "quantization", file_type_name(info.get("general.file_type")), "ollama:model_info.general.file_type")
    params = show.get("parameters")
    if isinstance(params, str):
        m = re.search(r"^num_ctx\s+(\d+)\s*$", params, re.MULTILINE)
        if m:
            notes.append(f"the Modelfile sets num_ctx {m.group(1)} (the context Ollama runs it with)")
    return caps


# ---------------------------------------------------------------------------------------------
# Overrides (venom_model's capabilities option)
# ---------------------------------------------------------------------------------------------

def _check_override(key: str, value):
    def bad(expected):
        raise ValidationError(f"Capability override {key}={value!r} is not valid: expected {expected}.",
                              fix=f"Give {key} as {expected}, or null to mark it unknown.")
    if value is None:
        return None
    if key in ("supports_system_role", "supports_function_calling"):
        if not isinstance(value, bool):
            bad("true or false")
    elif key == "allowed_roles":
        if not isinstance(value, (list, tuple)) or not value or \
                not all(isinstance(r, str) and re.fullmatch(r"[a-z_]{1,32}", r) for r in value):
            bad("a non-empty list of role names such as [system, user, assistant, tool]")
        value = list(dict.fromkeys(value))
    elif key == "prompt_template":
        if not isinstance(value, str) or not value.strip():
            bad("the chat template text")
    elif key == "max_context_length":
        if _positive_int(value) is None:
            bad("a positive integer (tokens)")
        value = _positive_int(value)
    elif key == "quantization":
        if not isinstance(value, str) or not value.strip() or len(value) > 64:
            bad("a short name such as Q4_K_M, awq-4bit or BF16")
    return value


def merge_overrides(detected: dict, overrides: dict | None) -> dict:
    """Detected capabilities with the operator's overrides applied (``detected_from`` says 'override')."""
    out = copy.deepcopy(detected) if detected else empty_capabilities()
    for key in CAPABILITY_KEYS:
        out.setdefault(key, None)
    out.setdefault("detected_from", {k: None for k in CAPABILITY_KEYS})
    out.setdefault("notes", [])
    if not overrides:
        return out
    if not isinstance(overrides, dict):
        raise ValidationError("Capability overrides must be a mapping.",
                              fix=f"Give a mapping with some of: {', '.join(CAPABILITY_KEYS)}.")
    unknown = sorted(set(overrides) - set(CAPABILITY_KEYS))
    if unknown:
        raise ValidationError(f"Unknown capability override(s): {', '.join(map(str, unknown))}.",
                              fix=f"Use only: {', '.join(CAPABILITY_KEYS)}.")
    for key, value in overrides.items():
        value = _check_override(key, value)
        if out.get(key) != value:
            out["notes"].append(f"{key} overridden (detected: {json.dumps(out.get(key))[:80]})")
        out[key] = value
        out["detected_from"][key] = "override"
    return out
