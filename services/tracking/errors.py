"""Why a read or a decision was refused, free of HTTP: the API turns each into its status code."""

from __future__ import annotations

from typing import Any


class NotFound(LookupError):
    """No such record in the caller's LA (another LA's record is not found either): 404."""


class Conflict(Exception):
    """The record is not in a state that allows the request (decided already, merged since): 409."""


class Unprocessable(ValueError):
    """The request does not make sense for this record: 422. ``detail`` is the response's detail."""

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail
