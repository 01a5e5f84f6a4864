"""No secret reaches a log line, a ledger entity or an exception, whichever way it came in."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from sandbox.cloud import CloudSandbox
from shared.links.service import LinkService
from shared.spine.outcomes import OutcomeKind
from tenants import FABRIKAM, FABRIKAM_APP, LITWARE, LITWARE_APP, NORTHWIND, bound_to, onboarding_message
from traces import everything_logged, everything_stored

PLANTED = "Qz78Q~PLANTED-secret-0123456789abcdefghijklm"
PLANTED_PASSWORD = "correct-horse-battery-staple-PLANTED"


@pytest.mark.parametrize(
    "body",
    [
        onboarding_message(NORTHWIND, FABRIKAM_APP, identity_type="secret", clientSecret=PLANTED),
        {**onboarding_message(NORTHWIND), "password": PLANTED_PASSWORD},
        onboarding_message(NORTHWIND, customerName=PLANTED),
        {**onboarding_message(NORTHWIND), PLANTED: "field name"},
        {**onboarding_message(NORTHWIND), "schemaVersion": 7, "note": {"credential": PLANTED_PASSWORD}},
    ],
)
async def test_secret_in_a_message_is_rejected_and_never_written(
    body: dict[str, Any],
    service: LinkService,
    env: dict[str, str],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    outcome = await service.handle(json.dumps(body).encode(), message_id="m-secret")
    assert (outcome.kind, outcome.code) == (OutcomeKind.REJECTED, "secret-in-message")
    history = await service.ledger.history(NORTHWIND)
    assert [event.code for event in history] == ["secret-in-message"]

    places = {
        "logs": everything_logged(all_logs),
        "ledger": await everything_stored(env),
        "outcome": repr(outcome),
    }
    assert all_logs.records, "expected the rejection to be logged"
    for place, text in places.items():
        assert PLANTED not in text, place
        assert PLANTED_PASSWORD not in text, place


async def test_key_vault_credentials_never_leave_the_credential(
    service: LinkService,
    cloud: CloudSandbox,
    env: dict[str, str],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    logging.getLogger("azure").setLevel(logging.DEBUG)
    secret = cloud.secret_value("fabrikam-pal-secret")
    certificate = cloud.secret_value("litware-pal-cert")
    key_lines = [line for line in certificate.splitlines() if line and "-----" not in line][:3]

    fabrikam = onboarding_message(
        FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
    )
    litware = onboarding_message(
        LITWARE, LITWARE_APP, identity_type="certificate", secret_name="litware-pal-cert"
    )
    reclaimed = await service.handle(json.dumps(fabrikam).encode(), message_id="m-1")
    assert reclaimed.kind is OutcomeKind.RECLAIMED
    assert (await service.handle(json.dumps(litware).encode(), message_id="m-2")).kind is OutcomeKind.LINKED

    # And when Entra refuses a wrong secret, its error text must not carry it either.
    cloud.set_secret("fabrikam-pal-secret", PLANTED, tags=bound_to(FABRIKAM, FABRIKAM_APP))
    await service.linker._credentials.forget(  # noqa: SLF001 - force a fresh Key Vault read
        FABRIKAM, _identity(fabrikam)
    )
    refused = await service.handle(json.dumps(fabrikam).encode(), message_id="m-3")
    assert refused.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN

    logs, stored = everything_logged(all_logs), await everything_stored(env)
    assert "AADSTS7000215" in logs  # the failure itself is visible
    for value in (secret, PLANTED, *key_lines):
        assert value not in logs
        assert value not in stored
        assert value not in repr(refused)


def _identity(body: dict[str, Any]) -> Any:
    from shared.links.message import parse_onboarding_message

    return parse_onboarding_message(
        json.dumps(body).encode(), default_partner_id="1234567", max_bytes=65536
    ).identity
