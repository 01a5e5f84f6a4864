"""A Dataverse Web API subset per environment, at the environment's instance URL
(`{sandbox}/dataverse/{envId}/`, as BAP's `linkedEnvironmentMetadata.instanceUrl` gives it):
`GET /api/data/v9.2/{workflows|appmodules|bots|solutions|importjobs|systemusers}` with `$select`,
`$filter`, `$top`, `Prefer: odata.maxpagesize` and `@odata.nextLink` paging, one record by its key
(`importjobs({id})`, `asyncoperations({id})`, ...), `WhoAmI`, and solution delivery: `POST StageSolution`
and `POST ImportSolutionAsync` (`solutions.py`, `solution_import.py`, `delivery_tables.py`).

The token's audience is the instance URL (a token for another environment is refused). The app needs
an application user in the environment, else 403 0x80072560 "The user is not a member of the
organization." (MicrosoftDocs/power-platform#2124). Service protection counts requests per
(principal, environment) in a sliding window, 6,000 per 300 seconds by default, and answers 429 with
Retry-After and 0x80072322 "Number of requests exceeded the limit of 6000 over time window of 300
seconds." (Microsoft Learn, "Service protection API limits"), with its x-ms-ratelimit headers. A 401
has no body and a WWW-Authenticate naming the authority and the resource, as Dataverse's.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from ..faults import Faults
from ..protocol import Refusal, Reply, Request, json_reply
from ..state import CloudState
from ..tokens import TokenIssuer
from . import odata
from .bap import instance_url
from .common import Caller, bearer_caller
from .dataverse_tables import ROWS, TABLES, Row, etag
from .odata import ODataError, dataverse_error
from .owner_changes import patch_record
from .solution_import import settle
from .solutions import ACTIONS, import_async, stage
from .throttle import SlidingWindows
from .world import LiveEnvironment, PowerPlatformWorld, systemuser_id

_NOT_A_MEMBER = ("0x80072560", "The user is not a member of the organization.")
_ODATA_HEADERS = {"OData-Version": "4.0", "Content-Type": "application/json; odata.metadata=minimal"}
_ONE = re.compile(r"^([a-z]+)\(([0-9a-fA-F-]{36})\)$")


class Dataverse:
    def __init__(
        self, state: CloudState, tokens: TokenIssuer, faults: Faults, world: PowerPlatformWorld
    ) -> None:
        self._state, self._tokens, self._faults, self._world = state, tokens, faults, world
        self.limits = SlidingWindows()

    def audiences(self, base_url: str) -> Iterable[str]:
        with self._world.lock:
            urls = [instance_url(base_url, env_id) for env_id in self._world.dataverse_ids()]
        return [audience for url in urls for audience in (url, url.rstrip("/"))]

    def handle(self, request: Request) -> Reply:
        try:
            return self._serve(request)
        except Refusal as refusal:
            return refusal.reply
        except ODataError as error:
            return dataverse_error(error.status, error.code, error.message, dict(_ODATA_HEADERS))

    def _serve(self, request: Request) -> Reply:
        with self._world.lock:
            env = self._world.environment(request.path[1]) if len(request.path) > 1 else None
        if env is None or not env.spec.dataverse:
            return dataverse_error(404, "0x80040217", "No Dataverse environment at this URL.")
        url = instance_url(request.base_url, env.env_id)
        caller = self._authenticate(request, env, url)
        self._state.count("dataverseCalls", caller.tenant_id, request.method)
        fault = self._faults.apply(request, caller.tenant_id, "dataverse", dataverse_error)
        if fault is not None:
            return fault
        with self._world.lock:
            member = caller.app_id in env.app_users
            limits = self._world.tenant(env.tenant_id).spec.limits
        if not member:
            return dataverse_error(403, *_NOT_A_MEMBER)
        rule = (limits.dataverse_requests, float(limits.dataverse_window_seconds))
        wait, remaining = self.limits.take((caller.object_id, env.env_id.lower()), [rule], time.monotonic())
        if wait:
            message = (
                f"Number of requests exceeded the limit of {rule[0]} "
                f"over time window of {int(rule[1])} seconds."
            )
            return dataverse_error(429, "0x80072322", message, {"Retry-After": str(wait)})
        with self._world.lock:
            settle(env, time.monotonic())
        reply = self._route(request, env, caller, url)
        reply.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(remaining)
        return reply

    def _authenticate(self, request: Request, env: LiveEnvironment, url: str) -> Caller:
        """The caller of a token for this environment's URL; 401 with no body otherwise."""
        challenge = (
            f"Bearer authorization_uri={request.base_url}/{env.tenant_id}/oauth2/authorize, resource_id={url}"
        )
        try:
            caller = bearer_caller(self._tokens, request, (url, url.rstrip("/")))
        except Refusal:
            caller = None
        if caller is None or caller.tenant_id != env.tenant_id:
            raise Refusal(Reply(401, b"", {"WWW-Authenticate": challenge}))
        return caller

    def _route(self, request: Request, env: LiveEnvironment, caller: Caller, url: str) -> Reply:
        parts = request.path[2:]
        if (
            len(parts) != 4
            or [part.lower() for part in parts[:2]] != ["api", "data"]
            or not parts[2].startswith("v9.")
        ):
            return dataverse_error(
                404, "0x8006088a", f"Resource not found for the segment '{'/'.join(parts)}'."
            )
        base = f"{url}api/data/{parts[2]}/"
        if request.method == "POST" and parts[3] in ACTIONS:
            if parts[3] == "StageSolution":
                return stage(self._world, env, request, base)
            return import_async(self._world, env, caller.object_id, request, base)
        if request.method == "PATCH":
            return patch_record(self._world, env, request, parts[3])
        if request.method != "GET":
            message = "The sandbox's Dataverse answers GET, and POST to its solution actions."
            return dataverse_error(405, odata.QUERY_ERROR, message)
        return self._read(request, env, caller, parts[3], base)

    def _read(self, request: Request, env: LiveEnvironment, caller: Caller, segment: str, base: str) -> Reply:
        if segment == "WhoAmI":
            return self._who_am_i(env, caller, base)
        one = _ONE.match(segment)
        if one is not None and one.group(1) in TABLES:
            return self._one(request, env, TABLES[one.group(1)], one.group(2).lower(), base)
        table = TABLES.get(segment)
        if table is None:
            return dataverse_error(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")
        return self._query(request, env, table, base)

    def _who_am_i(self, env: LiveEnvironment, caller: Caller, base: str) -> Reply:
        return json_reply(
            200,
            {
                "@odata.context": f"{base}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": systemuser_id(env.env_id, "business-unit"),
                "UserId": systemuser_id(env.env_id, caller.object_id),
                "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_URL, base)),
            },
            dict(_ODATA_HEADERS),
        )

    def _query(self, request: Request, env: LiveEnvironment, table: odata.Table, base: str) -> Reply:
        odata.check_options(request.query)
        select = odata.parse_select(request.query.get("$select"), table)
        conditions = odata.parse_filter(request.query.get("$filter"), table)
        top = odata.top(request.query.get("$top"))
        asked = odata.page_size(request.header("Prefer"))
        page_number, last = odata.read_cookie(request.query.get("$skiptoken"))
        with self._world.lock:
            rows = ROWS[table.entity_set](self._world, env)
        rows = sorted(
            (row for row in rows if odata.matches(row, conditions)), key=lambda row: str(row[table.key])
        )
        if last is not None:
            rows = [row for row in rows if str(row[table.key]) > last]
        size = top if top is not None else asked or odata.MAX_PAGE_SIZE
        page = rows[:size]
        context = f"{base}$metadata#{table.entity_set}"
        body: dict[str, Any] = {
            "@odata.context": context + (f"({','.join(select)})" if "$select" in request.query else ""),
            "value": [_shown(row, select, table.key) for row in page],
        }
        if top is None and len(rows) > size:
            body["@odata.nextLink"] = _next_link(request, base, table, page_number, page)
        headers = dict(_ODATA_HEADERS)
        if asked is not None:
            headers["Preference-Applied"] = f"odata.maxpagesize={asked}"
        return json_reply(200, body, headers)

    def _one(self, request: Request, env: LiveEnvironment, table: odata.Table, key: str, base: str) -> Reply:
        """One record by its key, as `{entity_set}({id})` reads it ($select only)."""
        for name in request.query:
            if name.startswith("$") and name != "$select":
                raise ODataError(400, odata.QUERY_ERROR, f"The query option '{name}' is not supported here.")
        select = odata.parse_select(request.query.get("$select"), table)
        with self._world.lock:
            found = [row for row in ROWS[table.entity_set](self._world, env) if str(row[table.key]) == key]
        if not found:
            message = f"{table.logical_name} With Id = {key} Does Not Exist"
            return dataverse_error(404, "0x80040217", message, dict(_ODATA_HEADERS))
        shape = f"({','.join(select)})" if "$select" in request.query else ""
        body = {
            "@odata.context": f"{base}$metadata#{table.entity_set}{shape}/$entity",
            **_shown(found[0], select, table.key),
        }
        return json_reply(200, body, dict(_ODATA_HEADERS))


def _shown(row: Row, select: list[str], key: str) -> Row:
    return {"@odata.etag": etag(row, key), **{name: row.get(name) for name in select}}


def _next_link(request: Request, base: str, table: odata.Table, page_number: int, page: list[Row]) -> str:
    query = {name: value for name, value in request.query.items() if name != "$skiptoken"}
    first, last = str(page[0][table.key]), str(page[-1][table.key])
    query["$skiptoken"] = odata.paging_cookie(page_number + 1, table.key, first, last)
    return f"{base}{table.entity_set}?{urlencode(query, quote_via=quote, safe='$,()')}"
