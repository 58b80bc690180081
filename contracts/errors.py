"""The one error type that contracts raises for bad input.

Every decode and parse function in this package turns whatever went wrong
(malformed JSON, invalid UTF-8, a wrong type, a missing key, nesting too deep,
a number out of range) into :class:`ContractError`, so callers need exactly one
``except`` clause and can map it to a single HTTP status (400) or DLQ reason.
"""

from __future__ import annotations

import re
from typing import ClassVar

import msgspec

__all__ = ["ContractError"]

# msgspec appends the location of a validation error as " - at `$.a.b[0]`".
_AT_PATH = re.compile(r" - at `(\$[^`]*)`$")


class ContractError(ValueError):
    """Input does not satisfy a contract.

    Attributes:
        path: JSON path of the offending value, e.g. ``"$.payload.chat.uuid"``;
            ``"$"`` when the problem is the document as a whole (or unknown).
        detail: what is wrong, in words, without the path.
        retriable: always ``False``: the same bytes will fail the same way, so
            consumers dead-letter instead of retrying.
    """

    retriable: ClassVar[bool] = False

    def __init__(self, detail: str, path: str = "$") -> None:
        super().__init__(detail, path)
        self.detail = detail
        self.path = path

    def __str__(self) -> str:
        return f"{self.detail} (at {self.path})"

    @classmethod
    def from_exception(cls, exc: BaseException, prefix: str = "$") -> ContractError:
        """Translate a decoding failure into a ContractError.

        ``prefix`` is the JSON path of the value that was being decoded, for
        when a nested value (a ``msgspec.Raw``) was decoded on its own; it is
        joined with any path msgspec reports.
        """
        if isinstance(exc, ContractError):
            return cls(exc.detail, join_path(prefix, exc.path))
        if isinstance(exc, msgspec.MsgspecError):
            message = str(exc)
            match = _AT_PATH.search(message)
            if match is None:
                return cls(message, prefix)
            return cls(message[: match.start()], join_path(prefix, match.group(1)))
        if isinstance(exc, UnicodeDecodeError):
            return cls(f"invalid UTF-8 at byte {exc.start}", prefix)
        if isinstance(exc, RecursionError):
            return cls("JSON nested too deeply", prefix)
        return cls(f"{type(exc).__name__}: {exc}", prefix)


def join_path(prefix: str, path: str) -> str:
    """Join a JSON path prefix (``$.payload``) and a relative path (``$.chat``)."""
    if prefix == "$":
        return path
    return prefix + path[1:]
