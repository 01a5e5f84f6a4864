"""The OData query options the Dataverse stand-in reads: `$select`, `$filter` (`<property> eq <value>`
terms joined by `and`), `$top`, `Prefer: odata.maxpagesize=N` (at most 5000) and the paging cookie
carried by `$skiptoken` in `@odata.nextLink`.

Error codes and wording follow the Dataverse Web API (Microsoft Learn: "Query data using the Web
API", "Page results"): 0x80060888 for a query it cannot take, "Could not find a property named
'{name}' on type 'Microsoft.Dynamics.CRM.{table}'."; the paging cookie has the form Dataverse uses
(`<cookie pagenumber="2" pagingcookie="..." istracking="False" />`, the last record's key inside).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ...scenario_fields import is_guid
from ..protocol import Reply, json_reply

MAX_PAGE_SIZE = 5000
SUPPORTED_OPTIONS = frozenset({"$select", "$filter", "$top", "$skiptoken"})
QUERY_ERROR = "0x80060888"
_TERM = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s+eq\s+('(?:[^']|'')*'|[^\s']+)\s*")
_AND = re.compile(r"and\s+")
_PAGE_SIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)")
_COOKIE = re.compile(r'pagenumber="(\d+)".*last%3d%22%7b([0-9a-fA-F-]{36})%7d', re.IGNORECASE)


class ODataError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def dataverse_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(status, {"error": {"code": code, "message": message}}, headers)


@dataclass(frozen=True)
class Table:
    entity_set: str
    logical_name: str
    key: str
    columns: tuple[str, ...]

    def unknown(self, name: str) -> ODataError:
        message = (
            f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{self.logical_name}'."
        )
        return ODataError(400, QUERY_ERROR, message)


def check_options(query: Mapping[str, str]) -> None:
    for name in query:
        if name.startswith("$") and name not in SUPPORTED_OPTIONS:
            supported = ", ".join(sorted(SUPPORTED_OPTIONS))
            message = f"The query option '{name}' is not supported by the sandbox's Dataverse ({supported})."
            raise ODataError(400, QUERY_ERROR, message)


def parse_select(raw: str | None, table: Table) -> list[str]:
    """The columns to return: those named (the primary key always comes too), or all."""
    if raw is None:
        return list(table.columns)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if name not in table.columns:
            raise table.unknown(name)
    return names + ([table.key] if table.key not in names else [])


def parse_filter(raw: str | None, table: Table) -> list[tuple[str, object]]:
    """(column, value) pairs that must all hold."""
    if raw is None:
        return []
    text, position, conditions = raw.strip(), 0, []
    while True:
        term = _TERM.match(text, position)
        if term is None:
            raise _unreadable(text, position)
        if term.group(1) not in table.columns:
            raise table.unknown(term.group(1))
        conditions.append((term.group(1), _literal(term.group(2))))
        position = term.end()
        if position >= len(text):
            return conditions
        joined = _AND.match(text, position)
        if joined is None:
            raise _unreadable(text, position)
        position = joined.end()


def _unreadable(text: str, position: int) -> ODataError:
    message = (
        f"The sandbox's $filter takes '<property> eq <value>' terms joined by 'and'; it cannot read "
        f"'{text[position:]}' (position {position} of '{text}')."
    )
    return ODataError(400, QUERY_ERROR, message)


def _literal(token: str) -> object:
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    if token in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[token]
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if is_guid(token):
        return token.lower()
    message = (
        f"'{token}' is not a value the sandbox reads: a number, true, false, null, a GUID or a 'string'."
    )
    raise ODataError(400, QUERY_ERROR, message)


def matches(row: Mapping[str, object], conditions: list[tuple[str, object]]) -> bool:
    for name, wanted in conditions:
        value = row.get(name)
        if isinstance(value, str) and isinstance(wanted, str):
            if value.casefold() != wanted.casefold():  # Dataverse compares text case-insensitively
                return False
        elif isinstance(value, bool) != isinstance(wanted, bool) or value != wanted:
            return False
    return True


def page_size(prefer: str) -> int | None:
    """The `odata.maxpagesize` preference, capped at 5000; None when not asked for."""
    found = _PAGE_SIZE.search(prefer)
    if found is None:
        return None
    size = int(found.group(1))
    if size < 1:
        raise ODataError(400, QUERY_ERROR, "odata.maxpagesize must be a positive number.")
    return min(size, MAX_PAGE_SIZE)


def top(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not re.fullmatch(r"\d+", raw) or int(raw) < 1:
        raise ODataError(400, QUERY_ERROR, f"The value '{raw}' of $top is not a positive whole number.")
    return int(raw)


def paging_cookie(page_number: int, key: str, first: str, last: str) -> str:
    """A `$skiptoken` value of the form Dataverse sends: the next page number, the last record's key."""
    keys = f'last="{{{last.upper()}}}" first="{{{first.upper()}}}"'
    inner = f'<cookie page="{page_number - 1}"><{key} {keys} /></cookie>'
    return f'<cookie pagenumber="{page_number}" pagingcookie="{quote(inner).lower()}" istracking="False" />'


def read_cookie(raw: str | None) -> tuple[int, str | None]:
    """(page number, last key seen) of a `$skiptoken`; (1, None) without one."""
    if raw is None:
        return 1, None
    found = _COOKIE.search(raw) or _COOKIE.search(unquote(raw))
    if found is None:
        raise ODataError(400, QUERY_ERROR, "The $skiptoken is not a paging cookie this Dataverse made.")
    return int(found.group(1)), found.group(2).lower()
