#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ollama server TEST DOUBLE: a stand-in for the real ``ollama serve``, for tests only.

No Ollama binary can be installed where venom.models is tested, so this single file (Python 3.11
standard library only) plays the server. It is NOT Ollama and runs no model: it keeps a real
on-disk store and speaks Ollama's HTTP API as upstream does (Ollama 0.33: server/routes.go,
server/images.go, server/download.go, types/model/name.go, manifest/):

* command line: ``<exe> serve`` (``OLLAMA_HOST``, ``OLLAMA_MODELS``, ``OLLAMA_KEEP_ALIVE``,
  ``OLLAMA_NOPRUNE``), ``<exe> --version`` / ``-v``;
* routes ``GET|HEAD /``, ``GET|HEAD /api/version``, ``POST /api/pull`` (NDJSON stream or
  ``stream: false``), ``GET|HEAD /api/tags``, ``POST /api/show``, ``DELETE /api/delete``,
  ``GET /api/ps``, ``POST /api/generate`` and ``POST /api/chat`` (load / unload with
  ``keep_alive``; a prompt gets a fixed test-double answer), ``POST /api/copy``,
  ``HEAD /api/blobs/<digest>``; other upstream routes answer 501; a wrong method 405;
* the store ``$OLLAMA_MODELS/manifests/<host>/<namespace>/<model>/<tag>`` and
  ``blobs/sha256-<hex>``, filled from an OCI distribution registry named by the model name, with
  true sha256 digests, resumable ``-partial`` downloads (HTTP Range) and upstream's pruning.

Known differences from the real server are listed in README.md beside this file.
"""
from __future__ import annotations

import datetime
import glob
import hashlib
import http.client
import json
import math
import os
import queue
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("OLLAMA_TEST_DOUBLE_VERSION", "0.33.0")

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"
MISSING_PART = "!MISSING!"

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"

NUM_DOWNLOAD_PARTS = 16
MIN_PART_SIZE = 100 * 1000 * 1000
MAX_PART_SIZE = 1000 * 1000 * 1000
MAX_RETRIES = 6
STALL_TIMEOUT = 30.0
PROGRESS_INTERVAL = 0.06
LAYER_PRUNE_GRACE = 3600.0
FOREVER = datetime.timedelta(days=106751)  # Go's time.Duration(math.MaxInt64), about 292 years

INVALID_MODEL_NAME = "invalid model name"


def log(level: str, msg: str, **fields) -> None:
    extra = "".join(f" {k}={json.dumps(v) if isinstance(v, str) and (' ' in v or not v) else v}" for k, v in fields.items())
    now = datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")
    sys.stderr.write(f"time={now} level={level} source=ollama_test_double msg={json.dumps(msg)}{extra}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# Go-compatible formatting helpers
# --------------------------------------------------------------------------------------------

def go_time(ts: float | datetime.datetime) -> str:
    """time.Time as Go's encoding/json writes it (RFC 3339 with trimmed nanoseconds, local zone)."""
    dt = ts if isinstance(ts, datetime.datetime) else datetime.datetime.fromtimestamp(ts).astimezone()
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}".rstrip("0")
    if frac:
        base += "." + frac
    off = dt.utcoffset() or datetime.timedelta(0)
    if not off:
        return base + "Z"
    total = int(off.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{base}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def go_float(v: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64): shortest representation, Go's exponent rules."""
    if math.isinf(v) or math.isnan(v):
        return {True: "+Inf", False: "-Inf"}[v > 0] if math.isinf(v) else "NaN"
    if v == 0:
        return "0"
    r = repr(float(v))
    mant, _sep, exp = r.partition("e")
    sign = "-" if mant.startswith("-") else ""
    mant = mant.lstrip("-")
    intpart, _sep, frac = mant.partition(".")
    digits = (intpart + frac).lstrip("0")
    point = len(intpart) + (int(exp) if exp else 0)
    if intpart.strip("0") == "":
        # 0.000123 -> digits start after leading zeros of frac
        lead = len(frac) - len(frac.lstrip("0"))
        point = -lead + (int(exp) if exp else 0)
    digits = digits.rstrip("0") or "0"
    e10 = point - 1
    if e10 < -4 or e10 >= 6:  # shortest %g switches to an exponent at 1e+06
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def float32_value(raw: float) -> float:
    """The shortest decimal that reads back as the same float32 (as Go prints a float32)."""
    packed = struct.pack("<f", raw)
    for prec in range(1, 10):
        cand = float(f"{raw:.{prec}g}")
        if struct.pack("<f", cand) == packed:
            return cand
    return raw


def go_sharp_v(v) -> str:
    """fmt's %#v for the JSON-decoded values a params layer holds."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (int, float)):
        return go_float(float(v))
    if v is None:
        return "<nil>"
    return json.dumps(v)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")


def go_parse_duration(s: str) -> float:
    """time.ParseDuration, in seconds; raises ValueError with Go's message."""
    orig = s
    if s in ("0", "+0", "-0"):
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    neg = s[0] == "-"
    if s[0] in "+-":
        s = s[1:]
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_RE.match(s, pos)
        if not m or m.group(1) in ("", "."):
            num = re.match(r"[0-9.]*", s[pos:]).group(0)
            if num and num != "." and pos + len(num) == len(s):
                raise ValueError(f'time: missing unit in duration "{orig}"')
            if num and num != ".":
                unit = re.match(r"[^0-9.]*", s[pos + len(num):]).group(0)
                raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
            raise ValueError(f'time: invalid duration "{orig}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return -total if neg else total


# --------------------------------------------------------------------------------------------
# Model names (types/model/name.go)
# --------------------------------------------------------------------------------------------

class Name:
    __slots__ = ("host", "namespace", "model", "tag", "scheme")

    def __init__(self, host="", namespace="", model="", tag="", scheme=""):
        self.host, self.namespace, self.model, self.tag, self.scheme = host, namespace, model, tag, scheme

    @classmethod
    def parse_bare(cls, s: str) -> "Name":
        n = cls()

        def cut_promised(text, sep):
            i = text.rfind(sep)
            if i < 0:
                return text, "", False
            return text[:i] or MISSING_PART, text[i + len(sep):] or MISSING_PART, True

        if s.rfind(":") > s.rfind("/"):
            s, n.tag, _found = cut_promised(s, ":")
        s, n.model, promised = cut_promised(s, "/")
        if not promised:
            n.model = s
            return n
        s, n.namespace, promised = cut_promised(s, "/")
        if not promised:
            n.namespace = s
            return n
        scheme, sep, host = s.partition("://")
        if sep:
            n.scheme = scheme
        else:
            host = scheme
        n.host = host
        return n

    @classmethod
    def parse(cls, s: str) -> "Name":
        n = cls.parse_bare(s)
        n.host = n.host or DEFAULT_HOST
        n.namespace = n.namespace or DEFAULT_NAMESPACE
        n.tag = n.tag or DEFAULT_TAG
        n.scheme = n.scheme or DEFAULT_SCHEME
        return n

    @classmethod
    def from_filepath(cls, rel: str) -> "Name":
        parts = rel.split(os.sep)
        if len(parts) != 4:
            return cls()
        n = cls(*parts)
        return n if n.is_valid() else cls()

    def is_valid(self) -> bool:
        return all(_valid_part(k, p) for k, p in enumerate((self.host, self.namespace, self.model, self.tag)))

    def filepath(self) -> str:
        return os.path.join(self.host, self.namespace, self.model, self.tag)

    def shortest(self) -> str:
        out = ""
        if self.host.lower() != DEFAULT_HOST:
            out = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            out = f"{self.namespace}/"
        return f"{out}{self.model}:{self.tag}"

    def __str__(self) -> str:
        out = ""
        if self.host:
            out += self.host + "/"
        if self.namespace:
            out += self.namespace + "/"
        out += self.model
        if self.tag:
            out += ":" + self.tag
        return out

    def key(self) -> tuple:
        return (self.host, self.namespace, self.model, self.tag)

    def fold_key(self) -> tuple:
        return tuple(p.lower() for p in self.key())

    def copy(self) -> "Name":
        return Name(self.host, self.namespace, self.model, self.tag, self.scheme)


_KIND_HOST, _KIND_NAMESPACE, _KIND_MODEL, _KIND_TAG = range(4)


def _valid_part(kind: int, s: str) -> bool:
    limit = 350 if kind == _KIND_HOST else 80
    if not 1 <= len(s) <= limit:
        return False
    for i, ch in enumerate(s):
        alnum = ch.isascii() and (ch.isalnum() or ch == "_")
        if i == 0:
            if not alnum:
                return False
            continue
        if ch in "_-":
            continue
        if ch == ".":
            if kind == _KIND_NAMESPACE:
                return False
            continue
        if ch == ":":
            if kind != _KIND_HOST:
                return False
            continue
        if not alnum:
            return False
    return True


class RefError(Exception):
    """A model reference that cannot be parsed (internal/modelref and model.Unqualified)."""

    def __init__(self, kind: str, msg: str):
        super().__init__(msg)
        self.kind = kind  # "required", "conflict" or "unqualified"


def parse_model_ref(raw: str) -> Name:
    """parseNormalizePullModelRef / parseAndValidateModelRef for local (non-cloud) names."""
    raw = raw.strip()
    if not raw:
        raise RefError("required", "model is required")
    base = raw
    idx = raw.rfind(":")
    if idx >= 0:
        suffix = raw[idx + 1:].strip().lower()
        if suffix in ("local", "cloud"):
            inner = raw[:idx]
            j = inner.rfind(":")
            if j >= 0 and inner[j + 1:].strip().lower() in ("local", "cloud"):
                raise RefError("conflict", f'use either :local or :cloud, not both: "{raw}"')
            if suffix == "cloud":
                raise RefError("unqualified", "cloud models are not available from the Ollama test double")
            base = inner
    n = Name.parse(base)
    if not n.is_valid():
        raise RefError("unqualified", f"unqualified name: {n}")
    return n


# --------------------------------------------------------------------------------------------
# GGUF reader (fs/ggml/gguf.go)
# --------------------------------------------------------------------------------------------

class GGUFError(Exception):
    pass


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
# ggml tensor types: (block size in elements, bytes per block, name)
_GGML_TYPES = {
    0: (1, 4, "F32"), 1: (1, 2, "F16"), 2: (32, 18, "Q4_0"), 3: (32, 20, "Q4_1"), 6: (32, 22, "Q5_0"),
    7: (32, 24, "Q5_1"), 8: (32, 34, "Q8_0"), 9: (32, 36, "Q8_1"), 10: (256, 84, "Q2_K"), 11: (256, 110, "Q3_K"),
    12: (256, 144, "Q4_K"), 13: (256, 176, "Q5_K"), 14: (256, 210, "Q6_K"), 15: (256, 292, "Q8_K"),
    24: (1, 1, "I8"), 25: (1, 2, "I16"), 26: (1, 4, "I32"), 27: (1, 8, "I64"), 28: (1, 8, "F64"), 30: (1, 2, "BF16"),
}
FILE_TYPES = ["F32", "F16", "Q4_0", "Q4_1", "", "", "", "Q8_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M",
              "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ2_XXS", "IQ2_XS", "Q2_K_S", "IQ3_XS",
              "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ3_M", "IQ2_S", "IQ2_M", "IQ4_XS", "IQ1_M", "BF16", "", "",
              "", "TQ1_0", "TQ2_0", "MXFP4_MOE", "NVFP4", "Q1_0"]


def file_type_name(v) -> str:
    if isinstance(v, int) and 0 <= v < len(FILE_TYPES) and FILE_TYPES[v]:
        return FILE_TYPES[v]
    return "unknown"


class GGUF:
    """The key/values and tensor infos of a GGUF file, read as upstream's decoder does."""

    def __init__(self, path: str):
        self.kv: dict = {}
        self.tensors: list = []
        with open(path, "rb") as f:
            self._f = f
            magic = f.read(4)
            if magic != b"GGUF":
                raise GGUFError("unsupported model format")
            self.version = self._u32()
            if self.version == 1:
                n_tensors, n_kv = self._u32(), self._u32()
            elif self.version in (2, 3):
                n_tensors, n_kv = self._u64(), self._u64()
            else:
                raise GGUFError(f"unsupported GGUF version {self.version}")
            for _i in range(n_kv):
                key = self._str()
                self.kv[key] = self._value(self._u32())
            params = 0
            for _i in range(n_tensors):
                name = self._str()
                dims = self._u32()
                if dims > 4:
                    raise GGUFError(f"tensor {name!r} dimensions {dims} exceeds maximum 4")
                shape = [self._u64() for _d in range(dims)]
                kind, offset = self._u32(), self._u64()
                elements = math.prod(shape) if shape else 1
                params += elements
                self.tensors.append({"name": name, "kind": kind, "offset": offset, "shape": shape, "elements": elements})
            self.kv["general.parameter_count"] = params
            alignment = self.kv.get("general.alignment", 32) or 0
            if not alignment:
                raise GGUFError("invalid GGUF alignment: 0")
            here = f.tell()
            data_start = here + (-here % alignment)
            size = os.fstat(f.fileno()).st_size
            for t in self.tensors:
                block = _GGML_TYPES.get(t["kind"])
                if block is None:
                    continue
                nbytes = t["elements"] // block[0] * block[1]
                if data_start + t["offset"] + nbytes > size:
                    raise GGUFError(f"tensor {t['name']!r} offset+size ({data_start + t['offset'] + nbytes}) exceeds file size ({size})")
        del self._f

    def _read(self, n: int) -> bytes:
        b = self._f.read(n)
        if len(b) != n:
            raise GGUFError("unexpected EOF")
        return b

    def _u32(self) -> int:
        return struct.unpack("<I", self._read(4))[0]

    def _u64(self) -> int:
        return struct.unpack("<Q", self._read(8))[0]

    def _str(self) -> str:
        n = self._u32() if self.version == 1 else self._u64()
        if n > 1 << 30:
            raise GGUFError("string too long")
        return self._read(n).decode("utf-8", errors="replace")

    def _value(self, t: int):
        if t in _GGUF_SCALARS:
            fmt = _GGUF_SCALARS[t]
            v = struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]
            return float32_value(v) if t == 6 else v
        if t == 8:
            return self._str()
        if t == 9:
            et = self._u32()
            n = self._u32() if self.version == 1 else self._u64()
            if n > 1 << 28:
                raise GGUFError("array too long")
            return [self._value(et) for _i in range(n)]
        raise GGUFError(f"invalid type: {t}")

    def arch_value(self, key: str):
        """KeyValue(key) as fs/gguf resolves it: bare keys are prefixed with the architecture."""
        if not key.startswith(("general.", "tokenizer.")):
            key = f"{self.kv.get('general.architecture', '')}.{key}"
        return self.kv.get(key)

    def file_type(self) -> str:
        return file_type_name(self.kv.get("general.file_type"))


# --------------------------------------------------------------------------------------------
# Templates and capabilities (server/images.go, template/template.go)
# --------------------------------------------------------------------------------------------

_ACTION_RE = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\'(?:[^\'\\]|\\.)*\'')
_FIELD_RE = re.compile(r"(?<![A-Za-z0-9_])[.$]?\.([A-Za-z_][A-Za-z0-9_]*)")
_CHAINED_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")


def template_vars(tmpl: str) -> list:
    """Template.Vars(): the lower-cased field and variable identifiers of a Go template."""
    names = set()
    for action in _ACTION_RE.findall(tmpl):
        if action.strip().startswith("/*"):
            continue
        code = _STRING_RE.sub(" ", action)
        for token in re.findall(r"\$?[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\$[A-Za-z0-9_]*", code):
            if token.startswith("$"):
                head, _sep, rest = token.partition(".")
                names.add(head.lower())
                token = "." + rest if rest else ""
            elif not token.startswith("."):
                continue
            names.update(m.lower() for m in _CHAINED_RE.findall(token))
    return sorted(names)


def infer_thinking_tags(tmpl: str) -> bool:
    return "<think>" in tmpl and "</think>" in tmpl and ".Thinking" in tmpl


def chat_template_caps(chat: str) -> list:
    caps = []
    if not chat:
        return caps
    if "tools" in chat or "tool_call" in chat:
        caps.append("tools")
    if ("<think>" in chat and "</think>" in chat) or (
            ("content.split('</think>')" in chat or 'content.split("</think>")' in chat)
            and "reasoning_content" not in chat and "<SPECIAL_12>" not in chat):
        caps.append("thinking")
    return caps


def go_template_caps(tmpl: str) -> list:
    v = template_vars(tmpl)
    caps = []
    if "tools" in v:
        caps.append("tools")
    if "suffix" in v:
        caps.append("insert")
    if infer_thinking_tags(tmpl):
        caps.append("thinking")
    return caps


def _append(caps: list, *values) -> list:
    for c in values:
        if c not in caps:
            caps.append(c)
    return caps


# --------------------------------------------------------------------------------------------
# The store (manifest/, server/images.go)
# --------------------------------------------------------------------------------------------

_DIGEST_RE = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")


class InvalidDigest(ValueError):
    pass


class Store:
    def __init__(self, root: str):
        self.root = root
        self.manifests_dir = os.path.join(root, "manifests")
        self.blobs_dir = os.path.join(root, "blobs")
        self.lock = threading.RLock()
        os.makedirs(self.manifests_dir, exist_ok=True)
        os.makedirs(self.blobs_dir, exist_ok=True)

    def blob_path(self, digest: str) -> str:
        if digest and not _DIGEST_RE.match(digest):
            raise InvalidDigest("invalid digest format")
        os.makedirs(self.blobs_dir, exist_ok=True)
        return os.path.join(self.blobs_dir, digest.replace(":", "-"))

    def manifest_path(self, n: Name) -> str:
        return os.path.join(self.manifests_dir, n.filepath())

    def read_manifest(self, n: Name) -> dict:
        """ParseNamedManifest: raises FileNotFoundError when there is none."""
        if not n.is_valid():
            raise FileNotFoundError(str(n))
        p = self.manifest_path(n)
        with open(p, "rb") as f:
            data = f.read()
            st = os.fstat(f.fileno())
        doc = json.loads(data)
        return {"name": n, "path": p, "data": doc, "digest": hashlib.sha256(data).hexdigest(), "mtime": st.st_mtime,
                "layers": doc.get("layers") or [], "config": doc.get("config") or {}}

    def manifests(self) -> dict:
        out = {}
        for p in sorted(glob.glob(os.path.join(glob.escape(self.manifests_dir), "*", "*", "*", "*"))):
            if os.path.isdir(p):
                continue
            n = Name.from_filepath(os.path.relpath(p, self.manifests_dir))
            if not n.is_valid():
                log("WARN", "bad manifest name", path=p)
                continue
            try:
                out[n.key()] = self.read_manifest(n)
            except (OSError, ValueError) as exc:
                log("WARN", "bad manifest", name=str(n), error=str(exc))
        return out

    def existing_name(self, n: Name) -> Name:
        """getExistingName: take each part's spelling from existing manifests (case-insensitive)."""
        n = n.copy()
        for other in self.manifests().values():
            e = other["name"]
            if e.host.lower() == n.host.lower():
                n.host = e.host
            if e.namespace.lower() == n.namespace.lower():
                n.namespace = e.namespace
            if e.model.lower() == n.model.lower():
                n.model = e.model
            if e.tag.lower() == n.tag.lower():
                n.tag = e.tag
        return n

    def write_manifest(self, n: Name, data: bytes) -> None:
        p = self.manifest_path(n)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = f"{p}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)

    def prune_directory(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            for entry in os.listdir(path):
                self.prune_directory(os.path.join(path, entry))
            if not os.listdir(path) and path != self.manifests_dir:
                os.rmdir(path)

    def delete_unused(self, digests: set) -> None:
        for m in self.manifests().values():
            for layer in m["layers"] + [m["config"]]:
                digests.discard(layer.get("digest"))
        for d in digests:
            try:
                os.remove(self.blob_path(d))
            except (OSError, InvalidDigest) as exc:
                log("INFO", f"couldn't remove file with digest '{d}': {exc}")

    def remove_model(self, m: dict) -> None:
        """Manifest.Remove + RemoveLayers: blobs go only when no other manifest uses them."""
        os.remove(m["path"])
        self.prune_directory(self.manifests_dir)
        in_use = set()
        for other in self.manifests().values():
            for layer in other["layers"] + [other["config"]]:
                if layer.get("digest"):
                    in_use.add(layer["digest"])
        for layer in m["layers"] + [m["config"]]:
            d = layer.get("digest")
            if d and d not in in_use:
                try:
                    os.remove(self.blob_path(d))
                except FileNotFoundError:
                    pass

    def fix_blobs(self) -> None:
        for dirpath, _dirs, files in os.walk(self.blobs_dir):
            for f in files:
                if ":" in f:
                    os.rename(os.path.join(dirpath, f), os.path.join(dirpath, f.replace(":", "-")))

    def prune_layers(self) -> None:
        """PruneLayers at start: unreferenced blobs and invalid files older than an hour go."""
        candidates = set()
        now = time.time()
        for entry in os.scandir(self.blobs_dir):
            if entry.is_dir():
                continue
            if now - entry.stat().st_mtime < LAYER_PRUNE_GRACE:
                continue
            name = entry.name.replace("-", ":")
            if not _DIGEST_RE.match(name):
                try:
                    os.remove(entry.path)  # e.g. partial downloads older than the grace period
                except OSError as exc:
                    log("ERROR", "couldn't remove blob", blob=entry.name, error=str(exc))
                continue
            candidates.add(name)
        log("INFO", f"total blobs: {len(candidates)}")
        self.delete_unused(candidates)
        log("INFO", f"total unused blobs removed: {len(candidates)}")

    # ---- model views ------------------------------------------------------------------------

    def load_model(self, n: Name) -> dict:
        """GetModel: config, template, system, params, license, messages, model and projector paths."""
        m = self.read_manifest(n)
        info = {"manifest": m, "config": {}, "template": None, "system": "", "options": None, "license": [],
                "messages": [], "model_path": "", "parent_model": "", "projectors": [], "adapters": [], "gguf": None,
                "gguf_error": None}
        cfg_digest = m["config"].get("digest")
        if cfg_digest:
            with open(self.blob_path(cfg_digest), "rb") as f:
                info["config"] = json.load(f)
        for layer in m["layers"]:
            path = self.blob_path(layer["digest"])
            mt = layer.get("mediaType", "")
            if mt == MEDIA_MODEL:
                info["model_path"] = path
                info["parent_model"] = layer.get("from", "")
                fmt = info["config"].get("model_format", "")
                if fmt in ("", "gguf"):
                    try:
                        info["gguf"] = GGUF(path)
                    except (OSError, GGUFError) as exc:
                        info["gguf_error"] = str(exc)
                        log("ERROR", "couldn't open model file", error=str(exc))
            elif mt == MEDIA_PROJECTOR:
                info["projectors"].append(path)
            elif mt == "application/vnd.ollama.image.adapter":
                info["adapters"].append(path)
            elif mt in ("application/vnd.ollama.image.prompt", "application/vnd.ollama.image.template"):
                with open(path, encoding="utf-8") as f:
                    info["template"] = f.read()
            elif mt == "application/vnd.ollama.image.system":
                with open(path, encoding="utf-8") as f:
                    info["system"] = f.read()
            elif mt == "application/vnd.ollama.image.params":
                with open(path, encoding="utf-8") as f:
                    info["options"] = json.load(f)
            elif mt == "application/vnd.ollama.image.messages":
                with open(path, encoding="utf-8") as f:
                    info["messages"] = json.load(f)
            elif mt == "application/vnd.ollama.image.license":
                with open(path, encoding="utf-8") as f:
                    info["license"].append(f.read())
        self._select_template(info)
        return info

    @staticmethod
    def _select_template(info: dict) -> None:
        cfg = info["config"]
        g = info["gguf"]
        chat = g.kv.get("tokenizer.chat_template", "") if g else ""
        chat = chat if isinstance(chat, str) else ""
        has_go = info["template"] is not None
        go_tmpl = info["template"] if has_go else "{{ .Prompt }}"
        chat_caps, go_caps = chat_template_caps(chat), go_template_caps(go_tmpl)
        prefer_chat = False
        if has_go and chat and not cfg.get("renderer") and not cfg.get("parser"):
            if len(chat_caps) > len(go_caps):
                prefer_chat = True
        uses_go = has_go and not prefer_chat
        rendered = bool(cfg.get("renderer") or cfg.get("parser") or uses_go)
        info.update(chat_template=chat, go_template=go_tmpl, has_go=has_go, uses_go=uses_go, rendered=rendered)

    @staticmethod
    def capabilities(info: dict) -> list:
        cfg = info["config"]
        caps = []
        _append(caps, *(cfg.get("capabilities") or []))
        g = info["gguf"]
        if info["model_path"] and cfg.get("model_format", "") in ("", "gguf") and g is not None:
            if not info["rendered"]:
                _append(caps, *chat_template_caps(info["chat_template"]))
            if g.arch_value("pooling_type") is not None:
                _append(caps, "embedding")
            else:
                _append(caps, "completion")
            if g.arch_value("vision.block_count") is not None:
                _append(caps, "vision")
            if g.arch_value("audio.block_count") is not None:
                _append(caps, "audio")
        if info["projectors"]:
            _append(caps, "vision")
        if not info["has_go"] or info["uses_go"]:
            _append(caps, *go_template_caps(info["go_template"]))
        if cfg.get("model_family") in ("gptoss", "gpt-oss"):
            _append(caps, "thinking")
        return caps

    @staticmethod
    def details(info: dict, *, listing: bool = False) -> dict:
        cfg = info["config"]
        d = {"parent_model": "" if listing else info["parent_model"], "format": cfg.get("model_format", ""),
             "family": cfg.get("model_family", ""), "families": cfg.get("model_families"),
             "parameter_size": cfg.get("model_type", ""), "quantization_level": cfg.get("file_type", "")}
        g = info["gguf"]
        if g is not None and d["quantization_level"] in ("", "unknown") and g.file_type() != "unknown":
            d["quantization_level"] = g.file_type()
        if listing:
            ctx = cfg.get("context_length") or (g.arch_value("context_length") if g else 0) or 0
            emb = cfg.get("embedding_length") or (g.arch_value("embedding_length") if g else 0) or 0
            if ctx:
                d["context_length"] = int(ctx)
            if emb:
                d["embedding_length"] = int(emb)
        return d


# --------------------------------------------------------------------------------------------
# Registry client and blob downloads (server/images.go, server/download.go)
# --------------------------------------------------------------------------------------------

class PullError(Exception):
    pass


class Canceled(Exception):
    def __init__(self):
        super().__init__("context canceled")


class NotExist(Exception):
    def __init__(self):
        super().__init__("file does not exist")


class Stalled(Exception):
    pass


USER_AGENT = f"ollama/{VERSION} (amd64 linux) Python/{sys.version.split()[0]} (Ollama test double)"


def _describe_net_error(method: str, url: str, exc: BaseException) -> str:
    u = urllib.parse.urlsplit(url)
    hostport = u.netloc if u.port else f"{u.hostname}:{443 if u.scheme == 'https' else 80}"
    if isinstance(exc, ConnectionRefusedError):
        detail = f"dial tcp {hostport}: connect: connection refused"
    elif isinstance(exc, socket.gaierror):
        detail = f"dial tcp: lookup {u.hostname}: no such host"
    elif isinstance(exc, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(exc):
        detail = "http: server gave HTTP response to HTTPS client"
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        detail = f"dial tcp {hostport}: i/o timeout"
    else:
        detail = str(exc) or type(exc).__name__
    return f'{method[0] + method[1:].lower()} "{url}": {detail}'


def http_open(method: str, url: str, headers: dict | None = None, *, redirects: str = "follow",
              timeout: float = STALL_TIMEOUT):
    """One HTTP request; returns (response, connection, final url). ``redirects``: follow|same-host."""
    orig_host = urllib.parse.urlsplit(url).hostname
    for _hop in range(11):
        u = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=timeout)
        path = u.path + (f"?{u.query}" if u.query else "")
        hdrs = {"User-Agent": USER_AGENT}
        hdrs.update(headers or {})
        try:
            conn.request(method, path or "/", headers=hdrs)
            resp = conn.getresponse()
        except Exception as exc:
            conn.close()
            raise PullError(_describe_net_error(method, url, exc)) from exc
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            target = urllib.parse.urljoin(url, resp.getheader("Location"))
            if redirects == "same-host" and urllib.parse.urlsplit(target).hostname != orig_host:
                return resp, conn, url
            resp.read()
            conn.close()
            url = target
            continue
        return resp, conn, url
    raise PullError(f'{method[0] + method[1:].lower()} "{url}": stopped after 10 redirects')


def registry_request(method: str, url: str, headers: dict | None = None, *, redirects: str = "follow"):
    """makeRequestWithRetry: 404 -> NotExist, >= 400 -> "<code>: <body>"."""
    resp, conn, final = http_open(method, url, headers, redirects=redirects)
    if resp.status == 404:
        resp.read()
        conn.close()
        raise NotExist()
    if resp.status == 401:
        resp.read()
        conn.close()
        raise PullError("unauthorized: access denied")
    if resp.status >= 400:
        body = resp.read().decode("utf-8", errors="replace")
        conn.close()
        raise PullError(f"{resp.status}: {body}")
    return resp, conn, final


def registry_base(n: Name, insecure: bool) -> str:
    scheme = "http" if insecure else n.scheme
    return f"{scheme}://{n.host}"


class Part:
    def __init__(self, n: int, offset: int, size: int, completed: int = 0):
        self.n, self.offset, self.size, self.completed = n, offset, size, completed

    def to_json(self) -> bytes:
        return (json.dumps({"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}) + "\n").encode()


class BlobDownload:
    """One blob download shared by every pull that needs it (blobDownloadManager)."""

    def __init__(self, manager: "Downloads", path: str, digest: str):
        self.manager, self.name, self.digest = manager, path, digest
        self.total = 0
        self._completed = 0
        self._lock = threading.Lock()
        self.parts: list = []
        self.done = threading.Event()
        self.cancel = threading.Event()
        self.err: BaseException | None = None
        self.refs = 0

    @property
    def completed(self) -> int:
        with self._lock:
            return self._completed

    def add(self, n: int) -> None:
        with self._lock:
            self._completed += n

    def write_part(self, part: Part) -> None:
        with open(f"{self.name}-partial-{part.n}", "wb") as f:
            f.write(part.to_json())

    def prepare(self, url: str) -> None:
        for p in sorted(glob.glob(glob.escape(self.name) + "-partial-*")):
            with open(p, encoding="utf-8") as f:
                j = json.load(f)
            part = Part(j["N"], j["Offset"], j["Size"], j["Completed"])
            self.total += part.size
            self.add(part.completed)
            self.parts.append(part)
        if not self.parts:
            resp, conn, _final = registry_request("HEAD", url)
            resp.read()
            conn.close()
            self.total = int(resp.getheader("Content-Length") or 0)
            size = min(max(self.total // NUM_DOWNLOAD_PARTS, MIN_PART_SIZE), MAX_PART_SIZE)
            offset = 0
            while offset < self.total:
                size = min(size, self.total - offset)
                part = Part(len(self.parts), offset, size)
                self.write_part(part)
                self.parts.append(part)
                offset += size
        if self.parts:
            log("INFO", f"downloading {self.digest[7:19]} in {len(self.parts)} {self.parts[0].size} B part(s)")

    def run(self, url: str) -> None:
        try:
            self._run(url)
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            self.err = exc
        finally:
            self.manager.forget(self.digest, self)
            self.done.set()

    def _direct_url(self, url: str) -> str:
        deadline = time.monotonic() + 30
        n = 0
        while True:
            if self.cancel.is_set():
                raise Canceled()
            try:
                resp, conn, final = registry_request("GET", url, redirects="same-host")
            except (PullError, NotExist) as exc:
                log("WARN", "failed to get direct URL; backing off and retrying", err=str(exc))
                n += 1
                delay = min(n * n * 0.01, 10.0)
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                continue
            try:
                if resp.status not in (200, 307):
                    raise PullError(f"unexpected status code {resp.status}")
                loc = resp.getheader("Location")
                if not loc:
                    # upstream calls resp.Location() also on a 200 answer (ollama/ollama#9737)
                    raise PullError("http: no Location header in response")
                return urllib.parse.urljoin(final, loc)
            finally:
                conn.close()

    def _run(self, url: str) -> None:
        partial = self.name + "-partial"
        fd = os.open(partial, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.ftruncate(fd, self.total)
            direct = self._direct_url(url)
            pending = [p for p in self.parts if p.completed < p.size]
            errors: list = []
            threads = [threading.Thread(target=self._part_worker, args=(fd, direct, p, errors), daemon=True) for p in pending]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        finally:
            os.close(fd)
        for p in self.parts:
            os.remove(f"{partial}-{p.n}")
        os.rename(partial, self.name)

    def _part_worker(self, fd: int, url: str, part: Part, errors: list) -> None:
        tries = 0
        last: BaseException | None = None
        while tries < MAX_RETRIES:
            try:
                self._chunk(fd, url, part)
                return
            except Canceled as exc:
                errors.append(exc)
                self.cancel.set()
                return
            except Stalled:
                log("INFO", f"{self.digest[7:19]} part {part.n} stalled; retrying. If this persists, press ctrl-c to exit, "
                    "then 'ollama pull' to find a faster connection.")
                continue
            except OSError as exc:
                if exc.errno == 28:  # ENOSPC
                    errors.append(exc)
                    self.cancel.set()
                    return
                last = exc
            except (PullError, http.client.HTTPException, ValueError) as exc:
                last = exc
            sleep = 2 ** tries
            log("INFO", f"{self.digest[7:19]} part {part.n} attempt {tries} failed: {last}, retrying in {sleep}s")
            if self.cancel.wait(sleep):
                errors.append(Canceled())
                return
            tries += 1
        errors.append(PullError(f"max retries exceeded: {last}"))
        self.cancel.set()

    def _chunk(self, fd: int, url: str, part: Part) -> None:
        start, stop = part.offset + part.completed, part.offset + part.size
        resp, conn, _final = http_open("GET", url, {"Range": f"bytes={start}-{stop - 1}"}, timeout=STALL_TIMEOUT)
        n = 0
        err: BaseException | None = None
        try:
            if resp.status >= 400:
                raise PullError(f"unexpected status code {resp.status}")
            want = part.size - part.completed
            pos = start
            while n < want:
                if self.cancel.is_set():
                    err = Canceled()
                    break
                try:
                    buf = resp.read1(min(65536, want - n))
                except (socket.timeout, TimeoutError):
                    err = Stalled()
                    break
                except (http.client.IncompleteRead, ConnectionError) as exc:
                    err = PullError(f"unexpected EOF ({exc.__class__.__name__})")
                    break
                if not buf:
                    err = PullError("unexpected EOF")
                    break
                os.pwrite(fd, buf, pos)
                pos += len(buf)
                n += len(buf)
                self.add(len(buf))
        finally:
            conn.close()
        part.completed += n
        self.write_part(part)
        if err is not None:
            raise err

    def wait(self, emit, cancel: threading.Event) -> None:
        try:
            while not self.done.wait(PROGRESS_INTERVAL):
                if cancel.is_set():
                    raise Canceled()
                emit({"status": f"pulling {self.digest[7:19]}", "digest": self.digest, "total": self.total,
                      "completed": self.completed})
        finally:
            self.manager.release(self)
        if self.err is not None:
            raise self.err
        # the test double always reports each layer's end once (upstream: only every 60 ms)
        emit({"status": f"pulling {self.digest[7:19]}", "digest": self.digest, "total": self.total, "completed": self.total})


class Downloads:
    def __init__(self):
        self.lock = threading.Lock()
        self.active: dict = {}

    def get(self, store: Store, n: Name, digest: str, insecure: bool) -> BlobDownload:
        with self.lock:
            d = self.active.get(digest)
            if d is not None:
                d.refs += 1
                return d
            d = BlobDownload(self, store.blob_path(digest), digest)
            d.refs = 1
            self.active[digest] = d
        url = f"{registry_base(n, insecure)}/v2/{n.namespace}/{n.model}/blobs/{digest}"
        try:
            d.prepare(url)
        except BaseException as exc:
            self.forget(digest, d)
            d.err = exc
            d.done.set()  # a pull that joined meanwhile gets the same error
            raise
        threading.Thread(target=d.run, args=(url,), daemon=True, name=f"download-{digest[7:19]}").start()
        return d

    def forget(self, digest: str, d: BlobDownload) -> None:
        with self.lock:
            if self.active.get(digest) is d:
                del self.active[digest]

    def release(self, d: BlobDownload) -> None:
        with self.lock:
            d.refs -= 1
            if d.refs <= 0:
                d.cancel.set()

    def cancel_all(self) -> list:
        with self.lock:
            items = list(self.active.values())
        for d in items:
            d.cancel.set()
        return items


def verify_blob(store: Store, digest: str) -> None:
    h = hashlib.sha256()
    with open(store.blob_path(digest), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    got = "sha256:" + h.hexdigest()
    if got != digest:
        raise PullError(f"digest mismatch, file must be downloaded again: want {digest}, got {got}")


def pull_model(server: "Server", n: Name, insecure: bool, emit, cancel: threading.Event) -> None:
    """PullModel, step by step as upstream streams it."""
    store = server.store
    delete_map = set()
    try:
        existing = store.read_manifest(n)
        delete_map.update(layer.get("digest") for layer in existing["layers"])
        if existing["config"].get("digest"):
            delete_map.add(existing["config"]["digest"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log("WARN", "pulling model with bad existing manifest", name=str(n), error=str(exc))

    if n.scheme == "http" and not insecure:
        raise PullError("insecure protocol http")

    emit({"status": "pulling manifest"})
    url = f"{registry_base(n, insecure)}/v2/{n.namespace}/{n.model}/manifests/{n.tag}"
    try:
        resp, conn, _final = registry_request("GET", url, {"Accept": MEDIA_MANIFEST})
        try:
            manifest_data = resp.read()
        finally:
            conn.close()
        mf = json.loads(manifest_data)
        if not isinstance(mf, dict):
            raise ValueError("json: cannot unmarshal into Go value of type manifest.Manifest")
    except (PullError, NotExist, ValueError, OSError, http.client.HTTPException) as exc:
        raise PullError(f"pull model manifest: {exc}") from exc

    layers = list(mf.get("layers") or [])
    if (mf.get("config") or {}).get("digest"):
        layers.append(mf["config"])

    skip_verify: dict = {}
    for layer in layers:
        digest = layer.get("digest", "")
        if not digest:
            raise PullError(f"{n.namespace}/{n.model}: digest is empty")
        try:
            path = store.blob_path(digest)
        except InvalidDigest as exc:
            raise PullError(str(exc)) from exc
        if cancel.is_set():
            raise Canceled()
        if os.path.exists(path):
            size = os.path.getsize(path)
            emit({"status": f"pulling {digest[7:19]}", "digest": digest, "total": size, "completed": size})
            hit = True
        else:
            d = server.downloads.get(store, n, digest, insecure)
            d.wait(emit, cancel)
            hit = False
        skip_verify[digest] = skip_verify.get(digest, True) and hit
        delete_map.discard(digest)

    emit({"status": "verifying sha256 digest"})
    for layer in layers:
        if skip_verify[layer["digest"]]:
            continue
        try:
            verify_blob(store, layer["digest"])
        except PullError:
            try:
                os.remove(store.blob_path(layer["digest"]))
            except OSError as exc:
                log("INFO", f"couldn't remove file with digest mismatch: {exc}")
            raise

    emit({"status": "writing manifest"})
    with store.lock:
        store.write_manifest(n, manifest_data)
        if not server.no_prune and delete_map:
            emit({"status": "removing unused layers"})
            store.delete_unused(delete_map)
    emit({"status": "success"})


# --------------------------------------------------------------------------------------------
# The HTTP server (server/routes.go)
# --------------------------------------------------------------------------------------------

ROUTES = {
    "/": {"GET", "HEAD"}, "/api/version": {"GET", "HEAD"}, "/api/status": {"GET"}, "/api/pull": {"POST"},
    "/api/push": {"POST"}, "/api/tags": {"GET", "HEAD"}, "/api/show": {"POST"}, "/api/delete": {"DELETE"},
    "/api/me": {"POST"}, "/api/signout": {"POST"}, "/api/create": {"POST"}, "/api/copy": {"POST"},
    "/api/ps": {"GET"}, "/api/generate": {"POST"}, "/api/chat": {"POST"}, "/api/embed": {"POST"},
    "/api/embeddings": {"POST"}, "/v1/chat/completions": {"POST"}, "/v1/completions": {"POST"},
    "/v1/embeddings": {"POST"}, "/v1/models": {"GET"}, "/v1/responses": {"POST"}, "/v1/messages": {"POST"},
}
PREFIX_ROUTES = {"/api/blobs/": {"POST", "HEAD"}, "/v1/models/": {"GET"}, "/api/user/keys/": {"DELETE"}}
_SENTINEL = object()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, store: Store, keep_alive: float, no_prune: bool):
        self.store = store
        self.downloads = Downloads()
        self.default_keep_alive = keep_alive
        self.no_prune = no_prune
        self.loaded: dict = {}
        self.loaded_lock = threading.Lock()
        self.stopping = threading.Event()
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, Handler)


class BadRequest(Exception):
    def __init__(self, status: int, msg: str):
        super().__init__(msg)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Ollama-test-double"
    sys_version = ""
    server: Server

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        log("INFO", "request", client=self.client_address[0], line=format % args)

    # ---- plumbing ---------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        if body or status != 200 or ctype.startswith("text/"):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())

    def _error(self, status: int, msg: str) -> None:
        self._json(status, {"error": msg})

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _bind(self, fields: dict, struct_name: str) -> dict:
        """gin's ShouldBindJSON: EOF -> missing request body; Go json errors otherwise."""
        raw = self._read_body()
        if not raw.strip():
            raise BadRequest(400, "missing request body")
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            if exc.pos >= len(raw.rstrip()):
                raise BadRequest(400, "unexpected EOF") from exc
            ch = raw.decode("utf-8", errors="replace")[exc.pos]
            raise BadRequest(400, f"invalid character {ch!r} looking for beginning of value") from exc
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            kind = {list: "array", str: "string", bool: "bool"}.get(type(doc), "number")
            raise BadRequest(400, f"json: cannot unmarshal {kind} into Go value of type api.{struct_name}")
        for key, want in fields.items():
            if key in doc and doc[key] is not None and not isinstance(doc[key], want):
                v = doc[key]
                kind = {list: "array", dict: "object", str: "string", bool: "bool"}.get(type(v), "number")
                gotype = {str: "string", bool: "bool", dict: "map[string]interface {}"}.get(want, "string")
                raise BadRequest(400, f"json: cannot unmarshal {kind} into Go struct field {struct_name}.{key} of type {gotype}")
        return doc

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _route(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        methods = ROUTES.get(path)
        if methods is None:
            for prefix, m in PREFIX_ROUTES.items():
                if path.startswith(prefix) and len(path) > len(prefix):
                    methods = m
                    break
        if methods is None:
            self._send(404, b"404 page not found", "text/plain")
            return
        if self.command not in methods:
            self._send(405, b"405 method not allowed", "text/plain")
            return
        handler = {
            "/": self.h_root, "/api/version": self.h_version, "/api/pull": self.h_pull, "/api/tags": self.h_tags,
            "/api/show": self.h_show, "/api/delete": self.h_delete, "/api/ps": self.h_ps,
            "/api/generate": self.h_generate, "/api/chat": self.h_chat, "/api/copy": self.h_copy,
        }.get(path)
        if handler is None and path.startswith("/api/blobs/") and self.command == "HEAD":
            handler = self.h_head_blob
        if handler is None:
            self._read_body()
            self._error(501, f"{self.command} {path} is not implemented by the Ollama test double")
            return
        try:
            handler()
        except BadRequest as exc:
            self._error(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _route

    # ---- routes -----------------------------------------------------------------------------

    def h_root(self) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def h_version(self) -> None:
        self._json(200, {"version": VERSION})

    def h_pull(self) -> None:
        req = self._bind({"model": str, "name": str, "insecure": bool, "stream": bool}, "PullRequest")
        try:
            n = parse_model_ref(req.get("model") or req.get("name") or "")
        except RefError as exc:
            self._error(400, str(exc) if exc.kind == "conflict" else INVALID_MODEL_NAME)
            return
        store = self.server.store
        n = store.existing_name(n)
        insecure = bool(req.get("insecure"))
        cancel = threading.Event()
        q: queue.Queue = queue.Queue(maxsize=1)

        def emit(msg: dict) -> None:
            while True:
                if cancel.is_set():
                    raise Canceled()
                try:
                    q.put(msg, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def work() -> None:
            try:
                pull_model(self.server, n, insecure, emit, cancel)
            except Canceled:
                pass
            except (PullError, NotExist, OSError, ValueError) as exc:
                try:
                    emit({"error": str(exc)})
                except Canceled:
                    pass
            finally:
                while not cancel.is_set():
                    try:
                        q.put(_SENTINEL, timeout=0.2)
                        break
                    except queue.Full:
                        continue

        threading.Thread(target=work, daemon=True, name=f"pull-{n}").start()
        stream = req.get("stream")
        try:
            if stream is False:
                latest: dict = {}
                while (msg := q.get()) is not _SENTINEL:
                    if "error" in msg:
                        self._error(500, msg["error"])
                        cancel.set()
                        return
                    latest = msg
                self._json(200, latest)
                return
            started = False
            while (msg := q.get()) is not _SENTINEL:
                if "error" in msg and not started:
                    self._error(500, msg["error"])
                    cancel.set()
                    return
                if not started:
                    self._start_stream()
                    started = True
                self._chunk(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
                if "error" in msg:
                    break
            if not started:
                self._start_stream()
            self._end_stream()
        except OSError:
            self.close_connection = True
        finally:
            cancel.set()

    def h_tags(self) -> None:
        store = self.server.store
        models = []
        for key, m in store.manifests().items():
            n = Name(*key)
            try:
                info = store.load_model(n)
            except (OSError, ValueError) as exc:
                log("WARN", "failed to load model for listing", model=str(n), error=str(exc))
                continue
            entry = {"name": n.shortest(), "model": n.shortest(), "modified_at": go_time(m["mtime"]),
                     "size": sum(int(layer.get("size") or 0) for layer in m["layers"] + [m["config"]]),
                     "digest": m["digest"], "details": store.details(info, listing=True)}
            caps = store.capabilities(info)
            if caps:
                entry["capabilities"] = caps
            models.append((int(m["mtime"]), entry))
        models.sort(key=lambda t: -t[0])
        self._json(200, {"models": [e for _mtime, e in models]})

    def _resolve(self, raw: str, not_found_name=None) -> tuple:
        n = parse_model_ref(raw)
        n = self.server.store.existing_name(n)
        return n, (not_found_name if not_found_name is not None else n.shortest())

    def h_show(self) -> None:
        req = self._bind({"model": str, "name": str, "system": str, "verbose": bool}, "ShowRequest")
        raw = req.get("model") or req.get("name") or ""
        if not raw:
            self._error(400, "model is required")
            return
        try:
            n, shown = self._resolve(raw)
        except RefError as exc:
            self._error(400, str(exc) if exc.kind == "conflict" else INVALID_MODEL_NAME)
            return
        store = self.server.store
        try:
            info = store.load_model(n)
        except FileNotFoundError:
            self._error(404, f"model '{shown}' not found")
            return
        if info["gguf_error"]:
            self._error(500, info["gguf_error"])
            return
        verbose = bool(req.get("verbose"))
        system = req.get("system") or info["system"]
        resp: dict = {}
        if info["license"]:
            resp["license"] = "\n".join(info["license"])
        modelfile = self._modelfile(n, info, system)
        resp["modelfile"] = modelfile
        params = []
        for k, v in sorted((info["options"] or {}).items()):
            for item in (v if isinstance(v, list) else [v]):
                params.append(f"{k:<30} {go_sharp_v(item)}")
        if params:
            resp["parameters"] = "\n".join(params)
        template = info["go_template"]
        if info["chat_template"] and not info["rendered"]:
            template = info["chat_template"]
        if template:
            resp["template"] = template
        if system:
            resp["system"] = system
        resp["details"] = store.details(info)
        if info["messages"]:
            resp["messages"] = [{"role": m.get("role"), "content": m.get("content")} for m in info["messages"]]
        model_info: dict = {}
        g = info["gguf"]
        if g is not None:
            for k, v in g.kv.items():
                if k in ("general.name", "tokenizer.chat_template"):
                    continue
                model_info[k] = [] if (isinstance(v, list) and len(v) > 5 and not verbose) else v
            resp["tensors"] = [{"name": t["name"], "type": _GGML_TYPES.get(t["kind"], (0, 0, "unknown"))[2],
                                "shape": t["shape"]} for t in g.tensors]
        resp["model_info"] = model_info
        caps = store.capabilities(info)
        if caps:
            resp["capabilities"] = caps
        resp["modified_at"] = go_time(info["manifest"]["mtime"])
        self._json(200, resp)

    @staticmethod
    def _modelfile(n: Name, info: dict, system: str) -> str:
        def quote(s: str) -> str:
            if "\n" in s or s.startswith(" ") or s.endswith(" "):
                return f'"""{s}"""' if '"' in s else f'"{s}"'
            return s

        lines = ['# Modelfile generated by "ollama show"', "# To build a new Modelfile based on this, replace FROM with:",
                 f"# FROM {n.shortest()}", ""]
        cmds = [f"FROM {info['model_path']}"] if info["model_path"] else []
        cmds += [f"ADAPTER {quote(a)}" for a in info["adapters"]]
        cmds += [f"FROM {p}" for p in info["projectors"]]
        cmds.append(f"TEMPLATE {quote(info['go_template'])}")
        if system:
            cmds.append(f"SYSTEM {quote(system)}")
        for k, v in sorted((info["options"] or {}).items()):
            for item in (v if isinstance(v, list) else [v]):
                text = item if isinstance(item, str) else go_sharp_v(item).strip('"')
                cmds.append(f"PARAMETER {k} {quote(str(text))}")
        cmds += [f"LICENSE {quote(lic)}" for lic in info["license"]]
        cmds += [f"MESSAGE {m.get('role')} {quote(m.get('content', ''))}" for m in info["messages"]]
        return "\n".join(lines) + "\n" + "".join(c + "\n" for c in cmds)

    def h_delete(self) -> None:
        req = self._bind({"model": str, "name": str}, "DeleteRequest")
        raw = req.get("model") or req.get("name") or ""
        try:
            n = parse_model_ref(raw)
        except RefError as exc:
            if exc.kind == "unqualified":
                self._error(400, f"name {json.dumps(raw)} is invalid")
            else:
                self._error(400, str(exc))
            return
        store = self.server.store
        with store.lock:
            n = store.existing_name(n)
            try:
                m = store.read_manifest(n)
            except FileNotFoundError:
                self._error(404, f"model '{raw}' not found")
                return
            except (OSError, ValueError) as exc:
                self._error(500, str(exc))
                return
            store.remove_model(m)
        with self.server.loaded_lock:
            self.server.loaded.pop(n.fold_key(), None)
        self._send(200, b"")

    def h_copy(self) -> None:
        req = self._bind({"source": str, "destination": str}, "CopyRequest")
        store = self.server.store
        src, dst = Name.parse(req.get("source") or ""), Name.parse(req.get("destination") or "")
        if not src.is_valid():
            self._error(400, f"source {json.dumps(req.get('source') or '')} is invalid")
            return
        if not dst.is_valid():
            self._error(400, f"destination {json.dumps(req.get('destination') or '')} is invalid")
            return
        with store.lock:
            src, dst = store.existing_name(src), store.existing_name(dst)
            try:
                with open(store.manifest_path(src), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                self._error(404, f"model {json.dumps(req.get('source'))} not found")
                return
            store.write_manifest(dst, data)
        self._send(200, b"")

    def h_head_blob(self) -> None:
        digest = urllib.parse.urlsplit(self.path).path[len("/api/blobs/"):]
        try:
            path = self.server.store.blob_path(digest)
        except InvalidDigest as exc:
            self._error(400, str(exc))
            return
        if not os.path.exists(path):
            self._error(404, f'blob "{digest}" not found')
            return
        self._send(200, b"")

    def h_ps(self) -> None:
        now = datetime.datetime.now().astimezone()
        out = []
        with self.server.loaded_lock:
            for key, entry in list(self.server.loaded.items()):
                if entry["expires_at"] <= now:
                    del self.server.loaded[key]
                    continue
                out.append(entry)
        out.sort(key=lambda e: e["expires_at"], reverse=True)
        self._json(200, {"models": [{
            "name": e["name"], "model": e["name"], "size": e["size"], "digest": e["digest"], "details": e["details"],
            "expires_at": go_time(e["expires_at"]), "size_vram": 0, "context_length": e["context_length"],
        } for e in out]})

    def _keep_alive(self, req: dict) -> float | None:
        v = req.get("keep_alive", _SENTINEL)
        if v is _SENTINEL or v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise BadRequest(400, f"Unsupported type: '{type(v).__name__}'")
        if isinstance(v, str):
            try:
                secs = go_parse_duration(v)
            except ValueError as exc:
                raise BadRequest(400, str(exc)) from exc
        else:
            secs = float(v)
        return -1.0 if secs < 0 else secs

    def _load_or_unload(self, req: dict, prompt_empty: bool, chat: bool) -> None:
        raw = req.get("model") or ""
        try:
            n = parse_model_ref(raw)
        except RefError as exc:
            if exc.kind == "unqualified":
                self._error(400, INVALID_MODEL_NAME)
            elif exc.kind == "conflict":
                self._error(400, str(exc))
            else:
                self._error(404 if not chat else 400, f"model '{raw}' not found" if not chat else "model is required")
            return
        keep = self._keep_alive(req)
        store = self.server.store
        n = store.existing_name(n)
        try:
            info = store.load_model(n)
        except FileNotFoundError:
            self._error(404, f"model '{raw}' not found")
            return
        now = datetime.datetime.now().astimezone()
        done = {"model": raw, "created_at": go_time(datetime.datetime.now(datetime.timezone.utc))}
        if chat:
            done["message"] = {"role": "assistant", "content": ""}
        else:
            done["response"] = ""
        if prompt_empty and keep == 0:
            with self.server.loaded_lock:
                self.server.loaded.pop(n.fold_key(), None)
            self._json(200, dict(done, done=True, done_reason="unload"))
            return
        caps = store.capabilities(info)
        if "completion" not in caps:
            self._error(400, f'"{raw}" does not support {"chat" if chat else "generate"}')
            return
        if info["gguf_error"]:
            self._error(500, info["gguf_error"])
            return
        if keep is None:
            keep = self.server.default_keep_alive
        expires = now + (FOREVER if keep < 0 else datetime.timedelta(seconds=keep))
        g = info["gguf"]
        model_ctx = int(g.arch_value("context_length") or 0) if g else 0
        opts = dict(info["options"] or {})
        opts.update(req.get("options") or {})
        num_ctx = int(opts.get("num_ctx") or 4096)
        ctx_len = min(num_ctx, model_ctx) if model_ctx else num_ctx
        m = info["manifest"]
        with self.server.loaded_lock:
            self.server.loaded[n.fold_key()] = {
                "name": n.shortest(), "digest": m["digest"], "details": store.details(info), "expires_at": expires,
                "size": sum(int(layer.get("size") or 0) for layer in m["layers"] if layer.get("mediaType") == MEDIA_MODEL),
                "context_length": ctx_len,
            }
        if prompt_empty:
            self._json(200, dict(done, done=True, done_reason="load"))
            return
        text = "This is the Ollama test double; it runs no model."
        answer = dict(done)
        if chat:
            answer["message"] = {"role": "assistant", "content": text}
        else:
            answer["response"] = text
        final = dict(done, done=True, done_reason="stop", total_duration=1000, load_duration=0, prompt_eval_count=1,
                     eval_count=1)
        if req.get("stream") is False:
            self._json(200, dict(answer, done=True, done_reason="stop"))
            return
        self._start_stream()
        self._chunk(json.dumps(dict(answer, done=False)).encode() + b"\n")
        self._chunk(json.dumps(final).encode() + b"\n")
        self._end_stream()

    def h_generate(self) -> None:
        req = self._bind({"model": str, "prompt": str, "stream": bool, "options": dict}, "GenerateRequest")
        self._load_or_unload(req, not req.get("prompt"), chat=False)

    def h_chat(self) -> None:
        req = self._bind({"model": str, "stream": bool, "options": dict, "messages": list}, "ChatRequest")
        self._load_or_unload(req, not req.get("messages"), chat=True)


# --------------------------------------------------------------------------------------------
# Command line (cmd/cmd.go, envconfig/config.go)
# --------------------------------------------------------------------------------------------

def env_var(key: str) -> str:
    return os.environ.get(key, "").strip().strip("\"'")


def ollama_host() -> tuple:
    """envconfig.Host(): (scheme, host, port)."""
    s = env_var("OLLAMA_HOST")
    default_port = "11434"
    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport = "http", s
        if s == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport = hostport.split("/", 1)[0]
    m = re.fullmatch(r"\[([^\]]*)\]:([^:]*)|([^:]*):([^:]*)", hostport)
    if m:
        host, port = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
    else:
        host, port = "127.0.0.1", default_port
        bare = hostport.strip("[]")
        if bare:
            host = bare
    try:
        if not 0 <= int(port) <= 65535:
            raise ValueError(port)
    except ValueError:
        log("WARN", "invalid port, using default", port=port, default=default_port)
        port = default_port
    return scheme, host, int(port)


def keep_alive_env() -> float:
    s = env_var("OLLAMA_KEEP_ALIVE")
    secs = 300.0
    if s:
        try:
            secs = go_parse_duration(s)
        except ValueError:
            try:
                secs = float(int(s))
            except ValueError:
                pass
    return -1.0 if secs < 0 else secs


def env_bool(key: str) -> bool:
    s = env_var(key).lower()
    if not s:
        return False
    return s not in ("0", "f", "false")


def models_dir() -> str:
    return env_var("OLLAMA_MODELS") or os.path.join(os.path.expanduser("~"), ".ollama", "models")


def serve() -> int:
    _scheme, host, port = ollama_host()
    root = models_dir()
    store = Store(root)
    store.fix_blobs()
    no_prune = env_bool("OLLAMA_NOPRUNE")
    if not no_prune:
        store.prune_layers()
        store.prune_directory(store.manifests_dir)
    log("INFO", "server config", env=f"OLLAMA_HOST={host}:{port} OLLAMA_MODELS={root} OLLAMA_KEEP_ALIVE={keep_alive_env()}s "
        f"OLLAMA_NOPRUNE={no_prune}")
    try:
        httpd = Server((host, port), store, keep_alive_env(), no_prune)
    except OSError as exc:
        sys.stderr.write(f"Error: listen tcp {host}:{port}: bind: {exc.strerror or exc}\n")
        return 1
    bound = httpd.server_address
    log("INFO", f"Listening on {bound[0]}:{bound[1]} (version {VERSION}, Ollama TEST DOUBLE, no inference)")

    def stop(signum, _frame):
        log("INFO", f"received signal {signum}, shutting down")
        httpd.stopping.set()
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        pending = httpd.downloads.cancel_all()
        deadline = time.monotonic() + 5
        for d in pending:
            d.done.wait(max(0.0, deadline - time.monotonic()))
        httpd.server_close()
    return 0


def version() -> int:
    scheme, host, port = ollama_host()
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    server_version = ""
    try:
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = cls(host, port, timeout=2)
        conn.request("GET", "/api/version")
        resp = conn.getresponse()
        server_version = json.loads(resp.read() or b"{}").get("version", "")
        conn.close()
    except (OSError, ValueError, http.client.HTTPException):
        print("Warning: could not connect to a running Ollama instance")
    if server_version:
        print(f"ollama version is {server_version}")
    if server_version != VERSION:
        print(f"Warning: client version is {VERSION}")
    return 0


USAGE = """Large language model runner (Ollama TEST DOUBLE: serves the API, runs no model)

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start the Ollama test double server

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information
"""


def main(argv: list) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv[0] in ("-v", "--version"):
        return version()
    if argv[0] in ("serve", "start"):
        return serve()
    sys.stderr.write(f"Error: unknown command \"{argv[0]}\" for \"ollama\" (the Ollama test double only has serve and --version)\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
