"""What the client raises. Every message says what went wrong and, for the server's
refusals, repeats the server's own `detail` (which names the field and the rule)."""

from __future__ import annotations

from typing import Any


class PonderError(Exception):
    """Base class of everything this package raises."""


class PonderValidationError(PonderError, ValueError):
    """A logging call's arguments break a rule the server enforces; nothing was spooled."""


class PonderAPIError(PonderError):
    """The server refused a request with a 4xx status; retrying would not help."""

    def __init__(self, status: int, detail: str, *, method: str, path: str, errors: list[dict[str, Any]] | None = None):
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path
        self.errors = errors or []
        super().__init__(f"{method} {path} -> {status}: {detail}")


class PonderUnavailableError(PonderError):
    """The server could not be reached (or kept failing) until the deadline passed."""


class SpoolLockedError(PonderError):
    """Another live process is logging into the same run's spool directory."""
