"""Reading, as the linked identity, what ARM says about its own Azure access, and the check the
nightly verification runs (`RecognitionCheck`): the subscriptions it sees, its own role assignments
in each, the names of roles the PEC table does not know, and (once per link version) the link's own
record. A passing failure (429, 5xx, the network, an answer that is not ARM's) raises
`RecognitionUnavailable` inside and makes the check answer None: the caller keeps what it knew.
The decision itself is `shared.links.recognition.decide`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core import AsyncPipelineClient
from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import UserAgentPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from shared.links.qualifying_roles import LEAST_PRIVILEGE, pec_role
from shared.links.recognition import Earning, LinkRecord, Recognition, RoleGrant, Subscription, decide
from shared.spine.credentials import CredentialCache
from shared.spine.identifiers import GUID, is_guid
from shared.spine.identity import Identity
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import Settings

__all__ = [
    "CHECKED_AFTER",
    "AuthorizationReader",
    "RecognitionCheck",
    "RecognitionUnavailable",
    "RoleNames",
    "read_link_record",
    "read_recognition",
]

logger = logging.getLogger(__name__)

CHECKED_AFTER = frozenset(
    {OutcomeKind.VERIFIED, OutcomeKind.HEALED, OutcomeKind.RECLAIMED, OutcomeKind.UPDATED}
)
"""The verification outcomes after which the link is in place as ours, and its recognition is read."""
SUBSCRIPTIONS_API = "api-version=2022-12-01"
AUTHORIZATION_API = "api-version=2022-04-01"
_MAX_PAGES = 100
"""A guard against a server that pages for ever."""
_CONCURRENCY = 4
"""Subscriptions read at once for one identity."""
_DEFINITION = re.compile(
    rf"/providers/Microsoft\.Authorization/roleDefinitions/(?P<id>{GUID.pattern})$", re.I
)
_SHOWN_NAME = re.compile(r"[A-Za-z0-9 ()_.,/&+-]{1,128}")
"""A role or subscription name from ARM, kept when it is plainly harmless (its ID stands in otherwise)."""
_SCOPE = re.compile(r"/[\x21-\x7e]{0,1023}")
_PARTNERS = "/providers/Microsoft.ManagementPartner/partners?api-version=2018-02-01"
_PARTNER_NAME = re.compile(r"[\w .,&'()/+-]{1,128}")


class RecognitionUnavailable(Exception):
    """ARM could not answer now (throttled, failing, unreachable, or not making sense): the previous
    recognition stands. The text holds a status or a type name, never a response body."""


class _Refused(Exception):
    """401 or 403: the identity may not read this."""


class _NotFound(Exception):
    """404: the subscription or role definition is gone."""


@dataclass(frozen=True)
class _Assignment:
    role_definition_id: str
    scope: str


class RoleNames:
    """Role names by definition ID: the PEC table's first, then what ARM said, kept for one nightly
    run (custom roles can be renamed; built-in ones are the table's)."""

    def __init__(self, max_entries: int = 1000) -> None:
        self._run: str | None = None
        self._names: dict[str, str] = {}
        self._max = max_entries

    def for_run(self, run_id: str | None) -> RoleNames:
        if run_id != self._run:
            self._run, self._names = run_id, {}
        return self

    def known(self, role_definition_id: str) -> str | None:
        row = pec_role(role_definition_id)
        return row.name if row is not None else self._names.get(role_definition_id)

    def remember(self, role_definition_id: str, name: str) -> None:
        if len(self._names) >= self._max:
            self._names.clear()
        self._names[role_definition_id] = name


class AuthorizationReader:
    """Reads, as one identity in one tenant, what ARM says about its own Azure access.

    The token goes to the configured ARM endpoint only: a next page on another origin is refused.
    """

    def __init__(
        self, client: AsyncPipelineClient[HttpRequest, Any], arm: str, token: str, names: RoleNames
    ) -> None:
        self._client, self._arm, self._names = client, arm.rstrip("/"), names
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def subscriptions(self) -> list[Subscription]:
        """The subscriptions the identity sees that can hold resources (not disabled or deleted)."""
        found = []
        async for item in self._pages(f"{self._arm}/subscriptions?{SUBSCRIPTIONS_API}"):
            subscription_id, state = _text(item.get("subscriptionId")), _text(item.get("state"))
            if is_guid(subscription_id) and state not in ("Disabled", "Deleted"):
                name = _text(item.get("displayName"))
                shown = name if name and _SHOWN_NAME.fullmatch(name) else subscription_id
                found.append(Subscription(subscription_id.lower(), shown))
        return found

    async def assignments(self, subscription: Subscription, object_id: str) -> list[_Assignment]:
        """The identity's own role assignments that apply in the subscription (at, above and below
        it). Raises _Refused when it may not read them; none when the subscription is gone."""
        path = (
            f"/subscriptions/{subscription.subscription_id}/providers/Microsoft.Authorization/roleAssignments"
        )
        assigned_to = quote(f"assignedTo('{object_id}')")
        query = f"{AUTHORIZATION_API}&$filter={assigned_to}"
        found = []
        try:
            async for item in self._pages(f"{self._arm}{path}?{query}"):
                properties = item.get("properties")
                if not isinstance(properties, dict):
                    continue
                match = _DEFINITION.search(_text(properties.get("roleDefinitionId")) or "")
                scope = _text(properties.get("scope"))
                if match is not None and scope is not None and _SCOPE.fullmatch(scope):
                    found.append(_Assignment(match["id"].lower(), scope))
        except _NotFound:
            return []
        return found

    async def role_name(self, subscription: Subscription, role_definition_id: str) -> str:
        """The role's name: the table's, a name read before this run, or ARM's (its ID when ARM
        will not say)."""
        known = self._names.known(role_definition_id)
        if known is not None:
            return known
        path = f"/subscriptions/{subscription.subscription_id}/providers/Microsoft.Authorization"
        try:
            document = await self._get(
                f"{self._arm}{path}/roleDefinitions/{role_definition_id}?{AUTHORIZATION_API}"
            )
        except (_Refused, _NotFound):
            return f"role {role_definition_id}"
        properties = document.get("properties")
        name = _text(properties.get("roleName")) if isinstance(properties, dict) else None
        shown = name if name is not None and _SHOWN_NAME.fullmatch(name) else f"role {role_definition_id}"
        self._names.remember(role_definition_id, shown)
        return shown

    async def _pages(self, url: str) -> AsyncIterator[dict[str, Any]]:
        origin = _origin(url)
        next_url: str | None = url
        for _ in range(_MAX_PAGES):
            if next_url is None:
                return
            page = await self._get(next_url)
            for item in page.get("value") or []:
                if isinstance(item, dict):
                    yield item
            next_url = _text(page.get("nextLink"))
            if next_url is not None and _origin(next_url) != origin:
                raise RecognitionUnavailable("a next page on another host was refused")
        raise RecognitionUnavailable(f"more than {_MAX_PAGES} pages")

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            response = await self._client.send_request(HttpRequest("GET", url, headers=self._headers))
            status = response.status_code
            body = await response.read() if status < 300 else b""
        except (AzureError, OSError, TimeoutError) as error:
            raise RecognitionUnavailable(type(error).__name__) from None
        if status in (401, 403):
            raise _Refused(status)
        if status == 404:
            raise _NotFound()
        if status >= 300:
            raise RecognitionUnavailable(f"HTTP {status}")
        try:
            document = json.loads(body)
        except ValueError:
            raise RecognitionUnavailable("the answer is not JSON") from None
        if not isinstance(document, dict):
            raise RecognitionUnavailable("the answer is not a JSON object")
        return document


async def read_recognition(reader: AuthorizationReader, object_id: str, *, client_id: str) -> Recognition:
    """Read the identity's subscriptions and role assignments, and decide (raises
    RecognitionUnavailable for a passing failure)."""
    try:
        subscriptions = await reader.subscriptions()
    except _Refused:
        return Recognition(
            Earning.UNKNOWN,
            (),
            "the identity may not list its Azure subscriptions",
            f"Ask the customer to check that the partner's app (client ID {client_id}) is enabled and "
            f"holds a qualifying Azure role ({LEAST_PRIVILEGE.name} at least) on the subscriptions the "
            "partner manages.",
        )
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def read(subscription: Subscription) -> list[RoleGrant] | None:
        async with gate:
            try:
                assignments = await reader.assignments(subscription, object_id)
            except _Refused:
                return None
            return [await _grant(reader, subscription, assignment) for assignment in assignments]

    found = await asyncio.gather(*(read(subscription) for subscription in subscriptions))
    refused = [
        subscription for subscription, grants in zip(subscriptions, found, strict=True) if grants is None
    ]
    grants = [grant for grants in found if grants is not None for grant in grants]
    return decide(subscriptions, refused, grants, client_id=client_id)


async def _grant(
    reader: AuthorizationReader, subscription: Subscription, assignment: _Assignment
) -> RoleGrant:
    row = pec_role(assignment.role_definition_id)
    name = (
        row.name if row is not None else await reader.role_name(subscription, assignment.role_definition_id)
    )
    qualifies = row is not None and row.qualifies
    return RoleGrant(name, assignment.role_definition_id, assignment.scope, qualifies)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class RecognitionCheck:
    """After a nightly verification found the link in place (or put it back): is it earning?

    Signs in as the verified identity with its cached credential (the token the verification just
    used) and reads ARM. Every identity the product links is a service principal. Never raises: a
    check that cannot be made answers None, the previous recognition stands and the link's outcome
    is not touched.
    """

    def __init__(
        self, settings: Settings, credentials: CredentialCache | None, transport: AioHttpTransport | None
    ) -> None:
        self._settings, self._credentials = settings, credentials
        self._client: AsyncPipelineClient[HttpRequest, Any] | None = None
        if transport is not None:
            policies = [UserAgentPolicy("pal-autopilot")]
            self._client = AsyncPipelineClient(settings.arm_endpoint, policies=policies, transport=transport)
        self._names = RoleNames()

    async def after_verification(
        self,
        tenant_id: str,
        identity: Identity,
        outcome: Outcome,
        run_id: str | None,
        known_version: int | None = None,
    ) -> Recognition | None:
        """The link's recognition, or None when it is not checked after this outcome or cannot be;
        with the link's own record when its version is not the one last read (`known_version`)."""
        checked = outcome.kind in CHECKED_AFTER and outcome.object_id
        if not checked or self._credentials is None or self._client is None:
            return None
        try:
            credential = await self._credentials.get(tenant_id, identity)
            token = await credential.get_token(self._settings.arm_scope)
            names = self._names.for_run(run_id)
            reader = AuthorizationReader(self._client, self._settings.arm_endpoint, token.token, names)
            found = await read_recognition(reader, str(outcome.object_id), client_id=identity.client_id)
            if outcome.link_version is not None and outcome.link_version == known_version:
                return found
            record = await read_link_record(self._client, self._settings.arm_endpoint, token.token)
            the_same = record is not None and (record.partner_id, record.object_id) == (
                outcome.partner_id,
                str(outcome.object_id).lower(),
            )
            return dataclasses.replace(found, record=record) if the_same else found
        except Exception as error:  # a failure to check never changes the link's outcome
            why = str(error) if isinstance(error, RecognitionUnavailable) else type(error).__name__
            logger.warning(
                "Azure recognition of client %s in tenant %s not checked (%s); the previous one stands",
                identity.client_id,
                tenant_id,
                why,
                extra={"customerTenantId": tenant_id, "clientId": identity.client_id},
            )
            return None


async def read_link_record(
    client: AsyncPipelineClient[HttpRequest, Any], arm: str, token: str
) -> LinkRecord | None:
    """The caller's link as ARM holds it (partner name, created and updated times, version); None
    when it cannot be read now (nothing raises)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        response = await client.send_request(
            HttpRequest("GET", f"{arm.rstrip('/')}{_PARTNERS}", headers=headers)
        )
        body = await response.read() if response.status_code == 200 else b""
        document = json.loads(body) if body else None
    except (AzureError, OSError, TimeoutError, ValueError):
        return None
    properties = document.get("properties") if isinstance(document, dict) else None
    if not isinstance(properties, dict):
        return None
    partner_id, object_id = properties.get("partnerId"), properties.get("objectId")
    if not (isinstance(partner_id, str) and isinstance(object_id, str)):
        return None
    name = properties.get("partnerName")
    version = properties.get("version")
    return LinkRecord(
        partner_id=partner_id,
        object_id=object_id.lower(),
        partner_name=name if isinstance(name, str) and _PARTNER_NAME.fullmatch(name) else None,
        created=_time(properties.get("createdTime")),
        updated=_time(properties.get("updatedTime")),
        version=version if isinstance(version, int) and not isinstance(version, bool) else None,
    )


def _time(value: object) -> datetime | None:
    """ARM's times (seven fractional digits, Z) as aware datetimes; None for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
