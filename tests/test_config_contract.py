"""The configuration contract between the code and its deployments.

- Every setting the code reads (shared/spine/settings.py, shared/delivery/settings.py,
  shared/dashboard/auth.py, %SETTING% binding expressions) is set by infra/
  as an app setting, or is local-only, or keeps the code's default; the last two are named in
  infra/app/function.bicep's comments. Every one is in local.settings.json.example with a comment.
- Queue and table names agree across the code's defaults, the local broker's queues, host.json and
  infra/, and so do the queues' lock duration, max delivery count and duplicate-detection window.
- HTTP functions use function-level or stricter auth.
- No template, parameter file or app setting holds a connection string, key, SAS or secret.

New settings are discovered, not listed here: adding one to shared/spine/settings.py without deciding how
Azure gets it fails this test.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from test_infra import INFRA, ROOT, UNKNOWN, BicepFile, module_file, properties, text

from sandbox.functions_host import indexed_functions
from shared.links.message import find_credentials
from shared.spine.retry import RetryPolicy

EXAMPLE = ROOT / "local.settings.json.example"
FUNCTION_BICEP = "app/function.bicep"

_BINDING_EXPRESSION = re.compile(r"%([A-Za-z][A-Za-z0-9_]*)%")

# The Functions host's own settings that Azure must have and the code never reads.
HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
}
# Not a secret: it names the Application Insights resource, whose local (key) auth is disabled;
# uploads are signed with the managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
NAMED_LIKE_A_CONNECTION_STRING_BUT_NOT_SECRET = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
# Settings that would hold a connection string (a key or SAS inside) if set in Azure.
CONNECTION_STRING_SETTINGS = {
    "AzureWebJobsStorage",
    "LedgerStorage",
    "DeliveryStorage",
    "ServiceBusConnection",
}


@cache
def code_settings() -> dict[str, str | None]:
    """Setting name -> the code's default as the setting's text (None: no default), read from every
    self._<reader>("NAME", default, ...) call in shared/spine/settings.py, shared/delivery/settings.py
    and shared/dashboard/auth.py (the same reader): _get, _required, _int, _bool,
    _https_url and any reader added later. Defaults are evaluated in the module, so expressions
    such as 64 * 1024 or OnOtherPartner.UPDATE.value give their values."""
    import shared.dashboard.auth
    import shared.delivery.settings
    import shared.spine.settings

    found: dict[str, str | None] = {}
    for module in (shared.spine.settings, shared.delivery.settings, shared.dashboard.auth):
        found |= _settings_read_by(module)
    return found


def _settings_read_by(module: Any) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            continue
        default = None
        if node.func.attr != "_required" and len(node.args) > 1:
            value = eval(compile(ast.Expression(node.args[1]), module.__file__, "eval"), vars(module))
            default = str(value).lower() if isinstance(value, bool) else str(value)
        found[node.args[0].value] = default
    return found


@cache
def indexed() -> list[dict[str, Any]]:
    import function_app

    return [
        {"name": function.get_function_name(), **json.loads(function.get_function_json())}
        for function in indexed_functions(function_app.app)
    ]


def bindings() -> list[dict[str, Any]]:
    return [binding for function in indexed() for binding in function["bindings"]]


def binding_expressions() -> set[str]:
    """%NAME% in the indexed bindings, and in the trigger modules' source (for functions still being
    written)."""
    names = {
        name
        for binding in bindings()
        for value in binding.values()
        if isinstance(value, str)
        for name in _BINDING_EXPRESSION.findall(value)
    }
    for path in [ROOT / "function_app.py", *sorted((ROOT / "functions").glob("*.py"))]:
        names |= set(_BINDING_EXPRESSION.findall(path.read_text()))
    return names


def connections() -> set[str]:
    return {binding["connection"] for binding in bindings() if "connection" in binding}


@cache
def function_bicep() -> BicepFile:
    return module_file(FUNCTION_BICEP)


def app_setting_nodes() -> dict[str, Any]:
    """The Function App's app settings in function.bicep: name -> the value's syntax node."""
    function = function_bicep()
    configs = [
        declaration
        for declaration in function.resources("config") + function.resources("Microsoft.Web/sites/config@")
        if function.evaluate(properties(declaration.body).get("name")) == "appsettings"
    ]
    assert len(configs) == 1, f"{FUNCTION_BICEP}: expected one appsettings config resource"
    return properties(properties(configs[0].body)["properties"])


@cache
def app_settings() -> dict[str, Any]:
    """The app settings' values, evaluated where main.bicep makes them literal (else UNKNOWN)."""
    return {name: function_bicep().evaluate(value) for name, value in app_setting_nodes().items()}


def app_setting_expressions() -> dict[str, str]:
    """The app settings as written (the expression text of each value)."""
    return {name: text(value) for name, value in app_setting_nodes().items()}


def commented(tag: str) -> set[str]:
    """Names in function.bicep comments like `// default: NAME (why)` or `// local-only: NAME`."""
    pattern = re.compile(rf"^//\s*{re.escape(tag)}:\s*([A-Za-z][A-Za-z0-9_]*)")
    return {match.group(1) for comment in function_bicep().comments() if (match := pattern.match(comment))}


@cache
def example() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return loaded


def everything_the_code_reads() -> set[str]:
    return set(code_settings()) | binding_expressions()


# --- discovery works --------------------------------------------------------------------------


def test_the_settings_are_discovered_from_the_code() -> None:
    settings = code_settings()
    assert {"PARTNER_ID", "ONBOARDING_QUEUE", "LEDGER_TABLE", "LedgerStorage__tableServiceUri"} <= set(
        settings
    )
    assert settings["PARTNER_ID"] is None  # required
    # The dashboard's sign-in, read through the same reader (shared/dashboard/auth.py).
    assert {"DASHBOARD_TENANT_ID", "DASHBOARD_CLIENT_ID", "DASHBOARD_AUDIENCE"} <= set(settings)
    assert settings["DASHBOARD_CLIENT_ID"] is None and settings["DASHBOARD_AUDIENCE"] == ""
    assert settings["ONBOARDING_QUEUE"] == "customer-onboarded"
    assert settings["LEDGER_TABLE"] == "PalLinks"
    assert "ONBOARDING_QUEUE" in binding_expressions()
    assert connections() == {"ServiceBusConnection"}


# --- every setting has a home -----------------------------------------------------------------


def test_every_setting_the_code_reads_is_set_by_infra_or_explained() -> None:
    set_by_infra = set(app_settings())
    defaults, local_only = commented("default"), commented("local-only")
    unaccounted = everything_the_code_reads() - set_by_infra - defaults - local_only
    assert not unaccounted, (
        f"settings the code reads that infra neither sets nor explains: {sorted(unaccounted)}. Set them in "
        f"infra/{FUNCTION_BICEP}, or name them there in a `// default: NAME (why)` or "
        "`// local-only: NAME (why)` comment."
    )
    assert not (defaults | local_only) - everything_the_code_reads(), (
        "a comment names a setting the code no longer reads"
    )
    assert not set_by_infra & (defaults | local_only), "a setting is both set and explained as not set"


def test_the_custom_endpoint_override_never_reaches_azure() -> None:
    # ALLOW_CUSTOM_ENDPOINTS lets an endpoint outside the known clouds receive tokens; only the local
    # sandbox may set it, never infra, and the committed example leaves it off.
    assert "ALLOW_CUSTOM_ENDPOINTS" in code_settings()
    assert {"ALLOW_CUSTOM_ENDPOINTS", "ARM_AUDIENCE"} <= commented("local-only")
    assert not {"ALLOW_CUSTOM_ENDPOINTS", "ARM_AUDIENCE"} & set(app_settings())
    values = example()["Values"]
    assert values.get("ALLOW_CUSTOM_ENDPOINTS", "") in {"", "false"}
    assert values.get("ARM_AUDIENCE", "") == ""


def test_endpoints_and_audience_come_from_the_deployments_cloud() -> None:
    expressions = app_setting_expressions()
    assert expressions["AZURE_AUTHORITY_HOST"] == "environment().authentication.loginEndpoint"
    assert expressions["ARM_ENDPOINT"] == "environment().resourceManager"
    # The audience main.bicep derives per cloud (the same value the federated credential carries).
    assert expressions["FEDERATED_TOKEN_AUDIENCE"] == "federatedTokenAudience"


def test_only_settings_with_a_code_default_are_left_to_it() -> None:
    settings = code_settings()
    without_default = {name for name in commented("default") if settings.get(name) is None}
    assert not without_default, (
        f"these have no default in shared/spine/settings.py: {sorted(without_default)}"
    )


def test_required_settings_and_binding_expressions_are_set_in_azure() -> None:
    # The host resolves %NAME% from app settings only: the code's default does not reach it.
    required = {name for name, default in code_settings().items() if default is None} - commented(
        "local-only"
    )
    missing = (required | binding_expressions()) - set(app_settings())
    assert not missing, f"infra must set: {sorted(missing)}"


def test_every_connection_is_identity_based_in_azure() -> None:
    settings = app_settings()
    for connection in connections() | {"AzureWebJobsStorage"}:
        assert connection not in settings, f"{connection} would be a connection string"
        assert settings.get(f"{connection}__credential") == "managedidentity", connection
        assert f"{connection}__clientId" in settings, connection
        assert {f"{connection}__fullyQualifiedNamespace", f"{connection}__accountName"} & set(settings), (
            connection
        )
    assert "LedgerStorage__tableServiceUri" in settings and "LedgerStorage" not in settings
    # One identity for all of them: the one the code's ManagedIdentityCredential picks (AZURE_CLIENT_ID).
    expressions = app_setting_expressions()
    for connection in connections() | {"AzureWebJobsStorage"}:
        assert expressions[f"{connection}__clientId"] == expressions["AZURE_CLIENT_ID"], connection


def test_flex_consumption_app_settings_are_allowed_there() -> None:
    settings = app_settings()
    # Flex Consumption takes the runtime from functionAppConfig and refuses these.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"} & set(
        settings
    )
    unexpected = (
        set(settings)
        - everything_the_code_reads()
        - HOST_SETTINGS
        - {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
        - {f"{connection}__{part}" for connection in connections() for part in ("credential", "clientId")}
    )
    assert not unexpected, f"app settings nothing reads: {sorted(unexpected)}"


# --- local.settings.json.example --------------------------------------------------------------


def test_example_is_a_settings_file_the_functions_host_accepts() -> None:
    document = example()
    assert document["IsEncrypted"] is False
    values = document["Values"]
    assert all(isinstance(value, str) for value in values.values()), "Values must all be strings"
    assert not [key for key in values if key.startswith(("//", "#", "_"))], "no comment keys inside Values"
    assert set(document) <= {"IsEncrypted", "Values", "Host", "ConnectionStrings", "Comments"}


def test_example_lists_and_comments_every_setting() -> None:
    values, comments = example()["Values"], example()["Comments"]
    names = everything_the_code_reads()
    undocumented = names - set(comments)
    assert not undocumented, f"local.settings.json.example has no comment for {sorted(undocumented)}"
    # Only local-only settings may stay out of Values (connection strings have no place in a
    # committed file); they are still explained in Comments.
    absent = names - set(values)
    assert absent <= commented("local-only"), (
        f"missing from Values: {sorted(absent - commented('local-only'))}"
    )
    assert set(values) <= set(comments), f"no comment for {sorted(set(values) - set(comments))}"
    assert all(isinstance(comment, str) and len(comment) > 20 for comment in comments.values())


def test_example_defaults_are_the_code_defaults() -> None:
    values = example()["Values"]
    for name, default in code_settings().items():
        if values.get(name):
            assert default is not None and values[name] == default, (
                f"{name}: the example says {values[name]!r}, the code's default is {default!r}"
            )


def test_example_sets_every_binding_expression() -> None:
    # The host cannot start a trigger whose %NAME% is not defined, whatever the code's default.
    values = example()["Values"]
    assert all(values.get(name) for name in binding_expressions())


# --- names agree everywhere -------------------------------------------------------------------


def broker_queues() -> dict[str, dict[str, Any]]:
    queues = json.loads((ROOT / "sandbox" / "broker" / "queues.json").read_text())
    return {queue["name"]: queue for queue in queues}


def infra_queues() -> dict[str, dict[str, Any]]:
    service_bus = module_file("app/servicebus.bicep")
    found = {}
    for queue in service_bus.resources("Microsoft.ServiceBus/namespaces/queues@"):
        body = service_bus.evaluate(queue.body)
        assert body["name"] is not UNKNOWN, f"queue {queue.symbol}: its name must be known before deployment"
        found[body["name"]] = body["properties"]
    return found


def iso_seconds(duration: str) -> int:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", duration)
    assert match and duration not in {"P", "PT"}, f"not an ISO 8601 duration: {duration}"
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def code_queue_defaults() -> dict[str, str]:
    return {name: default for name, default in code_settings().items() if name.endswith("_QUEUE") and default}


def test_queue_names_agree_across_code_broker_host_json_and_infra() -> None:
    code = code_queue_defaults()
    assert code, "no *_QUEUE setting with a default found in shared/spine/settings.py"
    in_infra, in_broker = set(infra_queues()), set(broker_queues())
    assert in_infra == in_broker, f"infra has {sorted(in_infra)}, the local broker {sorted(in_broker)}"
    assert set(code.values()) <= in_infra, (
        f"code defaults {sorted(code.values())} vs queues {sorted(in_infra)}"
    )
    settings = app_settings()
    for name, default in code.items():
        if name in settings:
            assert settings[name] == default, f"{name}: Azure uses {settings[name]!r}, the code {default!r}"
    # host.json names no queue (bindings use %SETTING%); if it ever does, it must be one of these.
    host_text = (ROOT / "host.json").read_text()
    for named in re.findall(r"\"(?:queueName|queue)\"\s*:\s*\"([^\"]+)\"", host_text):
        assert named in in_infra, f"host.json names queue {named}"


def test_every_queue_a_trigger_listens_on_exists() -> None:
    code, settings = code_settings(), app_settings()
    for binding in bindings():
        if binding["type"] != "serviceBusTrigger":
            continue
        # A trigger on a queue's dead-letter queue names the queue, then the sub-queue.
        queue_name = binding["queueName"].removesuffix("/$DeadLetterQueue")
        expression = _BINDING_EXPRESSION.fullmatch(queue_name)
        assert expression, f"{queue_name}: use a %SETTING% so the name is configuration"
        name = expression.group(1)
        value = settings.get(name, code.get(name))
        assert value in infra_queues(), f"%{name}% resolves to {value!r}, not a queue of the namespace"
        assert value in broker_queues(), f"%{name}% resolves to {value!r}, not a queue of the local broker"


def test_queue_settings_match_the_local_broker() -> None:
    broker = broker_queues()
    for name, azure in infra_queues().items():
        local = broker[name]
        assert iso_seconds(azure["lockDuration"]) == local["lockDurationSeconds"], name
        assert azure["maxDeliveryCount"] == local["maxDeliveryCount"], name
        assert azure["requiresDuplicateDetection"] is local["requiresDuplicateDetection"] is True, name
        window = iso_seconds(azure["duplicateDetectionHistoryTimeWindow"])
        assert window == local["duplicateDetectionWindowSeconds"], name


def test_verify_queue_remembers_a_whole_day() -> None:
    # A nightly run is de-duplicated on (link, date): the window must span at least a day.
    verify = infra_queues()["link-verify"]
    assert iso_seconds(verify["duplicateDetectionHistoryTimeWindow"]) >= 86400


class _Highest:
    """Stands in for random: every jittered delay at its maximum."""

    def uniform(self, low: float, high: float) -> float:
        return high


def test_onboarding_retries_fit_in_the_duplicate_detection_window() -> None:
    # While a message is still being retried, a second copy with the same MessageId (the CRM or a
    # CSV sending it again) must be dropped. Credential-broken pauses can extend this; they are rare.
    code = code_settings()
    policy = RetryPolicy(
        max_attempts=int(code["MAX_ATTEMPTS"] or 0),
        base_seconds=float(code["RETRY_BASE_SECONDS"] or 0),
        max_seconds=float(code["RETRY_MAX_SECONDS"] or 0),
        credential_pause_seconds=float(code["CREDENTIAL_BROKEN_PAUSE_SECONDS"] or 0),
    )
    horizon = sum(
        policy.backoff_seconds(attempt, None, rng=_Highest()) for attempt in range(1, policy.max_attempts)
    )
    onboarding = infra_queues()[code["ONBOARDING_QUEUE"] or ""]
    assert horizon <= iso_seconds(onboarding["duplicateDetectionHistoryTimeWindow"])


def test_table_name_agrees_across_code_and_infra() -> None:
    default = code_settings()["LEDGER_TABLE"]
    storage = module_file("app/storage.bicep")
    tables = [storage.evaluate(properties(table.body)["name"]) for table in storage.resources("tables")]
    assert tables == [default]
    assert app_settings()["LEDGER_TABLE"] == default
    assert example()["Values"]["LEDGER_TABLE"] == default


# --- HTTP auth --------------------------------------------------------------------------------


# People sign in to the dashboard with Entra ID, not with function keys: its functions are anonymous at
# the host and check an Entra ID bearer token themselves (shared/dashboard/auth.py; tests/test_dashboard.py
# proves every data route refuses a request without a valid token). No other function may be anonymous.
SIGNED_IN_WITH_ENTRA_ID = {
    "dashboard_page",
    "dashboard_static",
    "dashboard_me",
    "dashboard_summary",
    "dashboard_links",
    "dashboard_customer",
    "dashboard_relink",
    "dashboard_trends",
    "dashboard_attribution_fleet",
    "dashboard_live",
    "dashboard_attribution",
    "dashboard_audit",
    "dashboard_offboard",
}


def test_http_functions_require_a_function_key_or_stricter() -> None:
    for function in indexed():
        for binding in function["bindings"]:
            if binding["type"] == "httpTrigger":
                level = str(binding.get("authLevel", "function")).lower()
                allowed = {"function", "admin"} | (
                    {"anonymous"} if function["name"] in SIGNED_IN_WITH_ENTRA_ID else set()
                )
                assert level in allowed, f"{function['name']}: authLevel {level}"


# --- no secrets -------------------------------------------------------------------------------

# Ways a template can pull a secret into a deployment, and secret-shaped literals.
_SECRET_SOURCES = re.compile(
    r"\blist\w*(?:Keys|ConnectionStrings|Secrets|AccountSas|ServiceSas)\s*\("
    r"|@secure\(\)"
    r"|\b(?:passwordCredentials|keyCredentials|addPassword)\b"
    r"|(?:AccountKey|SharedAccessKey|SharedAccessSignature|InstrumentationKey)\s*="
    r"|DefaultEndpointsProtocol\s*="
    r"|Endpoint=sb://"
    r"|[?&]sig=",
    re.IGNORECASE,
)


def deployment_files() -> list[Path]:
    files = [path for path in sorted(INFRA.rglob("*")) if path.is_file()]
    return [*files, ROOT / "azure.yaml", ROOT / "host.json", EXAMPLE, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", deployment_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_no_secret_in_templates_parameters_or_docs(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        assert not _SECRET_SOURCES.search(line), where
        assert not find_credentials({"line": line}), where


def test_no_app_setting_holds_a_connection_string_or_secret() -> None:
    for name, value in app_settings().items():
        if name in NAMED_LIKE_A_CONNECTION_STRING_BUT_NOT_SECRET:
            continue
        assert name not in CONNECTION_STRING_SETTINGS, name
        assert not re.search(r"connection.?string|password|secret|(?<!__)key$", name, re.IGNORECASE), name
        if isinstance(value, str):
            assert not find_credentials({"value": value}), name
            assert not _SECRET_SOURCES.search(value), name


def test_no_parameter_carries_a_secret() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert not find_credentials({name: entry.get("value") for name, entry in parameters.items()})
    for path in sorted(INFRA.rglob("*.bicep")):
        bicep = BicepFile(path)
        for name in bicep.params:
            assert not re.search(r"secret|password|key$|connectionstring|sas", name, re.IGNORECASE), (
                f"{bicep.name}: parameter {name}"
            )


def test_example_holds_no_connection_string_or_secret() -> None:
    values = example()["Values"]
    for name, value in values.items():
        assert not find_credentials({"value": value}), name
        assert not _SECRET_SOURCES.search(value), name
    assert not (CONNECTION_STRING_SETTINGS - {"AzureWebJobsStorage"}) & set(values)
    # The one connection-string-shaped value allowed: Azurite's well-known shortcut, which holds no key.
    assert values.get("AzureWebJobsStorage", "UseDevelopmentStorage=true") == "UseDevelopmentStorage=true"
