"""Typed Table Storage rows: a frozen dataclass per kind of row, owning its column names.

A field `customer_tenant_id` is the column `CustomerTenantId` (PascalCase of the field name, the
Table Storage convention) unless its metadata names another column. `to_entity` leaves out None
(a missing property, as Table Storage stores it); `from_entity` ignores columns it does not know,
so an older or newer writer's extra columns never break a reader. The ETag travels with the row
but is not a column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

__all__ = ["TableRow", "column_name"]


def column_name(field_name: str) -> str:
    """`customer_tenant_id` -> `CustomerTenantId`."""
    return "".join(part[:1].upper() + part[1:] for part in field_name.split("_"))


@dataclass(frozen=True, kw_only=True)
class TableRow:
    """A row of one table: its keys, its typed columns, and the ETag it was read with."""

    partition_key: str
    row_key: str
    etag: str | None = field(default=None, compare=False, metadata={"column": None})

    CONVERT: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    """Field name -> how a stored value becomes the field's type (an enum, a bool...)."""

    def to_entity(self) -> dict[str, Any]:
        """The entity to write: every column that has a value."""
        entity: dict[str, Any] = {}
        for name, column in _columns(type(self)):
            value = getattr(self, name)
            if value is not None:
                entity[column] = value
        return entity

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> Self:
        """The row as read (an SDK entity, with its ETag in `metadata`, or a plain mapping)."""
        values: dict[str, Any] = {}
        for name, column in _columns(cls):
            value = entity.get(column)
            if value is not None:
                convert = cls.CONVERT.get(name)
                values[name] = convert(value) if convert is not None else value
        metadata = getattr(entity, "metadata", None)
        etag = metadata.get("etag") if isinstance(metadata, Mapping) else None
        return cls(**values, etag=etag)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


_COLUMNS: dict[type[TableRow], tuple[tuple[str, str], ...]] = {}


def _columns(cls: type[TableRow]) -> tuple[tuple[str, str], ...]:
    """(field name, column name) for every stored field of the class, worked out once per class."""
    columns = _COLUMNS.get(cls)
    if columns is None:
        named = (
            (item.name, item.metadata.get("column", column_name(item.name)))
            for item in dataclasses.fields(cls)
        )
        columns = _COLUMNS[cls] = tuple((name, column) for name, column in named if column is not None)
    return columns
