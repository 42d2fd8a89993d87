# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one sandboxed Jinja environment for model chat templates.

Capability detection (``_capabilities``) and the chat filters (``_chat``) render a model's own chat
template here, so what they conclude is what the runtime will do. The environment matches the one
Hugging Face transformers builds for ``apply_chat_template`` (and vLLM uses through it):

* ``jinja2.sandbox.ImmutableSandboxedEnvironment`` with ``trim_blocks`` and ``lstrip_blocks``;
* the ``loopcontrols`` extension (``{% break %}``, ``{% continue %}``) and the ``{% generation %}``
  block tag (rendered as its body; transformers uses it to mark assistant tokens);
* ``tojson`` with transformers' signature ``tojson(x, ensure_ascii=False, indent=None,
  separators=None, sort_keys=False)`` (no HTML escaping);
* the globals ``raise_exception(message)`` and ``strftime_now(format)``;
* render variables ``messages``, ``tools``, ``documents``, ``add_generation_prompt`` and the
  tokenizer's special tokens (``bos_token``, ``eos_token``, ...) passed by the caller.

Templates come from downloaded files, so they are treated as hostile: the sandbox blocks attribute
access to internals (``__class__`` and friends) and mutation of lists and dicts; on top of it this
module bounds the template size, the output size, the size of every string, list and number the
template builds (``+``, ``*``, ``**``, ``%``, ``~``, ``str.format``, padding methods and filters),
``range()`` lengths, and the wall-clock time of a render. A template that crosses a bound is
refused with ``ChatTemplateError`` (``kind`` ``limit`` or ``unsafe``); nothing hangs and nothing
allocates gigabytes.
"""
from __future__ import annotations

import ctypes
import functools
import json
import re
import threading
from collections import OrderedDict
from datetime import datetime

from ansible_collections.venom.models.plugins.module_utils.errors import MissingDependencyError, VenomError

try:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    import jinja2.sandbox
    from jinja2.compiler import CodeGenerator
except ImportError as _exc:  # the sanity import test and targets without jinja2
    jinja2 = None
    JINJA2_IMPORT_ERROR: ImportError | None = _exc
else:
    JINJA2_IMPORT_ERROR = None

MAX_TEMPLATE_CHARS = 512 * 1024
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
MAX_VALUE_CHARS = 4 * 1024 * 1024     # any string or sequence the template builds
MAX_WIDTH = 100_000                   # padding widths, repeat counts, indents
MAX_INT_BITS = 4096                   # integers the template computes
MAX_RANGE = 100_000
DEFAULT_TIMEOUT = 5.0
_CACHE_SIZE = 64

NEEDLE_PREFIX = "VENOMPROBE"

_GO_TEMPLATE = re.compile(
    r"\{\{-?\s*(?:\.[A-Za-z]|\$[A-Za-z_.]|range\s|end\s*-?\}\}|else\s*-?\}\}|with\s|if\s+(?:\.|\$|eq\s|ne\s|and\s|or\s|not\s))")


class ChatTemplateError(VenomError):
    """A chat template could not be compiled or rendered, or was refused.

    ``kind`` says why:

    * ``syntax``: the template does not compile;
    * ``rejected``: the template itself refused the conversation (``raise_exception``), e.g.
      ``System role not supported``; ``template_message`` holds its words;
    * ``error``: rendering failed otherwise (a missing field, a type error in the template);
    * ``unsafe``: the template tried something the sandbox forbids (internals, mutation);
    * ``limit``: a size or time bound was crossed (output, strings, ranges, numbers, timeout);
    * ``format``: the text is not a Jinja chat template (e.g. an Ollama Go template);
    * ``input``: the messages or variables given to the template are not valid.
    """

    def __init__(self, msg: str, fix: str | None = None, kind: str = "error", template_message: str | None = None):
        super().__init__(msg, fix=fix, kind=kind)
        self.kind = kind
        self.template_message = template_message


def require_jinja2() -> None:
    if jinja2 is None:
        raise MissingDependencyError("jinja2", "to render chat templates", JINJA2_IMPORT_ERROR)


def template_kind(source) -> str | None:
    """``jinja`` for a Jinja chat template, ``go`` for an Ollama (Go text/template) template, else None."""
    if not isinstance(source, str) or not source.strip():
        return None
    if _GO_TEMPLATE.search(source):
        return "go"
    return "jinja"


class _RenderTimeout(BaseException):
    """Raised asynchronously in the rendering thread by the watchdog (never caught by templates)."""


def _limit(what: str) -> None:
    raise ChatTemplateError(
        f"The chat template was stopped: {what}.",
        fix="Use the template the model was published with; a template that builds huge values or "
            "loops without end is refused. If it is genuine, report it with the model name.",
        kind="limit")


def _seq_len(value) -> int | None:
    if isinstance(value, (str, list, tuple)):
        return len(value)
    return None


def _check_value(value):
    n = _seq_len(value)
    if n is not None and n > _value_limit():
        _limit(f"it built a value of {n} items or characters (at most {_value_limit()})")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        _limit(f"it computed an integer of {value.bit_length()} bits (at most {MAX_INT_BITS})")
    return value


def _check_width(value, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
        _limit(f"{what} {value} is larger than {MAX_WIDTH}")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")
_DIGITS = re.compile(r"\d+")
_NESTED_BRACE = re.compile(r"\{[^{}]*\{")


def _check_percent_format(fmt: str, args) -> None:
    values = args if isinstance(args, tuple) else (args,)
    for m in _PERCENT_SPEC.finditer(fmt):
        for part in m.groups():
            if part == "*":
                for v in values:
                    _check_width(v, "a '*' width in a %-format")
            elif part:
                _check_width(int(part), "a width in a %-format")


def _check_brace_format(fmt: str, args, kwargs) -> None:
    for m in _BRACE_SPEC.finditer(fmt):
        for digits in _DIGITS.findall(m.group(1)):
            _check_width(int(digits), "a width in a format string")
    if _NESTED_BRACE.search(fmt):
        for v in list(args) + list((kwargs or {}).values()):
            _check_width(v, "a nested format width")


_STATE = threading.local()
_MAX_DEPTH = 100


def _value_limit() -> int:
    return getattr(_STATE, "value_limit", MAX_VALUE_CHARS)


def _weight(value, limit: int, memo: dict, depth: int = 0) -> int:
    """About how many characters ``value`` becomes as text (str(), repr, JSON), stopping past ``limit``.

    Containers can share their items, so a small structure may stand for an enormous text (a list of
    itself twice, forty times over); shared items are counted once per use, with a memo by identity.
    """
    if isinstance(value, str):
        return len(value)
    if value is None or isinstance(value, (bool, int, float)):
        return 24
    key = id(value)
    if key in memo:
        return memo[key]
    if depth > _MAX_DEPTH:
        _limit(f"it built data nested more than {_MAX_DEPTH} levels deep")
    if jinja2 is not None and isinstance(value, jinja2.utils.Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    total = 2
    if isinstance(value, dict):
        for k, v in value.items():
            total += _weight(k, limit, memo, depth + 1) + _weight(v, limit, memo, depth + 1) + 4
            if total > limit:
                break
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            total += _weight(item, limit, memo, depth + 1) + 2
            if total > limit:
                break
    else:  # undefined values, loop objects, macros: short representations
        total = 64
    memo[key] = total
    return total


def _check_text_size(value, what: str, extra: int = 0) -> None:
    """Refuse before ``value`` is turned into text when the text would be beyond the value bound."""
    if isinstance(value, str) and len(value) + extra <= MAX_VALUE_CHARS:
        return
    limit = _value_limit()
    size = _weight(value, limit, {}) + extra
    if size > limit:
        _limit(f"{what} would build a text of more than {limit} characters")


def _guard_str_method(s: str, name: str, method):
    """Wrap a bound ``str`` method whose result can be far larger than its inputs."""

    def guarded(*args, **kwargs):
        if name in ("ljust", "rjust", "center", "zfill"):
            _check_width(args[0] if args else kwargs.get("width"), f"str.{name} width")
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            _check_width(size, "str.expandtabs tab size")
            if isinstance(size, int) and s.count("\t") * max(size, 0) + len(s) > _value_limit():
                _limit("str.expandtabs would build a string that is too long")
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            count = s.count(args[0]) if args[0] else len(s) + 1
            if len(s) + count * max(len(args[1]) - len(args[0]), 0) > _value_limit():
                _limit("str.replace would build a string that is too long")
        elif name == "join" and args:
            items = list(args[0]) if not isinstance(args[0], (list, tuple, str)) else args[0]
            _check_text_size(items, "str.join", extra=len(s) * max(len(items) - 1, 0))
            args = (items,) + tuple(args[1:])
        elif name == "translate" and args and isinstance(args[0], dict):
            longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
            if len(s) * max(longest, 1) > _value_limit():
                _limit("str.translate would build a string that is too long")
        return _check_value(method(*args, **kwargs))

    return guarded


_GUARDED_STR_METHODS = frozenset(("ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "translate"))


def _user_args(args):
    """Split the leading jinja-internal arguments (context, eval context, environment) off."""
    i = 0
    while i < len(args) and jinja2 is not None and isinstance(
            args[i], (jinja2.runtime.Context, jinja2.nodes.EvalContext, jinja2.Environment)):
        i += 1
    return args[:i], list(args[i:])


def _guard_filter(name: str, func):
    @functools.wraps(func)
    def guarded(*args, **kwargs):
        head, rest = _user_args(args)
        if rest and not isinstance(rest[0], (list, tuple, str, dict)) and name == "join":
            rest[0] = list(rest[0])
        _check_text_size((rest, kwargs), f"the '{name}' filter")
        if name in ("center", "indent", "wordwrap", "truncate", "batch", "slice"):
            for v in rest[1:] + list(kwargs.values()):
                _check_width(v, f"an argument of the '{name}' filter")
        elif name == "tojson":
            _check_width(kwargs.get("indent", rest[2] if len(rest) > 2 else None), "the tojson indent")
        elif name == "format" and rest and isinstance(rest[0], str):
            _check_percent_format(rest[0], tuple(rest[1:]) + tuple(kwargs.values()))
        elif name == "join" and rest and isinstance(rest[0], (list, tuple)):
            sep = rest[1] if len(rest) > 1 else kwargs.get("d", "")
            _check_text_size(rest[0], "the 'join' filter",
                             extra=(len(sep) if isinstance(sep, str) else 0) * max(len(rest[0]) - 1, 0))
        elif name == "replace" and len(rest) >= 3 and all(isinstance(v, str) for v in rest[:3]):
            count = rest[0].count(rest[1]) if rest[1] else len(rest[0]) + 1
            if len(rest[0]) + count * max(len(rest[2]) - len(rest[1]), 0) > _value_limit():
                _limit("the 'replace' filter would build a string that is too long")
        return _check_value(func(*head, *rest, **kwargs))

    return guarded


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    _check_width(indent, "the tojson indent")
    _check_text_size(x, "tojson", extra=0)
    return _check_value(json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                                   sort_keys=sort_keys))


def _raise_exception(message):
    _check_text_size(message, "raise_exception")
    refusal = jinja2.exceptions.TemplateError(str(message))
    refusal.venom_refusal = True   # the template's own words, unlike jinja's runtime errors
    raise refusal


def _strftime_now(fmt):
    if not isinstance(fmt, str) or len(fmt) > 256:
        _limit("strftime_now was given an overlong format")
    return datetime.now().strftime(fmt)


def _safe_range(*args):
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        _limit(f"range() of {len(rng)} items (at most {MAX_RANGE})")
    return rng


def _concat(items) -> str:
    _check_text_size(items, "the '~' operator")
    return "".join(str(x) for x in items)


def _finalize(value):
    """Every printed value passes here before str(): refuse values whose text would be enormous."""
    if not isinstance(value, str):
        _check_text_size(value, "printing a value")
    return value


if jinja2 is not None:

    class _GuardedCodeGenerator(CodeGenerator):
        """Routes the ``~`` operator through the environment so its result size is bounded."""

        def visit_Concat(self, node, frame):  # noqa: N802 (jinja's visitor naming)
            self.write("environment.venom_concat((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class _GenerationTag(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: transformers' assistant-mask marker; renders its body."""

        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    class _ChatSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
        code_generator_class = _GuardedCodeGenerator
        intercepted_binops = frozenset(("+", "*", "**", "%"))

        def call_binop(self, context, operator, left, right):
            if operator == "+":
                ln, rn = _seq_len(left), _seq_len(right)
                if ln is not None and rn is not None and ln + rn > _value_limit():
                    _limit(f"'+' would build a value of {ln + rn} items or characters")
            elif operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if _seq_len(seq) is not None and isinstance(n, int):
                        _check_width(n, "a repeat count")
                        if len(seq) * max(n, 0) > _value_limit():
                            _limit(f"'*' would build a value of {len(seq) * n} items or characters")
                if isinstance(left, int) and isinstance(right, int) and \
                        left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    _limit("'*' would compute a huge integer")
            elif operator == "**":
                if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 and \
                        right * max(abs(left).bit_length(), 1) > MAX_INT_BITS:
                    _limit("'**' would compute a huge integer")
            elif operator == "%" and isinstance(left, str):
                _check_percent_format(left, right)
                _check_text_size(right, "'%' formatting", extra=len(left))
            return _check_value(super().call_binop(context, operator, left, right))

        def wrap_str_format(self, value):
            wrapped = super().wrap_str_format(value)
            owner = getattr(value, "__self__", None)
            if not isinstance(owner, str):
                return wrapped
            name = getattr(value, "__name__", "")
            if wrapped is not None:
                def checked_format(*args, **kwargs):
                    mapping = args[0] if name == "format_map" and args and isinstance(args[0], dict) else kwargs
                    _check_brace_format(owner, args if name == "format" else (), mapping)
                    _check_text_size((args, kwargs), f"str.{name}", extra=len(owner))
                    return _check_value(wrapped(*args, **kwargs))
                return checked_format
            if name in _GUARDED_STR_METHODS:
                return _guard_str_method(owner, name, value)
            return None

        def unsafe_undefined(self, obj, attribute):
            # refuse at once (jinja would return an undefined value that only fails when used)
            raise jinja2.sandbox.SecurityError(
                f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

        def call(self, context, obj, /, *args, **kwargs):
            return _check_value(super().call(context, obj, *args, **kwargs))


_ENV = None
_ENV_LOCK = threading.Lock()
_CACHE: OrderedDict = OrderedDict()


def environment():
    """The shared sandboxed environment (built once)."""
    global _ENV  # pylint: disable=global-statement
    require_jinja2()
    with _ENV_LOCK:
        if _ENV is None:
            env = _ChatSandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False, finalize=_finalize,
                               extensions=[jinja2.ext.loopcontrols, _GenerationTag])
            for name in list(env.filters):
                env.filters[name] = _guard_filter(name, env.filters[name])
            env.filters["tojson"] = _tojson
            env.globals.pop("lipsum", None)
            env.globals.update(range=_safe_range, raise_exception=_raise_exception, strftime_now=_strftime_now)
            env.venom_concat = _concat
            _ENV = env
        return _ENV


def compile_template(source: str):
    """Compile a chat template (cached by its text). Raises ChatTemplateError."""
    if not isinstance(source, str) or not source.strip():
        raise ChatTemplateError("The chat template is empty or not a string.",
                                fix="Pass the model's chat template text (or capabilities that hold it).",
                                kind="input")
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ChatTemplateError(
            f"The chat template has {len(source)} characters; at most {MAX_TEMPLATE_CHARS} are accepted.",
            fix="Use the template the model was published with; chat templates are a few kilobytes.",
            kind="limit")
    env = environment()
    with _ENV_LOCK:
        if source in _CACHE:
            _CACHE.move_to_end(source)
            return _CACHE[source]
    if template_kind(source) == "go":
        raise ChatTemplateError(
            "The template is an Ollama (Go text/template) template, not a Jinja chat template.",
            fix="Ollama applies its own template: send the messages to Ollama's /api/chat and let it render them.",
            kind="format")
    try:
        compiled = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"The chat template does not compile: {exc.message} (line {exc.lineno}).",
                                fix="Check the template text; it must be the Jinja template from the model's "
                                    "tokenizer_config.json or chat_template.jinja.",
                                kind="syntax") from None
    except (jinja2.TemplateError, RecursionError, MemoryError, ValueError, OverflowError) as exc:
        raise ChatTemplateError(f"The chat template does not compile: {type(exc).__name__}: {exc}.",
                                fix="Check the template text.", kind="syntax") from None
    with _ENV_LOCK:
        _CACHE[source] = compiled
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


class _Watchdog:
    """Interrupts the calling thread after ``timeout`` seconds by raising _RenderTimeout in it."""

    def __init__(self, timeout: float | None):
        self.timeout = timeout
        self.fired = False
        self._tid = threading.get_ident()
        self._timer = None

    def _fire(self):
        self.fired = True
        try:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._tid), ctypes.py_object(_RenderTimeout))
        except (AttributeError, OSError):  # not CPython: the output and value bounds still apply
            pass

    def __enter__(self):
        if self.timeout:
            self._timer = threading.Timer(self.timeout, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc):
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
            if self.fired:
                # the asynchronous exception may still be pending: let it surface here, inside the guard
                for _spin in range(1000):
                    pass
        return False


def plain_data(value, depth=0):
    """Plain JSON-like Python data (dict/list/str/int/float/bool/None) for the template."""
    if depth > 64:
        raise ChatTemplateError("The data passed to the chat template is nested too deeply.",
                                fix="Pass plain messages (role, content) and tools.", kind="input")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v, depth + 1) for v in value]
    raise ChatTemplateError(f"The data passed to the chat template holds a {type(value).__name__}.",
                            fix="Pass only strings, numbers, booleans, lists and mappings.", kind="input")


def render_template(source: str, variables: dict, timeout: float | None = None, max_output: int | None = None) -> str:
    """Render ``source`` with ``variables`` in the sandbox, within the time and size bounds.

    ``timeout`` (seconds) defaults to ``DEFAULT_TIMEOUT``, ``max_output`` (characters) to ``MAX_OUTPUT_CHARS``.
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    max_output = MAX_OUTPUT_CHARS if max_output is None else max_output
    compiled = compile_template(source)
    data = plain_data(variables)
    out: list = []
    size = 0
    previous = getattr(_STATE, "value_limit", None)
    # legitimate values stay within a few times what the template was given
    _STATE.value_limit = max(MAX_VALUE_CHARS, 2 * _weight(data, 2 ** 62, {}) + 1024 * 1024)
    try:
        with _Watchdog(timeout):
            gen = compiled.generate(**data)
            try:
                for chunk in gen:
                    size += len(chunk)
                    if size > max_output:
                        _limit(f"its output exceeded {max_output} characters")
                    out.append(chunk)
            finally:
                gen.close()
    except _RenderTimeout:
        _limit(f"rendering took longer than {timeout} seconds")
    except ChatTemplateError:
        raise
    except jinja2.sandbox.SecurityError as exc:
        raise ChatTemplateError(f"The chat template tried an operation the sandbox forbids: {str(exc).rstrip('.')}.",
                                fix="Use the template the model was published with; templates may not reach "
                                    "Python internals or modify data.", kind="unsafe") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"The chat template does not compile: {exc.message}.", kind="syntax") from None
    except jinja2.UndefinedError as exc:
        raise ChatTemplateError(f"The chat template failed: {str(exc.message).rstrip('.')}.",
                                fix="The template needs a value that was not given: add the message field it "
                                    "reads, or pass the variable (e.g. bos_token) to the render.",
                                kind="error") from None
    except jinja2.TemplateError as exc:
        text = str(exc.message if getattr(exc, "message", None) is not None else exc)
        if not getattr(exc, "venom_refusal", False):   # e.g. an unknown filter in a branch only some messages reach
            raise ChatTemplateError(f"The chat template failed: {text.rstrip('.')}.",
                                    fix="Use the template the model was published with; it calls a filter, test or "
                                        "operation that chat templates do not have.", kind="error") from None
        raise ChatTemplateError(f"The model's chat template rejected the conversation: {text}",
                                fix="Adapt the messages to the model (venom.models.adapt_messages) or follow "
                                    "the template's rule quoted above.",
                                kind="rejected", template_message=text) from None
    except RecursionError:
        _limit("it recursed too deeply")
    except MemoryError:
        _limit("it ran out of memory")
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError,
            ArithmeticError) as exc:
        raise ChatTemplateError(f"The chat template failed: {type(exc).__name__}: {exc}.",
                                fix="Check that the messages have the shape the template expects "
                                    "(role and content strings; tool calls as in the OpenAI API).",
                                kind="error") from None
    finally:
        if previous is None:
            del _STATE.value_limit
        else:
            _STATE.value_limit = previous
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Static analysis of a template (what it references), used by detection and the filters.
# ---------------------------------------------------------------------------------------------

def template_references(source: str) -> dict:
    """Names, attributes/keys and string constants the template uses (from its syntax tree)."""
    require_jinja2()
    compile_template(source)  # size, kind and syntax checks
    tree = environment().parse(source)
    names, attrs, consts = set(), set(), set()
    for node in tree.find_all((jinja2.nodes.Name, jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Const)):
        if isinstance(node, jinja2.nodes.Name):
            names.add(node.name)
        elif isinstance(node, jinja2.nodes.Getattr):
            attrs.add(node.attr)
        elif isinstance(node, jinja2.nodes.Getitem):
            if isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, str):
                attrs.add(node.arg.value)
        elif isinstance(node.value, str) and len(node.value) <= 64:
            consts.add(node.value)
    return {"names": names, "attrs": attrs, "consts": consts}


def _touches_content(node) -> bool:
    for sub in [node] + list(node.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem))):
        if isinstance(sub, jinja2.nodes.Getattr) and sub.attr == "content":
            return True
        if isinstance(sub, jinja2.nodes.Getitem) and isinstance(sub.arg, jinja2.nodes.Const) \
                and sub.arg.value == "content":
            return True
    return False


def content_format(source: str) -> str:
    """``openai`` when the template loops over a message's content parts, else ``string`` (as vLLM decides)."""
    require_jinja2()
    compile_template(source)
    tree = environment().parse(source)
    for loop in tree.find_all(jinja2.nodes.For):
        if _touches_content(loop.iter):
            return "openai"
    return "string"
