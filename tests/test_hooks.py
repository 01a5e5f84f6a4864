"""The azd hooks in azure.yaml, run as azd runs them: with the azd environment (the outputs of
infra/main.bicep) as variables, and a PATH of our choosing, so that `az` and `azd` are fakes that
record their calls (or are absent) and `sleep` does not sleep.

- postprovision: in the default path (Bicep created the partner app and its federated credential)
  it only checks, from the outputs, and never blocks the code deploy for want of `az`; for an
  existing app it needs `az`, signed in to the deployment's tenant, and stops clearly otherwise. It
  prints a consent command with a redirect URI only where the template registered one.
- predeploy / postdeploy: the first deploy for an identity waits, bounded, for its Storage role.
- Every hook has a Windows (PowerShell) twin, so Windows users need no Git Bash. PowerShell is not
  installed here: the twins run under the same tests where `pwsh` is on PATH, and are otherwise
  checked to make the same calls with the same variables.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "infra" / "scripts"
HOOKS = ("postprovision", "predeploy", "postdeploy")

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0d8ec3a2-5a4c-4a7a-9b6e-3c1f2e4d5a6b"
PRINCIPAL = "8c2f4b1e-3d5a-4e6f-9a7b-1c2d3e4f5a6b"
OTHER_PRINCIPAL = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
FUNCTION_URL = "https://func-abc123.azurewebsites.net"

BASH = shutil.which("bash")
PWSH = shutil.which("pwsh")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def azure_yaml() -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


# --- azure.yaml --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_posix_and_a_windows_variant(name: str) -> None:
    hooks = azure_yaml()["hooks"]
    assert isinstance(hooks, dict)
    hook = hooks[name]
    assert set(hook) == {"posix", "windows"}, f"{name}: only OS variants, so neither runs everywhere"
    posix, windows = hook["posix"], hook["windows"]
    assert posix["shell"] == "sh" and posix["run"] == f"infra/scripts/{name}.sh"
    assert windows["shell"] == "pwsh" and windows["run"] == f"infra/scripts/{name}.ps1"
    for variant in (posix, windows):
        script = ROOT / variant["run"]
        assert script.is_file(), script
        assert variant.get("continueOnError", False) is False
        # Shown on the console: the next steps, warnings and the wait are for the person running azd.
        assert variant.get("interactive") is True
    assert (ROOT / posix["run"]).stat().st_mode & 0o111, "azd runs the sh hook directly on POSIX"


def test_azd_is_required_in_a_version_that_can_deploy_this() -> None:
    # 1.17.0 bundles Bicep 0.36.1, the first the Microsoft Graph extension works with; 1.18.0 is the
    # first that applies .funcignore to a Function App package (before, .env and the sandbox's
    # state would be uploaded).
    required = azure_yaml()["requiredVersions"]
    assert isinstance(required, dict)
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", str(required["azd"]))
    assert match, required
    assert tuple(int(part) for part in match.groups()) >= (1, 18, 0)


# --- running a hook ------------------------------------------------------------------------------

FAKE_AZ = """\
#!{bash}
# A stand-in for the Azure CLI: records its arguments (with the content of an @file argument) and
# answers from FAKE_AZ_* variables.
line="$*"
for arg in "$@"; do
  case "$arg" in @*) if [ -f "${{arg#@}}" ]; then line="$line $(cat "${{arg#@}}")"; fi ;; esac
done
printf '%s\\n' "$line" >> "$FAKE_LOG"
case "$*" in
  "account show"*)
    if [ -n "${{FAKE_AZ_SIGNED_OUT:-}}" ]; then
      echo "ERROR: Please run 'az login' to setup account." >&2
      exit 1
    fi
    printf '%s\\n' "$FAKE_AZ_TENANT" ;;
  "ad app federated-credential list"*"length(@)"*)
    printf '%s\\n' "${{FAKE_AZ_BY_NAME:-0}}" ;;
  "ad app federated-credential list"*)
    printf '%s\\n' "${{FAKE_AZ_SUBJECTS:-}}" ;;
  *) ;;
esac
"""

FAKE_RECORDER = """\
#!{bash}
printf '%s %s\\n' "{name}" "$*" >> "$FAKE_LOG"
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def az(self, prefix: str) -> list[str]:
        return [call for call in self.calls if call.startswith(prefix)]


Runner = Callable[..., Run]


def outputs(**overrides: str | None) -> dict[str, str]:
    """The azd environment after `azd provision` in the default path (Bicep created the app)."""
    values: dict[str, str | None] = {
        "AZURE_ENV_NAME": "pal-test",
        "AZURE_TENANT_ID": TENANT,
        "FUNCTION_IDENTITY_PRINCIPAL_ID": PRINCIPAL,
        "FEDERATED_TOKEN_AUDIENCE": "api://AzureADTokenExchange",
        "PARTNER_APP_CLIENT_ID": APP,
        "PARTNER_APP_SOURCE": "template",
        "PARTNER_APP_FEDERATED_SUBJECT": PRINCIPAL,
        "PARTNER_APP_FEDERATED_ISSUER": ISSUER,
        "PARTNER_APP_CONSENT_REDIRECT_URI": FUNCTION_URL,
        "PAL_SERVICEBUS_NAMESPACE": "sb-abc123.servicebus.windows.net",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def existing_app(**overrides: str | None) -> dict[str, str]:
    """The same for a reused app (EXISTING_PARTNER_APP_CLIENT_ID): the template registered nothing."""
    reused: dict[str, str | None] = {
        "EXISTING_PARTNER_APP_CLIENT_ID": APP,
        "PARTNER_APP_SOURCE": "existing",
        "PARTNER_APP_FEDERATED_SUBJECT": "",
        "PARTNER_APP_CONSENT_REDIRECT_URI": "",
    }
    return outputs(**(reused | overrides))


def _bin(tmp_path: Path, fakes: set[str]) -> Path:
    """A PATH of its own: the basic tools the scripts use, and the fakes asked for (nothing else, so
    a real `az` or `azd` on this machine is never found)."""
    directory = tmp_path / "bin"
    directory.mkdir(parents=True)
    for tool in ("bash", "cat", "grep", "tr", "sed", "head", "date", "env"):
        found = shutil.which(tool)
        if found:
            (directory / tool).symlink_to(found)
    assert BASH is not None
    if "az" in fakes:
        (directory / "az").write_text(FAKE_AZ.format(bash=BASH))
    for name in fakes - {"az"}:
        (directory / name).write_text(FAKE_RECORDER.format(bash=BASH, name=name))
    for fake in fakes:
        (directory / fake).chmod(0o755)
    return directory


def _runner(shell: str, tmp_path: Path) -> Runner:
    def run(hook: str, env: dict[str, str], *, fakes: tuple[str, ...] = (), **fake_vars: str) -> Run:
        directory = _bin(tmp_path / f"{hook}-{len(list(tmp_path.iterdir()))}", set(fakes))
        log = directory / "calls.log"
        log.touch()
        full_env = {
            "PATH": str(directory),
            "HOME": str(tmp_path),
            "FAKE_LOG": str(log),
            **{f"FAKE_AZ_{name.upper()}": value for name, value in fake_vars.items()},
            **env,
        }
        if shell == "sh":
            assert BASH is not None
            command = [BASH, str(SCRIPTS / f"{hook}.sh")]
        else:
            assert PWSH is not None
            command = [PWSH, "-NoProfile", "-NonInteractive", "-File", str(SCRIPTS / f"{hook}.ps1")]
        result = subprocess.run(
            command, capture_output=True, text=True, env=full_env, cwd=SCRIPTS, timeout=60, check=False
        )
        return Run(result.returncode, result.stdout, result.stderr, log.read_text().splitlines())

    return run


@pytest.fixture(
    params=[
        pytest.param("sh", marks=needs_bash),
        pytest.param(
            "pwsh",
            marks=[
                needs_bash,  # the fakes are bash scripts
                pytest.mark.skipif(PWSH is None, reason="PowerShell (pwsh) is not installed"),
            ],
        ),
    ]
)
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Runner:
    return _runner(request.param, tmp_path)


@pytest.fixture
def run_sh(tmp_path: Path) -> Runner:
    if BASH is None:
        pytest.skip("bash is not installed")
    return _runner("sh", tmp_path)


# --- postprovision: the default path (the template created the app) ---------------------------


def test_default_path_without_az_warns_and_lets_the_deploy_go_on(run: Runner) -> None:
    result = run("postprovision", outputs())
    assert result.returncode == 0, result.output
    assert re.search(r"(?i)warning.*\baz\b", result.stderr), result.stderr
    # What the outputs show is still reported.
    assert f"trusts the Function App's identity ({PRINCIPAL})" in result.stdout
    assert "Next steps" in result.stdout


def test_default_path_with_az_in_another_tenant_warns_and_goes_on(run: Runner) -> None:
    result = run("postprovision", outputs(), fakes=("az",), tenant=OTHER_TENANT)
    assert result.returncode == 0, result.output
    assert OTHER_TENANT in result.stderr and TENANT in result.stderr
    assert not result.az("ad app"), "nothing is asked of a directory az is not signed in to"


def test_default_path_with_az_signed_out_warns_and_goes_on(run: Runner) -> None:
    result = run("postprovision", outputs(), fakes=("az",), signed_out="1")
    assert result.returncode == 0, result.output
    assert "az login --tenant " + TENANT in result.stderr


def test_default_path_double_checks_with_az_when_it_can(run: Runner) -> None:
    result = run("postprovision", outputs(), fakes=("az",), tenant=TENANT.upper(), subjects=PRINCIPAL)
    assert result.returncode == 0, result.output
    (listing,) = result.az("ad app federated-credential list")
    assert f"--id {APP}" in listing and ISSUER in listing and "api://AzureADTokenExchange" in listing
    assert not result.az("ad app federated-credential create")
    assert not result.stderr


def test_default_path_never_changes_the_app_even_if_the_live_check_disagrees(run: Runner) -> None:
    # Bicep owns that credential; a directory read that lags behind is reported, not "fixed".
    result = run("postprovision", outputs(), fakes=("az",), tenant=TENANT, subjects="")
    assert result.returncode == 0, result.output
    assert re.search(r"(?i)warning", result.stderr)
    assert not result.az("ad app federated-credential create")
    assert not result.az("ad app federated-credential update")


def test_default_path_stops_when_the_outputs_show_another_identity(run: Runner) -> None:
    result = run("postprovision", outputs(PARTNER_APP_FEDERATED_SUBJECT=OTHER_PRINCIPAL))
    assert result.returncode != 0
    assert OTHER_PRINCIPAL in result.stderr and PRINCIPAL in result.stderr


# --- postprovision: an existing app (EXISTING_PARTNER_APP_CLIENT_ID) ---------------------------


def test_existing_app_without_az_stops_with_a_clear_message(run: Runner) -> None:
    result = run("postprovision", existing_app())
    assert result.returncode != 0
    assert "Azure CLI (az)" in result.stderr
    assert "EXISTING_PARTNER_APP_CLIENT_ID" in result.stderr


def test_existing_app_with_az_in_another_tenant_stops_with_a_clear_message(run: Runner) -> None:
    result = run("postprovision", existing_app(), fakes=("az",), tenant=OTHER_TENANT)
    assert result.returncode != 0
    assert OTHER_TENANT in result.stderr and TENANT in result.stderr
    assert f"az login --tenant {TENANT}" in result.stderr
    assert result.az("account show") and not result.az("ad app")


def test_existing_app_with_az_signed_out_stops(run: Runner) -> None:
    result = run("postprovision", existing_app(), fakes=("az",), signed_out="1")
    assert result.returncode != 0
    assert f"az login --tenant {TENANT}" in result.stderr
    assert not result.az("ad app")


def test_existing_app_gets_the_federated_credential(run: Runner) -> None:
    result = run("postprovision", existing_app(), fakes=("az",), tenant=TENANT, subjects="")
    assert result.returncode == 0, result.output
    (create,) = result.az("ad app federated-credential create")
    assert f"--id {APP}" in create
    for expected in (ISSUER, PRINCIPAL, "api://AzureADTokenExchange", "pal-autopilot-function"):
        assert expected in create
    assert "added federated credential" in result.stdout


def test_existing_app_credential_of_the_same_name_is_pointed_at_the_new_identity(run: Runner) -> None:
    result = run("postprovision", existing_app(), fakes=("az",), tenant=TENANT, subjects="", by_name="1")
    assert result.returncode == 0, result.output
    (update,) = result.az("ad app federated-credential update")
    assert "--federated-credential-id pal-autopilot-function" in update and PRINCIPAL in update
    assert not result.az("ad app federated-credential create")


def test_existing_app_that_already_trusts_the_identity_is_left_alone(run: Runner) -> None:
    result = run(
        "postprovision",
        existing_app(),
        fakes=("az",),
        tenant=TENANT,
        subjects=f"{OTHER_PRINCIPAL}\n{PRINCIPAL}",
    )
    assert result.returncode == 0, result.output
    assert not result.az("ad app federated-credential create")
    assert not result.az("ad app federated-credential update")
    assert "already trusts" in result.stdout


# --- postprovision: the consent command it prints ----------------------------------------------


def consent_command(result: Run) -> str:
    lines = [line for line in result.stdout.splitlines() if "palctl consent-url" in line]
    assert len(lines) == 1, result.stdout
    return lines[0]


def test_the_consent_command_carries_the_redirect_the_template_registered(run: Runner) -> None:
    result = run("postprovision", outputs())
    assert result.returncode == 0, result.output
    assert f"--redirect-uri {FUNCTION_URL}" in consent_command(result)


def test_no_unregistered_redirect_is_printed_for_an_existing_app(run: Runner) -> None:
    # Even if the environment still holds the Function App's address from an earlier provision: the
    # reused app never registered it, and a customer's administrator would get AADSTS50011.
    result = run(
        "postprovision",
        existing_app(PARTNER_APP_CONSENT_REDIRECT_URI=FUNCTION_URL),
        fakes=("az",),
        tenant=TENANT,
        subjects=PRINCIPAL,
    )
    assert result.returncode == 0, result.output
    command = consent_command(result)
    assert "--redirect-uri" not in command and FUNCTION_URL not in result.stdout
    assert f"--client-id {APP}" in command


# --- predeploy / postdeploy: the first deploy waits for the identity's Storage role -------------


def test_first_deploy_for_an_identity_waits_for_its_role(run_sh: Runner) -> None:
    result = run_sh("predeploy", outputs(), fakes=("sleep",))
    assert result.returncode == 0, result.output
    assert result.calls == ["sleep 120"]
    assert "Storage Blob Data Owner" in result.stdout


def test_the_wait_can_be_set_and_is_bounded(run_sh: Runner) -> None:
    assert run_sh("predeploy", outputs(PAL_FIRST_DEPLOY_WAIT_SECONDS="30"), fakes=("sleep",)).calls == [
        "sleep 30"
    ]
    assert run_sh("predeploy", outputs(PAL_FIRST_DEPLOY_WAIT_SECONDS="0"), fakes=("sleep",)).calls == []
    for bad in ("601", "soon", "-5"):
        result = run_sh("predeploy", outputs(PAL_FIRST_DEPLOY_WAIT_SECONDS=bad), fakes=("sleep",))
        assert result.returncode != 0 and "PAL_FIRST_DEPLOY_WAIT_SECONDS" in result.stderr, bad
        assert result.calls == []


def test_later_deploys_for_the_same_identity_do_not_wait(run: Runner) -> None:
    result = run("predeploy", outputs(PAL_DEPLOYED_IDENTITY=PRINCIPAL), fakes=("sleep",))
    assert result.returncode == 0, result.output
    assert result.calls == []


def test_a_new_identity_waits_again(run_sh: Runner) -> None:
    # azd down and up again: a new identity, new role assignments.
    result = run_sh("predeploy", outputs(PAL_DEPLOYED_IDENTITY=OTHER_PRINCIPAL), fakes=("sleep",))
    assert result.calls == ["sleep 120"]


def test_predeploy_with_no_wait_in_either_shell(run: Runner) -> None:
    result = run("predeploy", outputs(PAL_FIRST_DEPLOY_WAIT_SECONDS="0"))
    assert result.returncode == 0, result.output
    assert "docs/deploy.md" in result.stdout


def test_a_successful_deploy_records_the_identity(run: Runner) -> None:
    result = run("postdeploy", outputs(), fakes=("azd",))
    assert result.returncode == 0, result.output
    assert result.calls == [f"azd env set PAL_DEPLOYED_IDENTITY {PRINCIPAL}"]


def test_postdeploy_without_azd_on_path_only_warns(run: Runner) -> None:
    result = run("postdeploy", outputs())
    assert result.returncode == 0, result.output
    assert re.search(r"(?i)warning", result.stderr)


@pytest.mark.parametrize("hook", HOOKS)
def test_hooks_refuse_to_run_outside_azd(run: Runner, hook: str) -> None:
    result = run(hook, {})
    assert result.returncode != 0
    assert "is not set (run through azd" in result.stderr


# --- the PowerShell twins make the same calls with the same variables ---------------------------

_AZ_CALL = re.compile(r"\baz((?: [a-z][a-z-]*)+)")
_AZD_CALL = re.compile(r"\bazd((?: [a-z][a-z-]*)+)")
_SH_VARIABLE = re.compile(r"\$\{?([A-Z][A-Z0-9_]+)")
_SH_REQUIRED = re.compile(r"^require ([A-Z][A-Z0-9_]+)", re.MULTILINE)
_PS_VARIABLE = re.compile(r"\$env:([A-Z][A-Z0-9_]+)")
_PS_REQUIRED = re.compile(r"Assert-Setting ([A-Z][A-Z0-9_]+)")


def _code(source: str) -> str:
    """The script without comment lines (they may mention commands the script does not run)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("hook", HOOKS)
def test_the_powershell_hook_mirrors_the_sh_hook(hook: str) -> None:
    sh = _code((SCRIPTS / f"{hook}.sh").read_text())
    ps = _code((SCRIPTS / f"{hook}.ps1").read_text())
    assert {call.strip() for call in _AZ_CALL.findall(sh)} == {call.strip() for call in _AZ_CALL.findall(ps)}
    assert {call.strip() for call in _AZD_CALL.findall(sh)} == {
        call.strip() for call in _AZD_CALL.findall(ps)
    }
    sh_vars = set(_SH_VARIABLE.findall(sh)) | set(_SH_REQUIRED.findall(sh))
    ps_vars = set(_PS_VARIABLE.findall(ps)) | set(_PS_REQUIRED.findall(ps))
    assert sh_vars == ps_vars, f"only in sh: {sh_vars - ps_vars}; only in ps1: {ps_vars - sh_vars}"
    # Every message the sh hook prints under its own name, the ps1 prints too.
    sh_messages = set(re.findall(rf"{hook}: ([a-z][a-z ,'()]+)", sh))
    ps_messages = set(re.findall(rf"{hook}: ([a-z][a-z ,'()]+)", ps))
    assert sh_messages == ps_messages, (
        f"only in sh: {sh_messages - ps_messages}; only in ps1: {ps_messages - sh_messages}"
    )
    assert "$ErrorActionPreference = 'Stop'" in ps
    assert "exit 1" in ps


def test_no_hook_needs_git_bash_on_windows() -> None:
    for hook in HOOKS:
        ps = (SCRIPTS / f"{hook}.ps1").read_text()
        assert not re.search(r"\b(bash|sh)\b(?!\.)", _code(ps)), f"{hook}.ps1 calls a POSIX shell"


def test_scripts_are_plain_ascii_with_unix_line_ends() -> None:
    # PowerShell 5.1 reads a BOM-less script as ANSI; non-ASCII would be garbled there.
    for script in SCRIPTS.iterdir():
        data = script.read_bytes()
        assert data.isascii(), script.name
        assert b"\r" not in data, script.name


def test_tests_see_the_real_environment_unchanged() -> None:
    # The fakes live in a PATH of their own; nothing here leaks into the process running the tests.
    assert "FAKE_LOG" not in os.environ
