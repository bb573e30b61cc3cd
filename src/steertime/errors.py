"""Errors that tell the user which file, row or field is wrong."""

from __future__ import annotations

from pathlib import Path


class SteertimeError(Exception):
    """Base class for errors meant to be shown to a user as they are."""


class DataError(SteertimeError):
    """Bad input data. Always names the file, and the row or field where known."""

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.row = row
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(": ".join([*where, message]))
