"""The API's exception tree; the API server turns each into a Kubernetes `Status`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One invalid field: `field` is a dotted path such as `spec.traffic[0].percent`."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def render(self) -> str:
        return f"{self.message}: {self.field}" if self.field else self.message


class APIError(Exception):
    """Base of every error the API reports to a client."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, kind: str = "", name: str = "",
                 causes: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.causes = causes


class BadRequest(APIError):
    code = 400
    reason = "BadRequest"


class Invalid(APIError):
    """Validation failed; `causes` lists every offending field."""

    code = 422
    reason = "Invalid"

    @classmethod
    def of(cls, kind: str, name: str, errors: list[FieldError]) -> Invalid:
        detail = "; ".join(e.render() for e in errors)
        return cls(f'{kind} "{name}" is invalid: {detail}', kind=kind, name=name, causes=tuple(errors))


class NotFound(APIError):
    code = 404
    reason = "NotFound"


class AlreadyExists(APIError):
    code = 409
    reason = "AlreadyExists"


class Conflict(APIError):
    code = 409
    reason = "Conflict"


class Gone(APIError):
    """A watch asked for a resourceVersion older than the store still remembers."""

    code = 410
    reason = "Expired"


class MethodNotAllowed(APIError):
    code = 405
    reason = "MethodNotAllowed"


class UnsupportedMediaType(APIError):
    code = 415
    reason = "UnsupportedMediaType"


class TooLarge(APIError):
    code = 413
    reason = "RequestEntityTooLarge"


class Forbidden(APIError):
    code = 403
    reason = "Forbidden"


@dataclass
class ErrorList:
    """Collects field errors while walking an object, so all of them are reported at once."""

    errors: list[FieldError] = field(default_factory=list)

    def add(self, path: str, message: str, reason: str = "FieldValueInvalid") -> None:
        self.errors.append(FieldError(path, message, reason))

    def __bool__(self) -> bool:
        return bool(self.errors)
