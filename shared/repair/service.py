"""Plan, apply and undo repairs for one customer, as its linked service principal.

- `plan`: the latest findings `not-attributed`, each read again now (owner, workspace membership,
  solution, premium connectors, licence) and decided by `plan.plan_change`; nothing is changed.
- `apply`: exactly the plan's changes that are not refused, each only while its resource still has
  the plan's before-owner (else refused with the reason); before and after recorded per change in
  the ledger; then the affected environments and Power BI are audited again and the result read.
- `undo`: the previous owners put back, where the API allows (not a Power BI takeover), each only
  while the resource still has the owner the apply gave it.

Only a service principal's link is used (`LinkState.identity` is None for a user account): nothing
is ever changed as a person.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError

from shared.attribution.audit import AttributionAudit, AuditMessage
from shared.attribution.findings import FindingStatus
from shared.attribution.inventory import ApiRefused, InventoryReader, Throttled
from shared.attribution.rows import POWER_BI_UNIT
from shared.attribution.rules import Product
from shared.attribution.store import AttributionLedger
from shared.delivery.calls import Caller, CallFailed
from shared.links.ledger import Ledger
from shared.links.rows import LinkState
from shared.repair.calls import RepairCalls
from shared.repair.plan import (
    PlannedChange,
    RepairKind,
    RepairPlan,
    Target,
    new_plan,
    plan_change,
    unreadable,
)
from shared.repair.rows import ApplyRow, ChangeStatus, RepairChangeRow, apply_row_key, change_row_key
from shared.repair.store import RepairLedger
from shared.spine.credentials import CredentialCache
from shared.spine.settings import Settings
from shared.spine.untrusted import shown

__all__ = ["NotLinked", "RepairService", "Stale"]

logger = logging.getLogger(__name__)


class NotLinked(Exception):
    """No healthy link of a service principal of ours in the tenant: nothing to repair as."""


class Stale(Exception):
    """The plan is not for this tenant, or refers to an apply that does not exist."""


@dataclass(frozen=True)
class Applied:
    apply: ApplyRow
    changes: list[RepairChangeRow]

    def public(self) -> dict[str, Any]:
        return {
            "applyId": self.apply.apply_id,
            "customerTenantId": self.apply.partition_key,
            "planId": self.apply.plan_id,
            "appliedAt": self.apply.applied_at,
            "undoneAt": self.apply.undone_at,
            "counts": self.apply.count_map(),
            "audit": self.apply.audit,
            "changes": [row.public() for row in sorted(self.changes, key=lambda row: row.change_id)],
        }


class RepairService:
    def __init__(
        self,
        links: Ledger,
        findings: AttributionLedger,
        ledger: RepairLedger,
        audit: AttributionAudit,
        credentials: CredentialCache,
        settings: Settings,
        transport: Any,
    ) -> None:
        self._links, self._findings, self.ledger, self._audit = links, findings, ledger, audit
        self._credentials, self._settings, self._transport = credentials, settings, transport

    async def _calls(self, tenant: str) -> tuple[RepairCalls, LinkState]:
        states = [s for s in await self._links.link_states(tenant) if s.is_healthy and s.identity is not None]
        if not states:
            raise NotLinked(tenant)
        state = states[0]
        assert state.identity is not None
        credential = await self._credentials.get(tenant, state.identity)
        reader = InventoryReader(self._settings, credential, self._transport)
        return RepairCalls(self._settings, reader, Caller(credential, self._transport)), state

    # ---- plan -----------------------------------------------------------------------------------

    async def plan(self, tenant: str, *, include_unverified: bool) -> RepairPlan:
        findings = [
            row for row in await self._findings.findings(tenant) if row.status is FindingStatus.NOT_ATTRIBUTED
        ]
        runs = await self._findings.runs(tenant)
        calls, state = await self._calls(tenant)
        try:
            target = Target((state.object_id or "").lower(), (state.client_id or "").lower(), {})
            changes: list[PlannedChange] = []
            for index, row in enumerate(
                sorted(findings, key=lambda r: (r.product.value, r.unit, r.resource_id))
            ):
                changes.append(await self._planned(calls, target, index + 1, row, include_unverified))
        finally:
            await calls.close()
        run = runs[-1].run_id if runs else None
        return new_plan(tenant, datetime.now(UTC), run, include_unverified, changes)

    async def _planned(
        self, calls: RepairCalls, target: Target, index: int, row: Any, include_unverified: bool
    ) -> PlannedChange:
        try:
            return await self._read_and_plan(calls, target, index, row, include_unverified)
        except ApiRefused as refused:
            reason = (
                f"{refused.api.value} refused our service principal (HTTP {refused.status}) while reading "
                "this resource: the customer's grant for it is missing (palctl grants)."
            )
            return unreadable(index, row.product, row.unit, row.resource_id, row.name, reason)

    async def _read_and_plan(
        self, calls: RepairCalls, target: Target, index: int, row: Any, include_unverified: bool
    ) -> PlannedChange:
        product, unit, resource = row.product, row.unit, row.resource_id
        facts: Any = None
        dataverse_url = None
        if product is Product.POWER_BI_DATASET:
            found = await calls.dataset_facts(resource)
            if found is not None:
                unit, facts = found
        elif product is Product.CLOUD_FLOW:
            environment = await calls.environment(unit)
            if environment is not None:
                facts = await calls.flow_facts(environment, resource)
                dataverse_url = environment.dataverse_url
                await self._our_dataverse_user(calls, target, environment)
        elif product is Product.CANVAS_APP:
            environment = await calls.environment(unit)
            if environment is not None:
                facts = await calls.canvas_app_owner(environment, resource, existence=True)
        return plan_change(
            index,
            product,
            unit,
            resource,
            row.name,
            facts,
            target,
            include_unverified=include_unverified,
            dataverse_url=dataverse_url,
        )

    async def _our_dataverse_user(self, calls: RepairCalls, target: Target, environment: Any) -> None:
        key = environment.id.lower()
        if key not in target.dataverse_users and environment.dataverse_url:
            try:
                found = await calls.reader.dataverse_user(environment, target.client_id)
            except ApiRefused:
                found = None
            if found:
                target.dataverse_users[key] = found.lower()

    # ---- apply ----------------------------------------------------------------------------------

    async def apply(self, plan: RepairPlan) -> Applied:
        apply_id, now = str(uuid.uuid4()), datetime.now(UTC)
        calls, state = await self._calls(plan.tenant)
        target = Target((state.object_id or "").lower(), (state.client_id or "").lower(), {})
        rows: list[RepairChangeRow] = []
        try:
            for change in plan.changes:
                rows.append(await self._apply_one(calls, target, plan, apply_id, change))
        finally:
            await calls.close()
        rows, audit = await self._reaudit(plan.tenant, apply_id, rows)
        counts = Counter(row.status.value for row in rows)
        apply = ApplyRow(
            partition_key=plan.tenant,
            row_key=apply_row_key(apply_id),
            plan_id=plan.plan_id,
            applied_at=now,
            counts=json.dumps(dict(counts), sort_keys=True),
            audit=audit,
        )
        await self.ledger.write(apply, rows)
        logger.info(
            "repair plan %s applied to tenant %s as %s: %s", plan.plan_id, plan.tenant, apply_id, dict(counts)
        )
        return Applied(apply, rows)

    async def _apply_one(
        self, calls: RepairCalls, target: Target, plan: RepairPlan, apply_id: str, change: PlannedChange
    ) -> RepairChangeRow:
        row = RepairChangeRow(
            partition_key=plan.tenant,
            row_key=change_row_key(apply_id, change.change_id),
            apply_id=apply_id,
            plan_id=plan.plan_id,
            change_id=change.change_id,
            product=change.product,
            kind=change.kind,
            unit=change.environment_id,
            resource_id=change.resource_id,
            name=change.name[:256],
            evidence=change.evidence,
            status=ChangeStatus.REFUSED,
            before_owner=change.before_owner,
            after_owner=change.after_owner,
            changed_at=datetime.now(UTC),
        )
        if change.refused or not change.kind.calls or change.after_owner is None:
            return row.replace(reason=change.reason or "refused in the plan")
        if change.kind is RepairKind.CANVAS_APP_OWNER and not plan.include_unverified:
            return row.replace(reason="unverified: the plan was not made with includeUnverified")
        try:
            ours = await self._ours(calls, target, change)
            if not _same(ours, change.after_owner):
                reason = (
                    "our service principal has no Dataverse application user in this environment now"
                    if ours is None
                    else "the plan's afterOwner is not our service principal: repairs only make it the owner"
                )
                return row.replace(reason=reason)
            current = await calls.current_owner(change.kind, change.environment_id, change.resource_id)
            if not _same(current, change.before_owner):
                reason = (
                    "changed since planning: the owner is no longer the plan's before-owner"
                    if current is not None
                    else "the resource is gone since planning"
                )
                return row.replace(reason=reason, before_owner=current)
            await calls.change_owner(
                change.kind, change.environment_id, change.resource_id, change.after_owner
            )
        except (ApiRefused, Throttled, CallFailed, AzureError, OSError, TimeoutError) as error:
            return row.replace(status=ChangeStatus.FAILED, reason=_why(error))
        return row.replace(status=ChangeStatus.APPLIED, reason=None)

    async def _ours(self, calls: RepairCalls, target: Target, change: PlannedChange) -> str | None:
        """Our service principal as the change names the new owner: its client id for a takeover (the
        caller becomes the owner), its object id for a canvas app, its application user for a flow."""
        if change.kind is RepairKind.POWER_BI_TAKEOVER:
            return target.client_id
        if change.kind is RepairKind.CANVAS_APP_OWNER:
            return target.object_id
        environment = await calls.environment(change.environment_id)
        if environment is None:
            return None
        await self._our_dataverse_user(calls, target, environment)
        return target.dataverse_users.get(environment.id.lower())

    async def _reaudit(
        self, tenant: str, apply_id: str, rows: list[RepairChangeRow]
    ) -> tuple[list[RepairChangeRow], str]:
        applied = [row for row in rows if row.status is ChangeStatus.APPLIED]
        if not applied:
            return rows, "nothing changed: no re-audit"
        units = sorted(
            {POWER_BI_UNIT if row.product is Product.POWER_BI_DATASET else row.unit for row in applied}
        )
        try:
            for unit in units:
                await self._audit.audit_unit(AuditMessage(tenant, f"repair-{apply_id[:8]}", unit))
        except (ApiRefused, Throttled, AzureError, OSError, TimeoutError) as error:
            return rows, f"re-audit of {', '.join(units)} not finished: {_why(error)}; run palctl audit"
        findings = {
            (row.product, row.resource_id.lower()): row for row in await self._findings.findings(tenant)
        }
        updated = []
        for row in rows:
            finding = findings.get((row.product, row.resource_id.lower()))
            if row.status is ChangeStatus.APPLIED and finding is not None:
                row = row.replace(attributed_after=finding.status is FindingStatus.ATTRIBUTED)
            updated.append(row)
        return updated, f"re-audited {', '.join(units)}"

    # ---- undo -----------------------------------------------------------------------------------

    async def undo(self, tenant: str, apply_id: str) -> Applied:
        found = await self.ledger.get(tenant, apply_id)
        if found is None:
            raise Stale("no such apply for this tenant")
        apply, rows = found
        calls, _ = await self._calls(tenant)
        updated = []
        try:
            for row in rows:
                updated.append(
                    await self._undo_one(calls, row) if row.status is ChangeStatus.APPLIED else row
                )
        finally:
            await calls.close()
        counts = Counter(row.status.value for row in updated)
        apply = apply.replace(undone_at=datetime.now(UTC), counts=json.dumps(dict(counts), sort_keys=True))
        units = sorted(
            {
                POWER_BI_UNIT if r.product is Product.POWER_BI_DATASET else r.unit
                for r in updated
                if r.status is ChangeStatus.UNDONE
            }
        )
        for unit in units:
            try:
                await self._audit.audit_unit(AuditMessage(tenant, f"undo-{apply_id[:8]}", unit))
            except (ApiRefused, Throttled, AzureError, OSError, TimeoutError):
                logger.warning("repair undo %s: the re-audit of %s did not finish", apply_id, unit)
        await self.ledger.write(apply, updated)
        logger.info("repair %s of tenant %s undone: %s", apply_id, tenant, dict(counts))
        return Applied(apply, updated)

    async def _undo_one(self, calls: RepairCalls, row: RepairChangeRow) -> RepairChangeRow:
        now = datetime.now(UTC)
        if not row.kind.undoable or row.before_owner is None:
            reason = (
                "a Power BI takeover cannot be given back by us: "
                "the previous owner takes the dataset over again"
                if row.kind is RepairKind.POWER_BI_TAKEOVER
                else "no previous owner was recorded: nothing to put back"
            )
            return row.replace(status=ChangeStatus.UNDO_REFUSED, reason=reason, undone_at=now)
        try:
            current = await calls.current_owner(row.kind, row.unit, row.resource_id)
            if not _same(current, row.after_owner):
                reason = "changed since the apply: the owner is no longer the one the apply set"
                return row.replace(status=ChangeStatus.UNDO_REFUSED, reason=reason, undone_at=now)
            await calls.change_owner(row.kind, row.unit, row.resource_id, row.before_owner)
        except (ApiRefused, Throttled, CallFailed, AzureError, OSError, TimeoutError) as error:
            return row.replace(status=ChangeStatus.UNDO_FAILED, reason=_why(error), undone_at=now)
        return row.replace(status=ChangeStatus.UNDONE, reason=None, undone_at=now)

    async def latest_apply_of(self, tenant: str, plan_id: str) -> str | None:
        applies = [row for row in await self.ledger.applies(tenant) if row.plan_id == plan_id]
        return applies[-1].apply_id if applies else None

    async def status(self, tenant: str, apply_id: str) -> Applied | None:
        found = await self.ledger.get(tenant, apply_id)
        return None if found is None else Applied(*found)


def _same(current: str | None, expected: str | None) -> bool:
    return current is not None and expected is not None and current.lower() == expected.lower()


def _why(error: BaseException) -> str:
    """What went wrong, for the ledger: the API, status and code, never a token or a body."""
    if isinstance(error, CallFailed):
        text = f"{error.api.value}: HTTP {error.status} {error.code or ''} {error.message}".strip()
    elif isinstance(error, ApiRefused):
        text = f"{error.api.value}: HTTP {error.status}: the customer's grant for this API is missing"
    elif isinstance(error, Throttled):
        text = f"{error.api.value}: throttled; apply the plan again later"
    else:
        text = f"{type(error).__name__}: the call failed; apply the plan again later"
    return shown(text, 400)
