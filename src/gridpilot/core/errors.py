"""Domain errors. Each boundary maps these to its own wire form."""

from __future__ import annotations


class DomainError(Exception):
    """A request that cannot be carried out as asked; ``code`` is stable, ``field`` is the input."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(DomainError):
    code = "validation_failed"


class OutOfLimits(DomainError):
    code = "out_of_limits"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class IllegalTransition(DomainError):
    code = "illegal_transition"


class Refused(DomainError):
    """A refusal with a specific ``code`` and an HTTP-like ``status`` of its
    own (401 unknown credential, 403, 409 spent, 422 invalid, 503 not set up)."""

    def __init__(
        self, message: str, *, code: str, field: str | None = None, status: int = 422
    ) -> None:
        super().__init__(message, field=field)
        self.code = code
        self.status = status
