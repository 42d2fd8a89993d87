# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Adapting chat requests to what a model accepts, and rendering them with its chat template.

``adapt_messages`` rewrites an OpenAI-style message list for a model's capabilities (as
``venom_model_facts`` reports them, or as ``_capabilities`` detects them):

1. ``role_map`` renames roles (e.g. ``{tool: user, developer: system}``);
2. system messages are folded into the next user message when the model has no system role
   (the plain ``Instructions: ... User: ...`` shape a model without system role gets, ``fold_template``);
3. a role outside ``allowed_roles`` is refused with an error that names it and the way out;
4. consecutive same-role messages are merged when the chat template demands alternation;
5. the result is checked by rendering the model's own chat template (when it is known and Jinja)
   in the same sandbox detection uses; the template must accept it and keep the text of every
   system, user and tool message (assistant turns may be rewritten by templates on purpose, e.g.
   reasoning stripped). A template that drops a kept system message when the conversation does
   not end on a user turn (Mistral's templates put it in the last user turn) gets it folded instead.

Nothing is invented and no text is dropped: when the conversation cannot be made acceptable the
function raises ``ValidationError`` or ``ChatTemplateError`` saying why and what to do.
"""
from __future__ import annotations

import copy
import json
import re

from ansible_collections.venom.models.plugins.module_utils.capabilities.detect import analyze_chat_template
from ansible_collections.venom.models.plugins.module_utils.capabilities.sandbox import (
    MAX_OUTPUT_CHARS, ChatTemplateError, content_format, render_template, template_kind)
from ansible_collections.venom.models.plugins.module_utils.errors import ValidationError

DEFAULT_FOLD_TEMPLATE = "Instructions: {system}\n\nUser: {user}"
SYSTEM_MODES = ("fold", "keep", "error")
MAX_MESSAGES = 10_000
MAX_TOTAL_CHARS = 32 * 1024 * 1024
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{(system|user)\}")
_MERGE_SEP = "\n\n"


# ---------------------------------------------------------------------------------------------
# Input checks and content helpers
# ---------------------------------------------------------------------------------------------

def _text_of(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


def _texts(content) -> list:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [p["text"] for p in content if p.get("type") == "text"]


def _check_content(i: int, content):
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise ValidationError(f"Message {i}: content part {j} is not a mapping with a 'type'.",
                                      fix="Give content as a string or as OpenAI content parts "
                                          "([{type: text, text: ...}]).")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise ValidationError(f"Message {i}: text content part {j} has no 'text' string.",
                                      fix="Give each text part as {type: text, text: '...'}.")
            parts.append(dict(part))
        return parts
    raise ValidationError(f"Message {i}: content must be a string, a list of content parts or null, "
                          f"not {type(content).__name__}.", fix="Give the message text as a string.")


def normalize_messages(messages) -> list:
    """Validate an OpenAI-style message list and return a deep, plain copy."""
    if not isinstance(messages, (list, tuple)):
        raise ValidationError(f"The messages must be a list, not {type(messages).__name__}.",
                              fix="Pass a list of {role, content} mappings.")
    if not messages:
        raise ValidationError("The message list is empty.", fix="Give at least one message (role user).")
    if len(messages) > MAX_MESSAGES:
        raise ValidationError(f"{len(messages)} messages is more than the {MAX_MESSAGES} accepted.",
                              fix="Shorten the conversation.")
    out, total = [], 0
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ValidationError(f"Message {i} is a {type(msg).__name__}, not a mapping.",
                                  fix="Give each message as {role: ..., content: ...}.")
        role = msg.get("role")
        if not isinstance(role, str) or not _ROLE.match(role):
            raise ValidationError(f"Message {i} has no valid role ({role!r}).",
                                  fix="Give each message a role such as system, user, assistant or tool.")
        new = copy.deepcopy(dict(msg))
        new["role"] = str(role)
        new["content"] = _check_content(i, msg.get("content"))
        total += sum(len(t) for t in _texts(new["content"]))
        if total > MAX_TOTAL_CHARS:
            raise ValidationError(f"The messages hold more than {MAX_TOTAL_CHARS} characters.",
                                  fix="Shorten the conversation.")
        out.append(new)
    return out


def _with_text(content, text: str):
    """``content`` with its text replaced by ``text`` (non-text parts kept after it)."""
    if isinstance(content, list):
        others = [p for p in content if p.get("type") != "text"]
        if not others:
            return text
        return [{"type": "text", "text": text}] + others
    return text


def _fold(fold_template: str, system: str, user: str) -> str:
    values = {"system": system, "user": user}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], fold_template)


# ---------------------------------------------------------------------------------------------
# What the model accepts
# ---------------------------------------------------------------------------------------------

def _resolve(capabilities) -> dict:
    """Effective supports_system_role, allowed_roles, requires_alternation and the Jinja template."""
    if capabilities is None:
        capabilities = {}
    if not isinstance(capabilities, dict):
        raise ValidationError("The capabilities must be a mapping (as venom_model_facts reports them).",
                              fix="Pass the model's capabilities, e.g. "
                                  "ansible_facts['venom_models'][0]['capabilities'].")
    template = capabilities.get("prompt_template")
    jinja = template if isinstance(template, str) and template_kind(template) == "jinja" else None
    system = capabilities.get("supports_system_role")
    allowed = capabilities.get("allowed_roles")
    if allowed is not None and (not isinstance(allowed, (list, tuple)) or not all(isinstance(r, str) for r in allowed)):
        raise ValidationError("capabilities.allowed_roles must be a list of role names or null.",
                              fix="Fix the capabilities override (e.g. [system, user, assistant]).")
    alternation = None
    if jinja is not None:
        info = analyze_chat_template(jinja, capabilities.get("special_tokens"))
        if system is None:
            system = info["supports_system_role"]
        if allowed is None:
            allowed = info["allowed_roles"]
        alternation = info["requires_alternation"]
    if system is None and allowed is not None:
        system = "system" in allowed
    return {"system": system, "allowed": list(allowed) if allowed is not None else None,
            "alternation": alternation, "template": jinja}


# ---------------------------------------------------------------------------------------------
# adapt_messages
# ---------------------------------------------------------------------------------------------

def _check_options(system_mode, fold_template, role_map):
    if system_mode not in SYSTEM_MODES:
        raise ValidationError(f"system_mode {system_mode!r} is not one of {', '.join(SYSTEM_MODES)}.",
                              fix="Use fold (default), keep or error.")
    if not isinstance(fold_template, str) or "{system}" not in fold_template or "{user}" not in fold_template:
        raise ValidationError("fold_template must be a string holding both {system} and {user}.",
                              fix=f"For example {DEFAULT_FOLD_TEMPLATE!r}.")
    role_map = role_map or {}
    if not isinstance(role_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _ROLE.match(v) for k, v in role_map.items()):
        raise ValidationError("role_map must map role names to role names.",
                              fix="For example {tool: user, developer: system}.")
    return dict(role_map)


def _apply_roles(messages, role_map, model):
    allowed = model["allowed"]
    for i, msg in enumerate(messages):
        original = msg["role"]
        if original in role_map:
            msg["role"] = role_map[original]
            if msg["role"] != "tool":
                msg.pop("tool_call_id", None)
                if original == "tool":
                    msg.pop("name", None)
        role = msg["role"]
        if allowed is None or role in allowed or role == "system":
            continue
        mapped = f" (mapped from '{original}')" if original != role else ""
        raise ValidationError(
            f"Message {i} has the role '{role}'{mapped}, which the model does not accept "
            f"(it accepts: {', '.join(allowed)}).",
            fix=f"Map the role with role_map (for example role_map: {{{role}: user}}) or leave such "
                "messages out of the request.")


def _fold_system(messages, fold_template):
    """Fold every system message into the next user message (or the last one before it)."""
    out, pending, first_pending_at = [], [], None
    for msg in messages:
        if msg["role"] == "system":
            if first_pending_at is None:
                first_pending_at = len(out)
            pending.append(_text_of(msg["content"]))
            continue
        if msg["role"] == "user" and pending:
            msg = dict(msg)
            msg["content"] = _with_text(msg["content"], _fold(fold_template, _MERGE_SEP.join(pending),
                                                              _text_of(msg["content"])))
            pending, first_pending_at = [], None
        out.append(msg)
    if pending:
        last_user = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
        text = _MERGE_SEP.join(pending)
        if last_user is not None:
            msg = dict(out[last_user])
            msg["content"] = _with_text(msg["content"], _fold(fold_template, text, _text_of(msg["content"])))
            out[last_user] = msg
        else:
            out.insert(first_pending_at, {"role": "user", "content": text})
    return out


def _mergeable(msg) -> bool:
    return msg["role"] in ("user", "assistant", "system") and not msg.get("tool_calls") and \
        set(msg) <= {"role", "content", "name"}


def _merge_consecutive(messages):
    out = []
    for msg in messages:
        prev = out[-1] if out else None
        if prev is not None and prev["role"] == msg["role"] and _mergeable(prev) and _mergeable(msg) \
                and prev.get("name") == msg.get("name"):
            prev = dict(prev)
            text = _MERGE_SEP.join(t for t in (_text_of(prev["content"]), _text_of(msg["content"])))
            others = [p for c in (prev["content"], msg["content"]) if isinstance(c, list)
                      for p in c if p.get("type") != "text"]
            prev["content"] = [{"type": "text", "text": text}] + others if others else text
            out[-1] = prev
        else:
            out.append(msg)
    return out


def _check_text_kept(original, rendered: str):
    """The first system/user/tool text the rendered prompt lost: (index, role, text) or None."""
    for i, msg in enumerate(original):
        if msg["role"] == "assistant":
            continue
        for text in _texts(msg["content"]):
            if text.strip() and text.strip() not in rendered:
                return i, msg["role"], text
    return None


def _adapt(messages, model, system_mode, fold_template, role_map, merge_consecutive, force_fold=False):
    msgs = [dict(m) for m in messages]
    _apply_roles(msgs, role_map, model)
    has_system = any(m["role"] == "system" for m in msgs)
    system_ok = model["system"] is not False and (model["allowed"] is None or "system" in model["allowed"])
    if has_system and (force_fold or not system_ok):
        if system_mode == "fold" or force_fold:
            msgs = _fold_system(msgs, fold_template)
        elif system_mode == "error":
            raise ValidationError("The model does not accept system messages and system_mode is 'error'.",
                                  fix="Use system_mode: fold to fold them into the first user message.")
    if merge_consecutive and model["alternation"]:
        msgs = _merge_consecutive(msgs)
    return msgs


def adapt_messages(messages, capabilities, system_mode: str = "fold", fold_template: str = DEFAULT_FOLD_TEMPLATE,
                   role_map: dict | None = None, merge_consecutive: bool = True, validate: bool = True) -> list:
    """Rewrite ``messages`` so the model described by ``capabilities`` accepts them (see the module doc)."""
    role_map = _check_options(system_mode, fold_template, role_map)
    original = normalize_messages(messages)
    model = _resolve(capabilities)
    adapted = _adapt(original, model, system_mode, fold_template, role_map, merge_consecutive)
    if not validate or model["template"] is None:
        return adapted
    try:
        rendered = render_chat(adapted, model["template"], special_tokens=(capabilities or {}).get("special_tokens"))
    except ChatTemplateError as exc:
        if exc.kind != "rejected":
            raise
        raise ChatTemplateError(
            f"The model's chat template refuses the conversation even after adapting it: {exc.template_message}",
            fix="Check the order of the turns (many templates need the conversation to start with a user "
                "message and then alternate user/assistant), or map the offending roles with role_map.",
            kind="rejected", template_message=exc.template_message) from None
    lost = _check_text_kept(original, rendered)
    if lost is not None and system_mode == "fold" and any(m["role"] == "system" for m in adapted):
        adapted = _adapt(original, model, system_mode, fold_template, role_map, merge_consecutive, force_fold=True)
        rendered = render_chat(adapted, model["template"], special_tokens=(capabilities or {}).get("special_tokens"))
        lost = _check_text_kept(original, rendered)
    if lost is not None:
        i, role, text = lost
        shown = text.strip()[:60] + ("..." if len(text.strip()) > 60 else "")
        raise ValidationError(
            f"The model's chat template drops the text of message {i} ({role}): {shown!r} does not appear in "
            "the rendered prompt.",
            fix="Use system_mode: fold for system messages, map the role with role_map (e.g. {tool: user}), "
                "or pass validate: false if losing it is intended.")
    return adapted


# ---------------------------------------------------------------------------------------------
# render_chat
# ---------------------------------------------------------------------------------------------

def _template_from(template_or_capabilities) -> str:
    value = template_or_capabilities
    if isinstance(value, dict):
        value = value.get("prompt_template")
        if value is None:
            raise ValidationError("The capabilities hold no prompt_template (no chat template was detected).",
                                  fix="Pass the chat template text itself, or set capabilities.prompt_template "
                                      "through venom_model's capabilities option.")
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("render_chat needs a chat template (text) or capabilities holding prompt_template.",
                              fix="Pass the model's chat template or its capabilities from venom_model_facts.")
    return value


def _for_template(messages, fmt: str) -> list:
    out = []
    for i, msg in enumerate(messages):
        msg = dict(msg)
        content = msg.get("content")
        if fmt == "string" and isinstance(content, list):
            kinds = sorted({p["type"] for p in content if p["type"] != "text"})
            if kinds:
                raise ValidationError(f"Message {i} has {', '.join(kinds)} content, which this text-only chat "
                                      "template cannot show.", fix="Send only text parts to this model.")
            msg["content"] = "\n".join(_texts(content))
        elif fmt == "openai" and isinstance(content, str):
            msg["content"] = [{"type": "text", "text": content}]
        calls = msg.get("tool_calls")
        if isinstance(calls, list):  # like vLLM: JSON-string arguments become mappings for the template
            fixed = []
            for call in calls:
                call = copy.deepcopy(call)
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    try:
                        parsed = json.loads(fn["arguments"])
                        if isinstance(parsed, dict):
                            fn["arguments"] = parsed
                    except ValueError:
                        pass
                fixed.append(call)
            msg["tool_calls"] = fixed
        out.append(msg)
    return out


def render_chat(messages, template_or_capabilities, add_generation_prompt: bool = True,
                special_tokens: dict | None = None, **extra) -> str:
    """The prompt text ``messages`` become under the model's chat template (what vLLM/transformers build).

    ``extra`` goes to the template as variables (``tools``, ``documents``, ``bos_token``,
    ``eos_token``, template-specific switches such as ``enable_thinking``).
    """
    template = _template_from(template_or_capabilities)
    if isinstance(template_or_capabilities, dict) and special_tokens is None:
        special_tokens = template_or_capabilities.get("special_tokens")
    msgs = normalize_messages(messages)
    if template_kind(template) == "go":
        raise ChatTemplateError(
            "The model's template is an Ollama (Go) template, which only Ollama renders.",
            fix="Send the messages to Ollama's /api/chat; render_chat renders Jinja chat templates "
                "(Hugging Face and GGUF models).", kind="format")
    # like transformers (and vLLM through it): tools and documents are always passed, None when absent
    variables = {"tools": None, "documents": None}
    variables.update({k: v for k, v in (special_tokens or {}).items() if isinstance(v, str)})
    variables.update(extra)
    variables["messages"] = _for_template(msgs, content_format(template))
    variables["add_generation_prompt"] = bool(add_generation_prompt)
    size = sum(len(t) for m in msgs for t in _texts(m.get("content")))
    return render_template(template, variables, max_output=MAX_OUTPUT_CHARS + 2 * size)
