"""A repair plan: what would make each resource the audit found `not-attributed` credit us, per
resource, with the call, the risk and whether Microsoft documents it (verified) or we infer it.
Pure: the facts come from `facts.py`'s reads; nothing here does I/O.

Per product (power-platform.md, "Who counts" and "Changing owners"). `evidence` says whether the
change is documented to credit the partner (`verified`) or that is our inference (`inferred`):
- Power BI dataset: `Default.TakeOver` as the linked service principal, which must be a member of
  the workspace; the owner (`configuredBy`) is who Power BI credits: verified. Data-source
  credentials may need rebinding afterwards (inferred, said in the risk).
- Solution-aware cloud flow: Dataverse `PATCH workflows({id})` binding `ownerid` to our application
  user. The call is documented, but Power Automate credits a flow's *creator*, which the PATCH does
  not touch: that the owner change earns credit is only the seed's claim, so `inferred`, and the
  plan says the audit (which reads the creator) will still show the flow not attributed and names
  the verified way, re-delivering the flow's solution as the linked identity. Refused for a flow
  with premium connectors and no Process licence: a service principal owner would have it
  suspended. A flow outside a solution: not repairable this way.
- Canvas app: `modifyAppOwner` with our object id (the call is documented, that it takes a service
  principal is not): only with the unverified switch, and labelled so; when the previous owner is
  gone from the tenant the plan warns that an undo could not give the app back (`undoable` false).
- Model-driven apps and bots count their creator: only a new solution import changes it
  (`palctl deliver solution`), never an owner PATCH.

The plan is a versioned JSON document an operator reviews; apply rebuilds each call from the kind
and the ids, never from a URL in the file.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.attribution.rules import Product
from shared.spine.identifiers import is_guid

__all__ = [
    "PLAN_VERSION",
    "CanvasAppFacts",
    "DatasetFacts",
    "Evidence",
    "FlowFacts",
    "PlannedChange",
    "RepairKind",
    "RepairPlan",
    "Target",
    "plan_change",
]

PLAN_VERSION = 1
MAX_CHANGES = 500
_PLAIN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_ENVIRONMENT = re.compile(r"^(Default-)?[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


class RepairKind(StrEnum):
    POWER_BI_TAKEOVER = "power-bi-takeover"
    FLOW_OWNER = "flow-owner"
    CANVAS_APP_OWNER = "canvas-app-owner"
    REDELIVER_SOLUTION = "redeliver-solution"
    NOT_REPAIRABLE = "not-repairable"

    @property
    def calls(self) -> bool:
        """Whether apply makes a call for this kind (the other two only say what to do)."""
        return self in (RepairKind.POWER_BI_TAKEOVER, RepairKind.FLOW_OWNER, RepairKind.CANVAS_APP_OWNER)

    @property
    def undoable(self) -> bool:
        """TakeOver only ever takes a dataset to the caller: giving it back is the old owner's act."""
        return self in (RepairKind.FLOW_OWNER, RepairKind.CANVAS_APP_OWNER)


class Evidence(StrEnum):
    VERIFIED = "verified"
    INFERRED = "inferred"


@dataclass(frozen=True)
class Target:
    """Who we are in the tenant, in the forms the calls name a principal by."""

    object_id: str
    client_id: str
    dataverse_users: dict[str, str] = field(default_factory=dict)
    """Environment id -> the systemuser id of our application user there."""


@dataclass(frozen=True)
class DatasetFacts:
    owner: str | None
    """`configuredBy` now (None: the dataset is gone)."""
    member: bool
    """Whether our service principal is a member of the workspace (the workspace answered)."""


@dataclass(frozen=True)
class FlowFacts:
    solution_aware: bool
    owner: str | None
    """The Dataverse owner (a systemuser id) of a solution-aware flow."""
    premium_connectors: tuple[str, ...] = ()
    process_license: bool = False


@dataclass(frozen=True)
class CanvasAppFacts:
    owner: str | None
    """`properties.owner.id` now (None: the app is gone)."""
    owner_exists: bool | None = None
    """Whether the owner is still a principal of the tenant (False: Power Apps shows only its id, as
    for a deleted user; None: not known)."""


Facts = DatasetFacts | FlowFacts | CanvasAppFacts | None


@dataclass(frozen=True)
class PlannedChange:
    change_id: str
    product: Product
    kind: RepairKind
    environment_id: str
    """The Power Platform environment, or the Power BI workspace."""
    resource_id: str
    name: str
    before_owner: str | None
    after_owner: str | None
    call: str | None
    """The call apply makes, as text for the reviewer (apply rebuilds it from the kind and ids)."""
    risk: str
    evidence: Evidence
    refused: bool = False
    reason: str | None = None
    undo: str | None = None
    undoable: bool = False
    """Whether an undo is expected to be able to put the previous owner back."""

    def document(self) -> dict[str, Any]:
        return {
            "changeId": self.change_id,
            "product": self.product.value,
            "kind": self.kind.value,
            "environmentId": self.environment_id,
            "resourceId": self.resource_id,
            "name": self.name,
            "beforeOwner": self.before_owner,
            "afterOwner": self.after_owner,
            "call": self.call,
            "undo": self.undo,
            "undoable": self.undoable,
            "risk": self.risk,
            "evidence": self.evidence.value,
            "refused": self.refused,
            "reason": self.reason,
        }

    @classmethod
    def parse(cls, value: Any, where: str) -> PlannedChange | str:  # noqa: PLR0911 (one reason each)
        if not isinstance(value, dict):
            return f"{where}: an object"
        try:
            product, kind = Product(str(value.get("product"))), RepairKind(str(value.get("kind")))
            evidence = Evidence(str(value.get("evidence")))
        except ValueError:
            return f"{where}: product, kind or evidence is not one this version knows"
        change_id, environment, resource = (
            value.get("changeId"),
            value.get("environmentId"),
            value.get("resourceId"),
        )
        if not (_plain(change_id) and _plain(environment)):
            return f"{where}: changeId and environmentId must be plain ids"
        if not is_guid(resource):
            return f"{where}: resourceId must be a GUID"
        before, after = value.get("beforeOwner"), value.get("afterOwner")
        if not all(owner is None or _principal(owner) for owner in (before, after)):
            return f"{where}: beforeOwner and afterOwner must be principal ids or names"
        refused, undoable = value.get("refused"), value.get("undoable", False)
        if not isinstance(refused, bool) or not isinstance(undoable, bool):
            return f"{where}: refused and undoable must be true or false"
        texts = {name: value.get(name) for name in ("name", "call", "undo", "risk", "reason")}
        if not all(text is None or (isinstance(text, str) and len(text) <= 2000) for text in texts.values()):
            return f"{where}: name, call, undo, risk and reason are texts"
        return cls(
            change_id=str(change_id),
            product=product,
            kind=kind,
            environment_id=str(environment),
            resource_id=str(resource).lower(),
            name=str(texts["name"] or ""),
            before_owner=before,
            after_owner=after,
            call=texts["call"],
            risk=str(texts["risk"] or ""),
            evidence=evidence,
            refused=refused,
            reason=texts["reason"],
            undo=texts["undo"],
            undoable=undoable,
        )


@dataclass(frozen=True)
class RepairPlan:
    plan_id: str
    tenant: str
    created_at: datetime
    audit_run: str | None
    include_unverified: bool
    changes: tuple[PlannedChange, ...]
    version: int = PLAN_VERSION

    def document(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "planId": self.plan_id,
            "customerTenantId": self.tenant,
            "createdAt": self.created_at.isoformat(),
            "auditRun": self.audit_run,
            "includeUnverified": self.include_unverified,
            "changes": [change.document() for change in self.changes],
        }

    @classmethod
    def parse(cls, value: Any) -> RepairPlan | str:  # noqa: PLR0911 (one reason each)
        """The plan, or why it is not one this version applies."""
        if not isinstance(value, dict):
            return "the plan is a JSON object"
        if value.get("version") != PLAN_VERSION:
            return f"version: this service applies plans of version {PLAN_VERSION}"
        plan_id, tenant, run = value.get("planId"), value.get("customerTenantId"), value.get("auditRun")
        if not is_guid(plan_id) or not is_guid(tenant):
            return "planId and customerTenantId must be GUIDs"
        if run is not None and not _plain(run):
            return "auditRun must be a plain id"
        try:
            created = datetime.fromisoformat(str(value.get("createdAt")))
        except ValueError:
            return "createdAt must be an ISO 8601 time"
        changes = value.get("changes")
        if not isinstance(changes, list) or len(changes) > MAX_CHANGES:
            return f"changes: a list of at most {MAX_CHANGES}"
        parsed = []
        for index, item in enumerate(changes):
            change = PlannedChange.parse(item, f"changes[{index}]")
            if isinstance(change, str):
                return change
            parsed.append(change)
        if len({change.change_id for change in parsed}) != len(parsed):
            return "changes: each changeId once"
        return cls(
            str(plan_id).lower(),
            str(tenant).lower(),
            created,
            run,
            bool(value.get("includeUnverified")),
            tuple(parsed),
        )


def _plain(value: Any) -> bool:
    return isinstance(value, str) and bool(_PLAIN.match(value))


def _principal(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable()


# ---- deciding one resource ----------------------------------------------------------------------

_REBIND = (
    "The dataset's data-source credentials may need rebinding after the takeover (inferred): "
    "check its scheduled refresh."
)
_MEMBER = (
    "Our service principal is not a member of this workspace: a workspace admin adds it (Member or "
    "Admin), then plan again."
)
_FLOW_RISK = (
    "INFERRED CREDIT: this changes the flow's Dataverse owner, not its creator, and Power Automate "
    "credits a flow's creator. That an owner change earns the partner credit is only the seed's claim "
    "(inferred): the audit, which reads the creator, will still show this flow not attributed after "
    "apply. The verified way is to re-deliver the flow's solution as the linked identity (palctl "
    "deliver solution --tenant T --environment {environment} --file managed.zip). The flow keeps "
    "running under the new owner; its connections stay the ones its connection references name."
)
_CANVAS_RISK = (
    "UNVERIFIED: Microsoft documents modifyAppOwner for an admin app, not that it accepts a service "
    "principal as the new owner (inferred). The old owner keeps the app as co-owner (CanEdit)."
)
_CANVAS_NO_UNDO = (
    " UNDO MAY BE IMPOSSIBLE: the previous owner no longer exists in the tenant (Power Apps shows "
    "only its id), so an undo could not give the app back to it."
)
_REDELIVER = (
    "Attributed to its creator, which no owner change touches: re-deliver the solution that holds it "
    "as the linked identity (palctl deliver solution --tenant T --environment {environment} --file "
    "managed.zip)."
)
_REDELIVER_RISK = (
    "Importing makes the importing identity the owner and creator of the solution's components "
    "(verified). Importing a solution again may overwrite customisations made outside it; whether a "
    "re-import changes the creator of a component already in the environment is inferred: the audit "
    "after the delivery shows it."
)
_OWNED_FLOW = (
    "Our service principal already owns this flow in Dataverse and it is still not attributed: Power "
    "Automate credits the flow's creator, which an owner change does not touch. Re-deliver the flow's "
    "solution as the linked identity (palctl deliver solution --tenant T --environment {environment} "
    "--file managed.zip)."
)
_NOT_SOLUTION = (
    "Not repairable by an owner change: a flow outside a solution counts its creator. Add it to a "
    "solution and deliver that solution as the linked identity (palctl deliver solution)."
)


def plan_change(
    index: int,
    product: Product,
    environment_id: str,
    resource_id: str,
    name: str,
    facts: Facts,
    target: Target,
    *,
    include_unverified: bool,
    dataverse_url: str | None = None,
) -> PlannedChange:
    """The planned change for one not-attributed resource, given what was read about it now."""
    about = dict(
        change_id=f"c{index:04d}",
        product=product,
        environment_id=environment_id,
        resource_id=resource_id,
        name=name,
    )
    if product in (Product.MODEL_DRIVEN_APP, Product.COPILOT_STUDIO_BOT):
        reason = _REDELIVER.format(environment=environment_id)
        return PlannedChange(
            **about,  # type: ignore[arg-type]
            kind=RepairKind.REDELIVER_SOLUTION,
            before_owner=None,
            after_owner=target.object_id,
            call=None,
            risk=_REDELIVER_RISK,
            evidence=Evidence.VERIFIED,
            refused=True,
            reason=reason,
        )
    if product is Product.POWER_BI_DATASET:
        return _dataset(about, facts, target)
    if product is Product.CLOUD_FLOW:
        return _flow(about, facts, target, dataverse_url)
    if product is Product.CANVAS_APP:
        return _canvas(about, facts, target, include_unverified)
    return _not_repairable(about, "No repair is known for this product.", target)


def _not_repairable(about: dict[str, Any], reason: str, target: Target) -> PlannedChange:
    return PlannedChange(
        **about,
        kind=RepairKind.NOT_REPAIRABLE,
        before_owner=None,
        after_owner=None,
        call=None,
        risk="",
        evidence=Evidence.VERIFIED,
        refused=True,
        reason=reason,
    )


def _gone(about: dict[str, Any], target: Target) -> PlannedChange:
    return _not_repairable(about, "The resource was not found now: audit again.", target)


def _dataset(about: dict[str, Any], facts: Facts, target: Target) -> PlannedChange:
    if not isinstance(facts, DatasetFacts) or (facts.owner is None and facts.member):
        return _gone(about, target)
    workspace, dataset = about["environment_id"], about["resource_id"]
    refused = not facts.member
    return PlannedChange(
        **about,
        kind=RepairKind.POWER_BI_TAKEOVER,
        before_owner=facts.owner,
        after_owner=target.client_id,
        call=f"POST /v1.0/myorg/groups/{workspace}/datasets/{dataset}/Default.TakeOver",
        risk=_REBIND + " Not undoable by us: only the previous owner can take it over again.",
        evidence=Evidence.VERIFIED,
        refused=refused,
        reason=_MEMBER if refused else None,
    )


def _flow(about: dict[str, Any], facts: Facts, target: Target, dataverse_url: str | None) -> PlannedChange:
    if not isinstance(facts, FlowFacts):
        return _gone(about, target)
    if not facts.solution_aware:
        return _not_repairable(about, _NOT_SOLUTION, target)
    ours = target.dataverse_users.get(about["environment_id"].lower())
    call = f"PATCH {dataverse_url or '{dataverse}'}api/data/v9.2/workflows({about['resource_id']})"
    change = dict(
        kind=RepairKind.FLOW_OWNER,
        before_owner=facts.owner,
        after_owner=ours,
        call=f"{call} ownerid@odata.bind=/systemusers({ours})",
        undo=f"{call} ownerid@odata.bind=/systemusers({facts.owner})",
        undoable=facts.owner is not None,
        risk=_FLOW_RISK.format(environment=about["environment_id"]),
        evidence=Evidence.INFERRED,
    )
    if ours is not None and facts.owner is not None and facts.owner.lower() == ours.lower():
        return PlannedChange(
            **about,
            kind=RepairKind.REDELIVER_SOLUTION,
            before_owner=facts.owner,
            after_owner=ours,
            call=None,
            risk=_REDELIVER_RISK,
            evidence=Evidence.VERIFIED,
            refused=True,
            reason=_OWNED_FLOW.format(environment=about["environment_id"]),
        )
    if ours is None:
        reason = "Our service principal has no Dataverse application user in this environment."
        return PlannedChange(**about, **change, refused=True, reason=reason)  # type: ignore[arg-type]
    if facts.premium_connectors and not facts.process_license:
        reason = (
            f"Refused: the flow uses premium connectors ({', '.join(facts.premium_connectors)}) and has "
            "no Process licence; owned by a service principal it would be suspended. Assign a Process "
            "licence to the flow (or keep a licensed user as its owner), then plan again."
        )
        return PlannedChange(**about, **change, refused=True, reason=reason)  # type: ignore[arg-type]
    return PlannedChange(**about, **change)  # type: ignore[arg-type]


def _canvas(about: dict[str, Any], facts: Facts, target: Target, include_unverified: bool) -> PlannedChange:
    if not isinstance(facts, CanvasAppFacts) or facts.owner is None:
        return _gone(about, target)
    apps = f"/providers/Microsoft.PowerApps/scopes/admin/environments/{about['environment_id']}/apps"
    path = f"POST {apps}/{about['resource_id']}/modifyAppOwner"
    refused = not include_unverified
    gone = facts.owner_exists is False
    return PlannedChange(
        **about,
        kind=RepairKind.CANVAS_APP_OWNER,
        before_owner=facts.owner,
        after_owner=target.object_id,
        call=f'{path} {{"newAppOwner": "{target.object_id}", "roleForOldAppOwner": "CanEdit"}}',
        undo=f'{path} {{"newAppOwner": "{facts.owner}", "roleForOldAppOwner": "CanEdit"}}',
        undoable=not gone,
        risk=_CANVAS_RISK + (_CANVAS_NO_UNDO if gone else ""),
        evidence=Evidence.INFERRED,
        refused=refused,
        reason=(
            "Unverified: planned only with --include-unverified (includeUnverified=true)."
            if refused
            else None
        ),
    )


def new_plan(
    tenant: str,
    created_at: datetime,
    audit_run: str | None,
    include_unverified: bool,
    changes: Sequence[PlannedChange],
) -> RepairPlan:
    return RepairPlan(str(uuid.uuid4()), tenant, created_at, audit_run, include_unverified, tuple(changes))


def unreadable(
    index: int, product: Product, environment_id: str, resource_id: str, name: str, reason: str
) -> PlannedChange:
    """A resource whose facts could not be read now (an API refused us): refused with the reason."""
    about = dict(
        change_id=f"c{index:04d}",
        product=product,
        environment_id=environment_id,
        resource_id=resource_id,
        name=name,
    )
    return _not_repairable(about, reason, Target("", ""))
