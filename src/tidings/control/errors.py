"""What the control functions raise, whichever surface called them (admin API, CLI).

::

    ControlError            code, message, field (a JSON path or None)
     ├── NotFound           an event type, version, block or profile that does not exist (404)
     ├── Conflict           a duplicate name, an event type with queued events (409)
     ├── Invalid            input that does not fit: a ctx schema, a template, a version
     │                      that fails validation; ``issues`` lists what was found (422)
     └── Unreachable        an execution instance that did not answer as it should (502)

Nothing is written when one of these is raised (but an unreachable instance's last outcome).
"""

from __future__ import annotations

from typing import Any


class ControlError(Exception):
    """A control operation refused; ``code`` is stable, ``message`` is for people."""

    status = 400

    def __init__(self, code: str, message: str, *, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class NotFound(ControlError):
    """The thing named does not exist."""

    status = 404


class Conflict(ControlError):
    """The operation clashes with what exists (a name taken, events still queued)."""

    status = 409


class Invalid(ControlError):
    """The input does not fit; ``issues`` holds validation findings when there are some."""

    status = 422

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        issues: list[Any] | None = None,
    ):
        super().__init__(code, message, field=field)
        self.issues = issues or []


class Unreachable(ControlError):
    """A remote execution instance did not answer as it should (502); what it said, or why
    it could not be reached, is in the message."""

    status = 502
