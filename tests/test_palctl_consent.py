"""`palctl consent-url`: the admin-consent link a customer's administrator opens."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pytest

from palctl.cli import main
from palctl.commands.consent import admin_consent_url

TENANT = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"
APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_prints_the_admin_consent_url_for_the_customer_tenant() -> None:
    code, output = run("consent-url", "--tenant", TENANT, "--client-id", APP)
    assert code == 0
    assert output == f"https://login.microsoftonline.com/{TENANT}/adminconsent?client_id={APP}\n"


def test_redirect_uri_is_encoded_into_the_query() -> None:
    redirect = "https://func-abc.azurewebsites.net/consented?from=pal&x=1"
    code, output = run("consent-url", "--tenant", TENANT, "--client-id", APP, "--redirect-uri", redirect)
    assert code == 0
    url = urlsplit(output.strip())
    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "login.microsoftonline.com",
        f"/{TENANT}/adminconsent",
    )
    assert parse_qs(url.query) == {"client_id": [APP], "redirect_uri": [redirect]}
    assert "from%3Dpal%26x%3D1" in url.query  # not mistaken for parameters of the consent URL


def test_guids_are_normalised_to_lower_case() -> None:
    url = admin_consent_url(TENANT.upper(), APP.upper())
    assert f"/{TENANT}/" in url and f"client_id={APP}" in url


def test_sovereign_cloud_authority() -> None:
    url = admin_consent_url(TENANT, APP, authority="https://login.microsoftonline.us/")
    assert url.startswith(f"https://login.microsoftonline.us/{TENANT}/adminconsent?")


def test_localhost_redirect_may_use_http() -> None:
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A8400%2F" in admin_consent_url(
        TENANT, APP, "http://localhost:8400/"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tenant", "contoso.onmicrosoft.com", "--client-id", APP], "--tenant must be a GUID"),
        (["--tenant", "00000000-0000-0000-0000-000000000000", "--client-id", APP], "--tenant must be a GUID"),
        (["--tenant", TENANT, "--client-id", "not-a-guid"], "--client-id must be a GUID"),
        (["--tenant", TENANT, "--client-id", APP, "--redirect-uri", "http://example.com/"], "https://"),
        (["--tenant", TENANT, "--client-id", APP, "--redirect-uri", "/relative"], "absolute URL"),
        (["--tenant", TENANT, "--client-id", APP, "--redirect-uri", "https://x.example/#frag"], "#fragment"),
        (["--tenant", TENANT, "--client-id", APP, "--authority", "http://localhost"], "--authority"),
    ],
)
def test_bad_input_is_refused_with_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run("consent-url", *argv)
    assert code == 2
    assert output == ""
    assert message in capsys.readouterr().err


def test_tenant_and_client_id_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run("consent-url", "--tenant", TENANT)
    assert (code, output) == (2, "")
    assert "Missing option '--client-id'" in capsys.readouterr().err


def test_an_empty_redirect_uri_is_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    # `--redirect-uri "$(azd env get-value PARTNER_APP_CONSENT_REDIRECT_URI)"` for a reused app: the
    # output is empty there (the template registered nothing on that app), so no redirect is sent and
    # Entra ID returns the administrator to the app's own registered reply URL.
    code, output = run("consent-url", "--tenant", TENANT, "--client-id", APP, "--redirect-uri", "")
    assert code == 0
    assert output == f"https://login.microsoftonline.com/{TENANT}/adminconsent?client_id={APP}\n"
    assert capsys.readouterr().err == ""


def test_a_redirect_uri_comes_with_the_reminder_that_the_app_must_register_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = run(
        "consent-url",
        "--tenant",
        TENANT,
        "--client-id",
        APP,
        "--redirect-uri",
        "https://func-abc.azurewebsites.net",
    )
    assert code == 0 and "redirect_uri=" in output
    err = capsys.readouterr().err
    assert "registered" in err and "AADSTS50011" in err
    assert output.count("\n") == 1, "stdout holds the link alone, for scripts"


def test_the_help_says_the_redirect_must_be_registered(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run("consent-url", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "AADSTS50011" in help_text


def test_the_old_import_path_still_works() -> None:
    from palctl.cli import admin_consent_url as old

    assert old is admin_consent_url
