# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TLS to the remotes the modules talk to (the Hub or a mirror, an Ollama server, an Ollama registry).

Two options, as in Ansible's own modules (``get_url``, ``uri``):

* ``validate_certs`` (default true): check the server's certificate and host name. False turns
  the check off; every https remote contacted so is named in a warning (``warnings()``).
* ``ca_path``: a PEM bundle on the managed host that replaces the default trust store for these
  requests (a private CA, or the CA of a TLS-intercepting proxy).

``Tls.certificate_error`` turns a failed certificate check (deep inside httpx or requests) into a
ProviderError that names the problem and the fix.
"""
from __future__ import annotations

import functools
import re
import ssl
import urllib.parse

from ansible_collections.venom.models.plugins.module_utils.errors import ProviderError, ValidationError

CERT_FIX = ("Set ca_path to your CA bundle (a PEM file on the managed host holding the CA that signed the "
            "server's certificate, or your TLS-intercepting proxy's CA), or validate_certs: false "
            "(not recommended: the connection can then be read and changed by anyone on the path).")


@functools.lru_cache(maxsize=8)
def _context(validate_certs: bool, ca_path: str | None) -> ssl.SSLContext:
    if not validate_certs:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()


class Tls:
    """The TLS settings of one module run, and the https remotes contacted without validation."""

    def __init__(self, validate_certs: bool = True, ca_path: str | None = None):
        if not isinstance(validate_certs, bool):
            raise ValidationError(f"validate_certs must be true or false, not {validate_certs!r}.",
                                  fix="Set validate_certs: true (the default) or false.")
        self.validate_certs = validate_certs
        self.ca_path = ca_path or None
        self._insecure: list = []
        self._checked = False  # the bundle is read before the first request (a task that asks no remote ignores it)

    @classmethod
    def of(cls, obj) -> "Tls":
        """The Tls of a request-like object (``validate_certs``/``ca_path`` attributes, absent: defaults)."""
        tls = getattr(obj, "tls", None)
        if isinstance(tls, Tls):
            return tls
        return cls(getattr(obj, "validate_certs", True), getattr(obj, "ca_path", None))

    def check(self) -> None:
        """Refuse a ``ca_path`` that does not exist or holds no PEM certificate (ValidationError, with the fix)."""
        if self._checked or not (self.ca_path and self.validate_certs):
            return
        try:
            _context(True, self.ca_path)
        except FileNotFoundError:
            raise ValidationError(f"ca_path {self.ca_path} does not exist on the managed host.",
                                  fix="Copy your CA bundle (PEM) to the host first (ansible.builtin.copy) and give "
                                      "its path in ca_path.") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValidationError(f"ca_path {self.ca_path} is not a readable PEM CA bundle ({exc}).",
                                  fix="Give a file of PEM certificates ('-----BEGIN CERTIFICATE-----' blocks), "
                                      "readable by the user the task runs as.") from None
        self._checked = True

    @property
    def default(self) -> bool:
        return self.validate_certs and not self.ca_path

    def ssl_context(self) -> ssl.SSLContext:
        """The SSLContext for httpx-style clients (shared per settings: it is read-only once built)."""
        self.check()
        return _context(self.validate_certs, self.ca_path)

    def requests_verify(self):
        """The ``verify`` argument of ``requests``: True, the bundle's path, or False."""
        self.check()
        if not self.validate_certs:
            return False
        return self.ca_path or True

    def contacting(self, url: str) -> None:
        """Note that ``url`` is about to be asked: an https URL without validation is warned about."""
        parts = urllib.parse.urlsplit(url or "")
        if not self.validate_certs and parts.scheme == "https":
            where = f"https://{parts.netloc}"
            if where not in self._insecure:
                self._insecure.append(where)

    def quiet_requests(self) -> None:
        """Without validation, urllib3 would print an InsecureRequestWarning on stderr per request:
        ``warnings()`` says it once per remote, as an Ansible warning."""
        if not self.validate_certs:
            try:
                import urllib3  # pylint: disable=import-outside-toplevel
            except ImportError:  # pragma: no cover - requests depends on it
                return
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def warnings(self) -> list:
        return [f"validate_certs is false: the TLS certificate of {where} was not checked, so anyone on the path "
                "could read or change what was sent and received (tokens and model files included). Set ca_path "
                "to your CA bundle instead." for where in self._insecure]

    def certificate_error(self, exc: BaseException, where: str, what: str) -> ProviderError | None:
        """A ProviderError naming the certificate problem and the fix, if ``exc`` is one; else None."""
        cause = certificate_cause(exc)
        if cause is None:
            return None
        trust = (f"the CA bundle in ca_path ({self.ca_path})" if self.ca_path
                 else "the host's default trust store")
        fix = CERT_FIX
        if self.ca_path:
            fix = (f"Check that ca_path ({self.ca_path}) holds the CA that signed {where}'s certificate (or your "
                   "TLS-intercepting proxy's CA), or set validate_certs: false (not recommended).")
        return ProviderError(f"{what}: the TLS certificate of {where} could not be verified against {trust} "
                             f"({cause}); a private CA or a TLS-intercepting proxy?", fix=fix)


def certificate_cause(exc: BaseException | None) -> str | None:
    """The reason of a failed certificate check found in ``exc``, its causes or its arguments; else None."""
    seen = set()
    todo = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return str(getattr(cur, "verify_message", None) or cur.reason or cur)
        if isinstance(cur, BaseException):
            text = str(cur)
            if "CERTIFICATE_VERIFY_FAILED" in text:
                tail = text.split("certificate verify failed:", 1)
                return re.split(r"\s*\(_ssl\.c|\)|'|\"", tail[1])[0].strip() if len(tail) == 2 else "certificate verify failed"
            todo.extend([cur.__cause__, cur.__context__])
            todo.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
            reason = getattr(cur, "reason", None)
            if isinstance(reason, BaseException):
                todo.append(reason)
    return None
