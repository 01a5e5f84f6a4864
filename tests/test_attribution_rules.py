"""The attribution rules against their sources, and the advisor's answers: pure, no I/O.

The seed's four tables, its per-product bullets and power-platform.md's "Who counts" table are
copied below as literal text and parsed, so that a typo in the data fails here.
"""

from __future__ import annotations

import json

import pytest

from shared.attribution.advisor import Advice, IdentityKind, Verdict, advice_document, advise
from shared.attribution.owner_tables import (
    COMMANDS,
    OWNER_CHANGES,
    TOOL_COLUMNS,
    TOOL_LABELS,
    CommandKind,
    commands_for,
    owner_change,
    tools_allowing,
)
from shared.attribution.routes import (
    SERVICE_PRINCIPAL_PREREQUISITES,
    SERVICE_PRINCIPAL_ROUTES,
    Route,
    routes_for,
)
from shared.attribution.rules import (
    RULES,
    AttributedIdentity,
    Evidence,
    OwnerChange,
    Product,
    SeveralPartners,
    Source,
    Support,
    Tool,
    rule_for,
    who_counts,
)
from shared.attribution.rules_document import rules_document

# ---------------------------------------------------------------------------------------------
# The sources, verbatim.

SEED_ATTRIBUTED_USER_LOGIC = """
Product | Primary Metric | Resource | Attributed User Logic |
---|---|---|---|
Power Apps | Monthly Active Users (MAU) | Application | The user must be an owner/co-owner of the application. For more information, see Share a canvas app with your organization. In cases of multiple partners being mapped to a single application, the user's activity is reviewed to select the 'latest' partner. |
Power Automate | Monthly Active Users (MAU) | Flow | The user must be the creator of the flow. There can only be one creator so there's no logic for multiple partners. |
Power BI | Monthly Active Users (MAU) | Dataset | The user must be the publisher of the dataset. For more information, see Publish datasets and reports from Power BI Desktop. In cases of multiple partners being mapped to a single dataset, the user's activity is reviewed to select the 'latest' partner. |
Customer Insights | Unified Profiles | Instance | Any active user of an Instance is treated as the attributed user. In cases of multiple partners being mapped to a single instance, the user's activity is reviewed to select the 'latest' partner. |
"""  # noqa: E501

SEED_BULLETS = """
- Canvas Applications:
- Set the PAL associated User or Service Account as the owner or co-owner of the application.
- You can only change the owner via the PowerShell Set-AdminPowerAppOwner.
- When inside of a solution, and imported into another environment, the importing entity becomes the new owner.
- Model Driven Applications:
- Make sure the app creator has a PAL association.
- There is NO co-owner option, and you cannot change the owner via the GUI or PowerShell directly.
- When inside of a solution, and imported into another environment, the importing entity becomes the new owner.
- Power Automate:
- Make sure the app creator has a PAL association
- There is no co-owner option
- You can easily change the owner via the web GUI or with the PowerShell Set-AdminFlowOwnerRole
- When inside of a solution, and imported into another environment, the importing entity becomes the new owner.
- Power BI:
- The act of publishing to the service sets the owner.
- Make sure the user publishing the report has a PAL association.
- Use PowerShell to publish as any user or Service Account,
- Power Virtual Agents:
- Make sure the Bot creator has a PAL association.
- You can not change the owner in the GUI or via a PowerShell command.
- When inside of a solution, and imported into another environment, the importing entity becomes the new owner.
"""  # noqa: E501

SEED_DIRECTLY = """
Product | GUI | PowerShell | PP CLI | DevOps + Build Tools |
---|---|---|---|---|
Power App Canvas | YES | YES | NO | NO |
Power App Model Driven | NO | NO | NO | NO |
Power Automate | YES | YES | NO | NO |
Power BI (Publishing) | NO | YES | NO | NO |
Power Virtual Agent | NO | NO | NO | NO |
"""

SEED_THROUGH_SOLUTION_IMPORT = """
Product | GUI | PowerShell | PP CLI | DevOps + Build Tools |
---|---|---|---|---|
Power App Canvas | YES | YES | YES | YES |
Power App Model Driven | YES | NO | YES | YES |
Power Automate | YES | YES | YES | YES |
Power BI (Publishing) | NO | YES | NO | NO |
Power Virtual Agent | YES | NO | YES | YES |
"""

SEED_TO_SERVICE_PRINCIPAL_IN_SOLUTION = """
Product | GUI | PowerShell | PP CLI | DevOps + Build Tools |
---|---|---|---|---|
Power App Canvas | NO | NO | YES | YES |
Power App Model Driven | NO | NO | YES | YES |
Power Automate | YES | YES | YES | YES |
Power BI (Publishing) | NO | YES | NO | NO |
Power Virtual Agent | NO | NO | YES | YES |
"""

SEED_OWNER_TABLES = {
    OwnerChange.DIRECTLY: SEED_DIRECTLY,
    OwnerChange.THROUGH_SOLUTION_IMPORT: SEED_THROUGH_SOLUTION_IMPORT,
    OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION: SEED_TO_SERVICE_PRINCIPAL_IN_SOLUTION,
}

DOC_WHO_COUNTS = """
| product | metric | resource | attributed identity | several partners |
|---|---|---|---|---|
| Power Apps (canvas) | monthly active users | app | owner or co-owner | latest partner by activity |
| Power Apps (model-driven) | monthly active users | app | creator (no co-owner, no owner change) | latest partner |
| Power Automate | monthly active users | cloud flow | creator (the seed also says the owner can be changed) | one creator |
| Power BI | monthly active users | dataset (semantic model) | publisher | latest partner |
| Copilot Studio (Power Virtual Agents) | - | bot | creator | - |
| Customer Insights | unified profiles | instance | any active user of the instance | latest partner |
"""  # noqa: E501

# How the sources name the products (the owner tables' names are in the data: owner_table_row).
SEED_LOGIC_PRODUCTS = {
    "Power Apps": Product.CANVAS_APP,
    "Power Automate": Product.CLOUD_FLOW,
    "Power BI": Product.POWER_BI_DATASET,
    "Customer Insights": Product.CUSTOMER_INSIGHTS_INSTANCE,
}
SEED_BULLET_PRODUCTS = {
    "Canvas Applications": Product.CANVAS_APP,
    "Model Driven Applications": Product.MODEL_DRIVEN_APP,
    "Power Automate": Product.CLOUD_FLOW,
    "Power BI": Product.POWER_BI_DATASET,
    "Power Virtual Agents": Product.COPILOT_STUDIO_BOT,
}
DOC_PRODUCTS = {
    "Power Apps (canvas)": Product.CANVAS_APP,
    "Power Apps (model-driven)": Product.MODEL_DRIVEN_APP,
    "Power Automate": Product.CLOUD_FLOW,
    "Power BI": Product.POWER_BI_DATASET,
    "Copilot Studio (Power Virtual Agents)": Product.COPILOT_STUDIO_BOT,
    "Customer Insights": Product.CUSTOMER_INSIGHTS_INSTANCE,
}
SEED_CELLS = {"YES": True, "NO": False}


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """A pipe table (the seed's `a | b |` or the doc's `| a | b |`): its header and rows."""
    lines = text.strip().splitlines()
    assert set(lines[1]) <= set("-|"), lines[1]
    return _cells(lines[0]), [_cells(line) for line in lines[2:]]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_bullets(text: str) -> dict[Product, list[str]]:
    bullets: dict[Product, list[str]] = {}
    current: list[str] = []
    for line in text.strip().splitlines():
        item = line.removeprefix("- ").strip()
        if item.endswith(":"):
            current = bullets.setdefault(SEED_BULLET_PRODUCTS[item.removesuffix(":")], [])
        else:
            current.append(item)
    return bullets


def _product_of_owner_row(seed_row: str) -> Product:
    (product,) = [rule.product for rule in RULES.values() if rule.owner_table_row == seed_row]
    return product


# ---------------------------------------------------------------------------------------------
# The seed's owner tables, cell by cell.


@pytest.mark.parametrize("change", list(OwnerChange))
def test_owner_tables_are_the_seeds_cell_by_cell(change: OwnerChange) -> None:
    header, rows = parse_table(SEED_OWNER_TABLES[change])
    assert header == ["Product", *(TOOL_LABELS[tool] for tool in TOOL_COLUMNS)]
    seen = set()
    for seed_row, *cells in rows:
        product = _product_of_owner_row(seed_row)
        assert len(cells) == len(TOOL_COLUMNS)
        for tool, cell in zip(TOOL_COLUMNS, cells, strict=True):
            assert OWNER_CHANGES[(product, change, tool)] is SEED_CELLS[cell], (seed_row, tool)
            assert owner_change(product, change, tool) is (Support.YES if SEED_CELLS[cell] else Support.NO)
            seen.add((product, change, tool))
    # Nothing in the data that the seed's table does not have.
    assert {key for key in OWNER_CHANGES if key[1] is change} == seen


def test_the_owner_tables_have_no_row_for_customer_insights() -> None:
    product = Product.CUSTOMER_INSIGHTS_INSTANCE
    assert rule_for(product).owner_table_row is None
    assert not [key for key in OWNER_CHANGES if key[0] is product]
    for change in OwnerChange:
        assert tools_allowing(product, change) == ()
        assert commands_for(product, change) == ()
        for tool in Tool:
            assert owner_change(product, change, tool) is Support.NOT_COVERED


def test_every_yes_cell_and_only_those_has_a_command() -> None:
    assert set(COMMANDS) == {key for key, cell in OWNER_CHANGES.items() if cell}
    for (_, _, tool), command in COMMANDS.items():
        assert command.tool is tool
        assert command.text


def test_the_third_table_mixes_imports_and_owner_changes() -> None:
    """PP CLI and DevOps columns import a solution; the GUI and PowerShell YES cells for flows change
    the owner; Power BI's rows are about publishing."""
    to_sp = OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION
    for product in (Product.CANVAS_APP, Product.MODEL_DRIVEN_APP, Product.COPILOT_STUDIO_BOT):
        kinds = {command.kind for command in commands_for(product, to_sp)}
        assert kinds == {CommandKind.IMPORT_SOLUTION}
    assert [c.tool for c in commands_for(Product.CLOUD_FLOW, to_sp, CommandKind.CHANGE_OWNER)] == [
        Tool.GUI,
        Tool.POWERSHELL,
    ]
    for change in OwnerChange:
        assert [c.kind for c in commands_for(Product.POWER_BI_DATASET, change)] == [CommandKind.PUBLISH]


# ---------------------------------------------------------------------------------------------
# Who counts: the seed's table, its bullets, and power-platform.md's table.


def test_attributed_user_logic_is_the_seeds_row_by_row() -> None:
    header, rows = parse_table(SEED_ATTRIBUTED_USER_LOGIC)
    assert header == ["Product", "Primary Metric", "Resource", "Attributed User Logic"]
    identities = {
        "The user must be an owner/co-owner": AttributedIdentity.OWNER_OR_CO_OWNER,
        "The user must be the creator": AttributedIdentity.CREATOR,
        "The user must be the publisher": AttributedIdentity.PUBLISHER,
        "Any active user": AttributedIdentity.ANY_ACTIVE_USER,
    }
    assert [SEED_LOGIC_PRODUCTS[row[0]] for row in rows] == list(SEED_LOGIC_PRODUCTS.values())
    for name, metric, resource, logic in rows:
        rule = rule_for(SEED_LOGIC_PRODUCTS[name])
        assert rule.source is Source.SEED
        assert rule.metric == metric.lower().removesuffix(" (mau)")
        assert rule.resource == resource.lower()
        (identity,) = [value for prefix, value in identities.items() if logic.startswith(prefix)]
        assert rule.attributed_identity is identity
        if "'latest' partner" in logic:
            assert rule.several_partners is SeveralPartners.LATEST_BY_ACTIVITY
        else:
            assert "only be one creator" in logic
            assert rule.several_partners is SeveralPartners.SINGLE_CREATOR


def test_who_counts_is_power_platform_md_row_by_row() -> None:
    header, rows = parse_table(DOC_WHO_COUNTS)
    assert header == ["product", "metric", "resource", "attributed identity", "several partners"]
    identities = {
        "owner or co-owner": AttributedIdentity.OWNER_OR_CO_OWNER,
        "creator": AttributedIdentity.CREATOR,
        "publisher": AttributedIdentity.PUBLISHER,
        "any active user of the instance": AttributedIdentity.ANY_ACTIVE_USER,
    }
    several = {
        "latest partner by activity": SeveralPartners.LATEST_BY_ACTIVITY,
        "latest partner": SeveralPartners.LATEST_BY_ACTIVITY,
        "one creator": SeveralPartners.SINGLE_CREATOR,
        "-": SeveralPartners.NONE,
    }
    assert {DOC_PRODUCTS[row[0]] for row in rows} == set(Product)
    for name, metric, _resource, identity, partners in rows:
        rule = rule_for(DOC_PRODUCTS[name])
        assert rule.metric == (None if metric == "-" else metric)
        assert rule.attributed_identity is identities[identity.split(" (")[0]]
        assert rule.several_partners is several[partners]


def test_the_notes_are_the_seeds_bullets() -> None:
    bullets = parse_bullets(SEED_BULLETS)
    for product in Product:
        notes = [note.rstrip(".,") for note in rule_for(product).notes]
        assert notes == [bullet.rstrip(".,") for bullet in bullets.get(product, [])], product


@pytest.mark.parametrize(
    ("product", "metric", "resource", "identity", "several", "in_solution", "owner_row", "source"),
    [
        (
            Product.CANVAS_APP,
            "monthly active users",
            "application",
            AttributedIdentity.OWNER_OR_CO_OWNER,
            SeveralPartners.LATEST_BY_ACTIVITY,
            Support.YES,
            "Power App Canvas",
            Source.SEED,
        ),
        (
            Product.MODEL_DRIVEN_APP,
            "monthly active users",
            "application",
            AttributedIdentity.CREATOR,
            SeveralPartners.LATEST_BY_ACTIVITY,
            Support.YES,
            "Power App Model Driven",
            Source.POWER_PLATFORM_DOC,
        ),
        (
            Product.CLOUD_FLOW,
            "monthly active users",
            "flow",
            AttributedIdentity.CREATOR,
            SeveralPartners.SINGLE_CREATOR,
            Support.YES,
            "Power Automate",
            Source.SEED,
        ),
        (
            Product.POWER_BI_DATASET,
            "monthly active users",
            "dataset",
            AttributedIdentity.PUBLISHER,
            SeveralPartners.LATEST_BY_ACTIVITY,
            Support.NO,
            "Power BI (Publishing)",
            Source.SEED,
        ),
        (
            Product.COPILOT_STUDIO_BOT,
            None,
            "bot",
            AttributedIdentity.CREATOR,
            SeveralPartners.NONE,
            Support.YES,
            "Power Virtual Agent",
            Source.POWER_PLATFORM_DOC,
        ),
        (
            Product.CUSTOMER_INSIGHTS_INSTANCE,
            "unified profiles",
            "instance",
            AttributedIdentity.ANY_ACTIVE_USER,
            SeveralPartners.LATEST_BY_ACTIVITY,
            Support.NOT_COVERED,
            None,
            Source.SEED,
        ),
    ],
)
def test_each_products_rule(
    product: Product,
    metric: str | None,
    resource: str,
    identity: AttributedIdentity,
    several: SeveralPartners,
    in_solution: Support,
    owner_row: str | None,
    source: Source,
) -> None:
    rule = rule_for(product)
    assert rule is RULES[product]
    assert rule.product is product
    assert rule.display_name and rule.maker_tool
    assert (rule.metric, rule.resource) == (metric, resource)
    assert rule.attributed_identity is identity
    assert rule.several_partners is several
    assert rule.solution_delivery is in_solution
    assert rule.owner_table_row == owner_row
    assert rule.source is source


def test_the_enum_values_are_stable() -> None:
    """They are API and CLI values: changing one breaks callers."""
    assert [p.value for p in Product] == [
        "canvas-app",
        "model-driven-app",
        "cloud-flow",
        "power-bi-dataset",
        "copilot-studio-bot",
        "customer-insights-instance",
    ]
    assert [i.value for i in AttributedIdentity] == [
        "owner-or-co-owner",
        "creator",
        "publisher",
        "any-active-user",
    ]
    assert [s.value for s in SeveralPartners] == ["latest-by-activity", "single-creator", "none"]
    assert [c.value for c in OwnerChange] == [
        "directly",
        "through-solution-import",
        "to-service-principal-in-solution",
    ]
    assert [t.value for t in Tool] == ["gui", "powershell", "pp-cli", "devops-build-tools"]
    assert [k.value for k in IdentityKind] == ["service-principal", "user-account"]
    assert [v.value for v in Verdict] == ["counts", "does-not-count-yet", "not-covered"]
    assert [e.value for e in Evidence] == ["verified", "inferred"]


# ---------------------------------------------------------------------------------------------
# What a service principal can do (power-platform.md, "Changing owners").


def _route(route: Route, product: Product) -> tuple[bool, Evidence, bool]:
    (found,) = [r for r in routes_for(product) if r.route is route]
    return found.possible, found.evidence, found.in_solution_only


@pytest.mark.parametrize(
    ("route", "product", "expected"),
    [
        *[
            (Route.IMPORT_SOLUTION, product, (True, Evidence.VERIFIED, True))
            for product in (
                Product.CANVAS_APP,
                Product.MODEL_DRIVEN_APP,
                Product.CLOUD_FLOW,
                Product.COPILOT_STUDIO_BOT,
            )
        ],
        *[
            (Route.REIMPORT_SOLUTION, product, (True, Evidence.INFERRED, True))
            for product in (
                Product.CANVAS_APP,
                Product.MODEL_DRIVEN_APP,
                Product.CLOUD_FLOW,
                Product.COPILOT_STUDIO_BOT,
            )
        ],
        (Route.PATCH_FLOW_OWNER, Product.CLOUD_FLOW, (True, Evidence.VERIFIED, True)),
        (Route.FLOW_CO_OWNER, Product.CLOUD_FLOW, (False, Evidence.VERIFIED, False)),
        (Route.MODIFY_APP_OWNER, Product.CANVAS_APP, (True, Evidence.INFERRED, False)),
        (Route.SHARE_APP_CO_OWNER, Product.CANVAS_APP, (False, Evidence.VERIFIED, False)),
        (Route.PATCH_RECORD_OWNER, Product.COPILOT_STUDIO_BOT, (False, Evidence.INFERRED, False)),
        (Route.PUBLISH_PBIX, Product.POWER_BI_DATASET, (True, Evidence.VERIFIED, False)),
        (Route.TAKE_OVER_DATASET, Product.POWER_BI_DATASET, (True, Evidence.VERIFIED, False)),
        (Route.ADD_INSTANCE_USER, Product.CUSTOMER_INSIGHTS_INSTANCE, (True, Evidence.INFERRED, False)),
    ],
)
def test_service_principal_routes(
    route: Route, product: Product, expected: tuple[bool, Evidence, bool]
) -> None:
    assert _route(route, product) == expected


def test_every_route_is_listed_once() -> None:
    keys = [(route.route, route.product) for route in SERVICE_PRINCIPAL_ROUTES]
    assert len(keys) == len(set(keys)) == 16


def test_model_driven_apps_and_bots_change_creator_only_by_a_solution_import() -> None:
    for product in (Product.MODEL_DRIVEN_APP, Product.COPILOT_STUDIO_BOT):
        possible = {route.route for route in routes_for(product) if route.possible}
        assert possible == {Route.IMPORT_SOLUTION, Route.REIMPORT_SOLUTION}


def test_the_service_principal_prerequisites_cover_every_product() -> None:
    assert set(SERVICE_PRINCIPAL_PREREQUISITES) == set(Product)
    assert any(
        "pac admin application register" in step
        for step in SERVICE_PRINCIPAL_PREREQUISITES[Product.CANVAS_APP]
    )


# ---------------------------------------------------------------------------------------------
# The advisor.

SP, USER = IdentityKind.SERVICE_PRINCIPAL, IdentityKind.USER_ACCOUNT
COUNTS, NOT_YET, NOT_COVERED = Verdict.COUNTS, Verdict.DOES_NOT_COUNT_YET, Verdict.NOT_COVERED

# product: verdict for (user, in a solution), (user, outside), (SP, in a solution), (SP, outside)
VERDICTS = {
    Product.CANVAS_APP: (COUNTS, COUNTS, COUNTS, NOT_YET),
    Product.MODEL_DRIVEN_APP: (COUNTS, COUNTS, COUNTS, NOT_YET),
    Product.CLOUD_FLOW: (COUNTS, COUNTS, COUNTS, NOT_YET),
    Product.POWER_BI_DATASET: (NOT_YET, COUNTS, NOT_YET, COUNTS),
    Product.COPILOT_STUDIO_BOT: (COUNTS, COUNTS, COUNTS, NOT_YET),
    Product.CUSTOMER_INSIGHTS_INSTANCE: (NOT_COVERED, NOT_COVERED, NOT_COVERED, NOT_COVERED),
}
CASES = [
    (product, kind, in_solution, verdicts[index])
    for product, verdicts in VERDICTS.items()
    for index, (kind, in_solution) in enumerate([(USER, True), (USER, False), (SP, True), (SP, False)])
]

# A step names its tool: a command, a portal or an API call.
TOOL_MARKERS = (
    "pac ",
    "PowerShell",
    "Power Apps maker portal",
    "Power Apps Studio",
    "Power Automate portal",
    "Build Tools",
    "Dataverse",
    "POST ",
    "PATCH ",
    "Power BI Desktop",
    "Power BI admin portal",
    "Power BI workspace",
    "Copilot Studio",
    "Customer Insights (the instance",
    "Customer Insights instance",
)


@pytest.mark.parametrize(("product", "kind", "in_solution", "verdict"), CASES)
def test_the_advice_for_every_question(
    product: Product, kind: IdentityKind, in_solution: bool, verdict: Verdict
) -> None:
    advice = advise(product, kind, in_solution)
    assert advice.verdict is verdict
    assert advice.rule is rule_for(product)
    assert (advice.delivered_by, advice.in_solution) == (kind, in_solution)
    assert who_counts(product) in advice.reason
    assert advice.steps
    for step in advice.steps:
        assert any(marker in step for marker in TOOL_MARKERS), step
    _assert_inferred_routes_say_so(advice)
    if kind is SP:
        assert (
            advice.steps[: len(SERVICE_PRINCIPAL_PREREQUISITES[product])]
            == SERVICE_PRINCIPAL_PREREQUISITES[product]
        )
    else:
        assert not any("service principal" in step for step in advice.steps)


def _assert_inferred_routes_say_so(advice: Advice) -> None:
    """Where power-platform.md only infers, the step or caution says so; what it says cannot be
    done is never a step."""
    for route in routes_for(advice.rule.product):
        mentions = [text for text in advice.steps if route.goal in text]
        if not route.possible:
            assert not mentions, route.route
        elif route.evidence is Evidence.INFERRED:
            assert all(text.startswith("Inferred, behind a switch: ") for text in mentions), route.route


@pytest.mark.parametrize("product", [p for p, v in VERDICTS.items() if v[2] is COUNTS])
def test_a_service_principal_imports_the_solution_it_is_credited_for(product: Product) -> None:
    (step,) = [
        step for step in advise(product, SP, True).steps if step.startswith("Import the managed solution")
    ]
    assert "pac solution import" in step and "Build Tools" in step and "ImportSolutionAsync" in step
    # The seed's third table says NO for GUI and PowerShell imports by a service principal.
    assert "maker portal" not in step and "Import-CrmSolution" not in step


def test_the_example_question_a_canvas_app_by_a_service_principal_outside_a_solution() -> None:
    advice = advise(Product.CANVAS_APP, SP, in_solution=False)

    assert advice.rule.attributed_identity is AttributedIdentity.OWNER_OR_CO_OWNER
    assert advice.verdict is Verdict.DOES_NOT_COUNT_YET
    assert "owner or co-owner" in advice.reason
    prerequisites, (deliver, reimport, modify_owner) = advice.steps[:2], advice.steps[2:]
    assert prerequisites == SERVICE_PRINCIPAL_PREREQUISITES[Product.CANVAS_APP]
    # The seed's way: a managed solution imported by the service principal (its third table: PP CLI, DevOps).
    assert deliver.startswith("Deliver it in a managed solution instead")
    assert "pac solution import (PP CLI)" in deliver and "Build Tools" in deliver
    assert "ImportSolutionAsync" in deliver and "(verified)" in deliver
    # Re-importing to take over what is already there: only inferred.
    assert reimport.startswith("Inferred, behind a switch: import the solution again")
    # modifyAppOwner to a service principal: inferred, and the seed says NO for PowerShell.
    assert modify_owner.startswith("Inferred, behind a switch: ")
    assert "modifyAppOwner" in modify_owner and "Set-AdminPowerAppOwner" in modify_owner
    assert "says NO for PowerShell" in modify_owner
    # A service principal cannot be made co-owner by sharing.
    (sharing,) = advice.cautions
    assert sharing.startswith("Not possible: ") and "modifyPermissions" in sharing
    assert "User, Group or Tenant" in sharing


def test_a_flow_never_gets_set_admin_flow_owner_role_for_a_service_principal() -> None:
    """The seed's third table says YES for PowerShell; power-platform.md: a service principal cannot be
    a co-owner of a flow (verified). The step leaves it out and a caution quotes both."""
    for in_solution in (True, False):
        advice = advise(Product.CLOUD_FLOW, SP, in_solution)
        assert not any("Set-AdminFlowOwnerRole" in step for step in advice.steps)
        (co_owner,) = [c for c in advice.cautions if "Set-AdminFlowOwnerRole" in c]
        assert co_owner.startswith("Not possible: ") and "says YES for PowerShell" in co_owner
        (patch,) = [step for step in advice.steps if "workflows({id})" in step]
        assert "(verified)" in patch and "Process licence" in patch
        assert any("moves the credit is inferred" in caution for caution in advice.cautions)


def test_a_user_account_changes_a_flows_owner_directly() -> None:
    advice = advise(Product.CLOUD_FLOW, USER, in_solution=False)
    (change,) = [step for step in advice.steps if step.startswith("If another identity made it")]
    assert "Set-AdminFlowOwnerRole" in change and "YES for GUI, PowerShell" in change


@pytest.mark.parametrize("product", [Product.MODEL_DRIVEN_APP, Product.COPILOT_STUDIO_BOT])
def test_no_direct_owner_change_for_model_driven_apps_and_bots(product: Product) -> None:
    for kind in IdentityKind:
        advice = advise(product, kind, in_solution=False)
        assert not any(step.startswith("If another identity made it") for step in advice.steps)
        assert any("only a solution import changes its creator" in caution for caution in advice.cautions)


def test_power_bi_is_published_not_imported() -> None:
    for kind in IdentityKind:
        advice = advise(Product.POWER_BI_DATASET, kind, in_solution=True)
        assert "is not delivered in a solution" in advice.reason
        assert not any("pac solution import" in step for step in advice.steps)
        assert any(step.startswith("Deliver it outside a solution instead. Publish") for step in advice.steps)
    by_sp = advise(Product.POWER_BI_DATASET, SP, in_solution=False)
    assert any("/imports?" in step and "(verified)" in step for step in by_sp.steps)
    assert any("Default.TakeOver" in step for step in by_sp.steps)
    by_user = advise(Product.POWER_BI_DATASET, USER, in_solution=False)
    assert any("Power BI Desktop (Publish)" in step for step in by_user.steps)


def test_customer_insights_is_not_covered_and_says_why() -> None:
    for kind in IdentityKind:
        for in_solution in (True, False):
            advice = advise(Product.CUSTOMER_INSIGHTS_INSTANCE, kind, in_solution)
            assert "no row for" in advice.reason and "active user" in advice.reason
    (step,) = advise(Product.CUSTOMER_INSIGHTS_INSTANCE, SP, in_solution=False).steps
    assert step.startswith("Inferred, behind a switch: ") and "subscription key" in step


def test_who_counts_is_one_sentence_per_product() -> None:
    for product in Product:
        sentence = who_counts(product)
        assert sentence.startswith(f"For a {rule_for(product).display_name}, the PAL-linked identity ")
        assert sentence.endswith(".") and sentence.count(". ") == 0
    assert "must be an owner or co-owner of the application" in who_counts(Product.CANVAS_APP)
    assert "must be the publisher of the dataset" in who_counts(Product.POWER_BI_DATASET)


# ---------------------------------------------------------------------------------------------
# The documents.

RULE_KEYS = {
    "product",
    "displayName",
    "metric",
    "resource",
    "attributedIdentity",
    "severalPartners",
    "solutionDelivery",
    "makerTool",
    "ownerTableRow",
    "notes",
    "source",
    "whoCounts",
}


def test_rules_document_is_json_and_stable() -> None:
    document = rules_document()
    assert json.loads(json.dumps(document)) == document
    assert rules_document() == document
    assert list(document) == [
        "version",
        "tools",
        "products",
        "ownerTables",
        "servicePrincipalRoutes",
        "servicePrincipalPrerequisites",
        "evidence",
        "sources",
    ]
    assert document["version"] == 1
    products = document["products"]
    assert isinstance(products, list)
    assert [p["product"] for p in products if isinstance(p, dict)] == [p.value for p in Product]
    assert all(isinstance(p, dict) and set(p) == RULE_KEYS for p in products)


def test_rules_document_owner_tables() -> None:
    tables = rules_document()["ownerTables"]
    assert isinstance(tables, list)
    assert [t["change"] for t in tables if isinstance(t, dict)] == [c.value for c in OwnerChange]
    for table in tables:
        assert isinstance(table, dict) and set(table) == {"change", "question", "rows"}
        rows = table["rows"]
        assert isinstance(rows, list) and len(rows) == len(Product)
        for row in rows:
            assert isinstance(row, dict) and set(row) == {"product", "seedRow", "covered", "cells"}
            cells = row["cells"]
            assert isinstance(cells, list)
            if row["product"] == Product.CUSTOMER_INSIGHTS_INSTANCE:
                assert (row["covered"], cells) == (False, [])
                continue
            assert [c["tool"] for c in cells if isinstance(c, dict)] == [t.value for t in TOOL_COLUMNS]
            for cell in cells:
                assert isinstance(cell, dict) and set(cell) == {"tool", "allowed", "command", "commandKind"}
                key = (
                    Product(str(row["product"])),
                    OwnerChange(str(table["change"])),
                    Tool(str(cell["tool"])),
                )
                assert cell["allowed"] is OWNER_CHANGES[key]
                assert (cell["command"] is None) is (not OWNER_CHANGES[key])


def test_rules_document_routes() -> None:
    routes = rules_document()["servicePrincipalRoutes"]
    assert isinstance(routes, list) and len(routes) == len(SERVICE_PRINCIPAL_ROUTES)
    keys = {
        "route",
        "product",
        "goal",
        "call",
        "possible",
        "evidence",
        "delivers",
        "inSolutionOnly",
        "seedTool",
        "notes",
    }
    assert all(isinstance(route, dict) and set(route) == keys for route in routes)


@pytest.mark.parametrize(("product", "kind", "in_solution", "verdict"), CASES)
def test_advice_document_is_json(
    product: Product, kind: IdentityKind, in_solution: bool, verdict: Verdict
) -> None:
    document = advice_document(advise(product, kind, in_solution))
    assert json.loads(json.dumps(document)) == document
    assert list(document) == [
        "product",
        "deliveredBy",
        "inSolution",
        "verdict",
        "reason",
        "steps",
        "cautions",
        "rule",
    ]
    assert (document["product"], document["deliveredBy"], document["inSolution"], document["verdict"]) == (
        product.value,
        kind.value,
        in_solution,
        verdict.value,
    )
    rule = document["rule"]
    assert isinstance(rule, dict) and set(rule) == RULE_KEYS
