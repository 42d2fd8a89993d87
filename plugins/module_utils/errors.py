# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors raised by the venom.models library.

Every error carries ``msg`` (what happened) and ``fix`` (what the operator can do about it);
``str(err)`` joins both so that a module can pass it straight to ``fail_json``.
"""
from __future__ import annotations


class VenomError(Exception):
    """Base class of every error the library raises on purpose."""

    def __init__(self, msg: str, fix: str | None = None, **details):
        self.msg = msg
        self.fix = fix
        self.details = details
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.fix:
            return f"{self.msg} Fix: {self.fix}"
        return self.msg

    def to_dict(self) -> dict:
        out = {"error": type(self).__name__, "msg": self.msg}
        if self.fix:
            out["fix"] = self.fix
        if self.details:
            out["details"] = self.details
        return out


class ValidationError(VenomError):
    """Bad input: a name, path, revision or option value that is refused."""


class ManifestError(VenomError):
    """The manifest cannot be read or written safely (corrupt, foreign, wrong schema)."""


class QuotaError(VenomError):
    """The planned download does not fit in the quota or on the disk."""


class LockTimeout(VenomError):
    """An inter-process lock could not be taken in time."""


class NotFoundError(VenomError):
    """A model, revision, file or operation does not exist."""


class ProviderError(VenomError):
    """A provider (Hugging Face Hub, Ollama server, local directory) failed."""


class IntegrityError(VenomError):
    """A file does not match its recorded or published digest."""


class RuntimeControlError(VenomError):
    """A runtime could not be started, stopped, activated or checked."""


class MissingDependencyError(VenomError):
    """A Python package the operation needs is not installed on the target."""

    def __init__(self, package: str, purpose: str, import_error: BaseException | None = None):
        super().__init__(
            f"The Python package '{package}' is required {purpose} but cannot be imported"
            + (f" ({import_error})" if import_error else "") + ".",
            fix=f"Install it for the Python that runs the module, e.g. 'python3 -m pip install {package}'.",
        )
        self.package = package
