"""The door from the trigger adapters to the core, opened on first use.

The Functions host imports `function_app` on every cold start to index the triggers; the core (the
Azure SDKs, aiohttp, cryptography) is imported only when the first invocation arrives, so indexing
stays cheap. The adapters import only this module, `azure.functions` and `shared.spine.envelope`.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import azure.functions as func

from shared.spine.envelope import Source

if TYPE_CHECKING:
    from shared.attribution.api import AttributionApi
    from shared.attribution.audit import AttributionAudit
    from shared.delivery.api import DeliveryApi
    from shared.delivery.blobs import DeliveryBlobs
    from shared.delivery.service import DeliveryService
    from shared.delivery.settings import DeliverySettings
    from shared.links.api import LinksApi
    from shared.links.coverage_api import CoverageApi
    from shared.links.evidence import EvidenceApi
    from shared.links.live_api import LiveApi
    from shared.links.service import LinkService
    from shared.links.user_api import UserLinksApi


async def service() -> LinkService:
    from shared.links.service import get_service

    return await get_service()


async def links_api() -> LinksApi:
    from shared.links.api import LinksApi

    return LinksApi.of(await service())


async def evidence_api() -> EvidenceApi:
    from shared.links.evidence import EvidenceApi

    return EvidenceApi.of(await service())


async def coverage_api() -> CoverageApi:
    from shared.links.coverage_api import CoverageApi

    return CoverageApi.of(await service())


async def live_api() -> LiveApi:
    """The live view: links read from ARM now beside the ledger (shared.links.live_api)."""
    from shared.links.live_api import LiveApi

    return LiveApi.of(await service())


async def user_links_api() -> UserLinksApi:
    """User accounts' links as palctl records them (shared.links.user_api)."""
    from shared.links.user_api import UserLinksApi

    return UserLinksApi.of(await service())


async def handle_queue_message(message: func.ServiceBusMessage, source: Source) -> None:
    """One queue message through the service (an offboarding through its flow, on the same spine).
    Every outcome is recorded and the message completes;
    a failure worth retrying has already been scheduled as a new message with backoff. Only when
    that cannot be done does this raise, so that Service Bus delivers the message again."""
    link_service = await service()
    body, properties = message.get_body(), message.application_properties or {}
    message_id, delivery_count = message.message_id or "", message.delivery_count or 1
    if source is Source.OFFBOARDING:
        from shared.links.offboarding import Offboarding

        outcome = await Offboarding(link_service).handle(
            body, message_id=message_id, delivery_count=delivery_count, properties=properties
        )
    else:
        outcome = await link_service.handle(
            body, message_id=message_id, delivery_count=delivery_count, properties=properties, source=source
        )
    link_service.raise_for_redelivery(outcome)


async def attribution_audit() -> AttributionAudit:
    """The attribution audit, built on the link service's ledger table, credentials and sender."""
    from shared.attribution.audit import AttributionAudit
    from shared.attribution.store import AttributionLedger

    link_service = await service()
    assert link_service.credentials is not None
    return AttributionAudit(
        link_service.ledger,
        AttributionLedger(link_service.ledger.table),
        link_service.credentials,
        link_service.sender,
        link_service.settings,
        link_service.transport,
    )


async def attribution_api() -> AttributionApi:
    from shared.attribution.api import AttributionApi
    from shared.attribution.store import AttributionLedger

    link_service = await service()
    ledger = AttributionLedger(link_service.ledger.table)
    return AttributionApi(link_service.ledger, ledger, link_service.sender, link_service.settings)


_delivery_parts: weakref.WeakKeyDictionary[LinkService, tuple[DeliverySettings, DeliveryBlobs | None]] = (
    weakref.WeakKeyDictionary()
)


async def _delivery_blobs() -> tuple[DeliverySettings, DeliveryBlobs | None]:
    """The delivery's settings and its Blob Storage container (None when not configured), built once
    per link service and closed with it."""
    import os

    from shared.delivery.blobs import DeliveryBlobs
    from shared.delivery.settings import DeliverySettings

    link_service = await service()
    parts = _delivery_parts.get(link_service)
    if parts is None:
        settings = DeliverySettings.from_env(os.environ)
        credential = link_service.credentials.host_credential if link_service.credentials else None
        blobs = DeliveryBlobs(settings, credential) if settings.configured else None
        if blobs is not None:
            link_service.closes(blobs.close)
        parts = _delivery_parts[link_service] = (settings, blobs)
    return parts


async def delivery_service() -> DeliveryService:
    """Delivery as the linked identity (shared.delivery), on the link service's ledger, credentials,
    sender and transport, with the attribution audit it runs afterwards."""
    from shared.delivery.service import DeliveryService
    from shared.delivery.store import DeliveryLedger

    link_service = await service()
    assert link_service.credentials is not None
    settings, blobs = await _delivery_blobs()
    return DeliveryService(
        links=link_service.ledger,
        ledger=DeliveryLedger(link_service.ledger.table),
        blobs=blobs,
        audit=await attribution_audit(),
        credentials=link_service.credentials,
        sender=link_service.sender,
        settings=link_service.settings,
        delivery=settings,
        transport=link_service.transport,
    )


async def delivery_api() -> DeliveryApi:
    from shared.delivery.api import DeliveryApi
    from shared.delivery.store import DeliveryLedger

    link_service = await service()
    settings, blobs = await _delivery_blobs()
    return DeliveryApi(
        link_service.ledger,
        DeliveryLedger(link_service.ledger.table),
        blobs,
        link_service.sender,
        settings,
    )


if TYPE_CHECKING:
    from shared.dashboard.api import DashboardApi
    from shared.dashboard.auth import DashboardSettings, TokenValidator
    from shared.dashboard.page import PageResponse

_dashboard_validators: dict[DashboardSettings, TokenValidator] = {}


def dashboard_settings() -> DashboardSettings | str:
    """The dashboard's sign-in settings (shared.dashboard.auth), or why they are missing or wrong."""
    import os

    from shared.dashboard.auth import DashboardSettings
    from shared.spine.settings import SettingsError

    try:
        return DashboardSettings.from_env(os.environ)
    except SettingsError as error:
        return str(error)


def dashboard_page(name: str | None) -> PageResponse:
    """The dashboard's HTML (name None) or one of its allow-listed static files."""
    from shared.dashboard.page import not_configured, page, static_file

    settings = dashboard_settings()
    if isinstance(settings, str):
        return not_configured(settings)
    return page(settings) if name is None else static_file(name, settings)


async def dashboard_api() -> DashboardApi | str:
    """The dashboard's data behind an Entra ID token check (one validator, and key cache, per
    setting), or why its settings are missing or wrong."""
    from shared.dashboard.api import DashboardApi
    from shared.dashboard.auth import TokenValidator

    settings = dashboard_settings()
    if isinstance(settings, str):
        return settings
    validator = _dashboard_validators.get(settings)
    if validator is None:
        validator = _dashboard_validators[settings] = TokenValidator(settings)
    link_service = await service()
    return DashboardApi(validator, await links_api(), await coverage_api(), link_service.ledger)


if TYPE_CHECKING:
    from shared.repair.api import RepairApi


async def repair_api() -> RepairApi:
    """Repair, opt-in (shared.repair): the audit's ledger, credentials and transport."""
    from shared.attribution.store import AttributionLedger
    from shared.repair.api import RepairApi
    from shared.repair.service import RepairService
    from shared.repair.store import RepairLedger

    link_service = await service()
    assert link_service.credentials is not None
    return RepairApi(
        RepairService(
            link_service.ledger,
            AttributionLedger(link_service.ledger.table),
            RepairLedger(link_service.ledger.table),
            await attribution_audit(),
            link_service.credentials,
            link_service.settings,
            link_service.transport,
        )
    )


async def dashboard_full_api() -> DashboardApi | str:
    """The dashboard's data with the live view and the attribution audit (shared.dashboard), or why
    its settings are missing or wrong."""
    from shared.attribution.store import AttributionLedger

    api = await dashboard_api()
    if isinstance(api, str):
        return api
    link_service = await service()
    return api.extended(
        await live_api(), await attribution_api(), AttributionLedger(link_service.ledger.table)
    )
