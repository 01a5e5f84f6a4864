#!/usr/bin/env bash
# Runs after `azd provision` (azure.yaml hook; postprovision.ps1 is its Windows twin and does the
# same). Idempotent: running it again changes nothing.
#
# What Bicep cannot declare: a federated identity credential on a multi-tenant app registration
# that Bicep did not create. The Microsoft Graph extension finds applications only by the
# `uniqueName` they were created with, and an app registered in the portal or by another tool has
# none. Partners who already have an app their customers consented to (for example one used with
# client secrets) set EXISTING_PARTNER_APP_CLIENT_ID to keep it, so that no customer has to consent
# again; this script then adds the credential that trusts the Function App's identity. That path
# needs the Azure CLI, signed in to the deployment's tenant with the right to manage that app (an
# owner of the app, or Application Administrator); it stops with a clear message otherwise.
#
# When Bicep created the app (the default), the credential is already there: this checks it from
# the deployment's outputs, double-checks it with the Azure CLI when that is installed and signed in
# to the deployment's tenant, and otherwise warns and lets `azd up` go on to deploy the code.
#
# azd passes its environment (the outputs of infra/main.bicep) as variables.
set -euo pipefail

credential_name="pal-autopilot-function"

warn() {
  echo "postprovision: WARNING: $*" >&2
}

fail() {
  echo "postprovision: $*" >&2
  exit 1
}

require() {
  if [ -z "${!1:-}" ]; then
    fail "$1 is not set (run through azd, after provisioning)"
  fi
}

lower() {
  printf '%s' "$1" | tr '[:upper:]' '[:lower:]'
}

require AZURE_TENANT_ID
require FUNCTION_IDENTITY_PRINCIPAL_ID
require PARTNER_APP_CLIENT_ID
audience="${FEDERATED_TOKEN_AUDIENCE:-api://AzureADTokenExchange}"
app="${PARTNER_APP_CLIENT_ID}"
tenant="${AZURE_TENANT_ID}"
principal="${FUNCTION_IDENTITY_PRINCIPAL_ID}"

# `template`: Bicep created the app and its credential; `existing`: EXISTING_PARTNER_APP_CLIENT_ID.
source="${PARTNER_APP_SOURCE:-}"
if [ -z "$source" ]; then
  if [ -n "${EXISTING_PARTNER_APP_CLIENT_ID:-}" ]; then source="existing"; else source="template"; fi
fi

# Why az cannot be used here, or nothing when it can: installed and signed in to the deployment's
# tenant (compared case-insensitively).
az_problem() {
  if ! command -v az >/dev/null 2>&1; then
    echo "the Azure CLI (az) is not installed"
    return
  fi
  local signed_in
  if ! signed_in="$(az account show --query tenantId --output tsv 2>/dev/null)" || [ -z "$signed_in" ]; then
    echo "az is not signed in: run az login --tenant ${tenant}"
    return
  fi
  if [ "$(lower "$signed_in")" != "$(lower "$tenant")" ]; then
    echo "az is signed in to tenant ${signed_in}, but this deployment is in tenant ${tenant}: run az login --tenant ${tenant}"
  fi
}

# The subjects of the app's credentials with this issuer and audience, one a line.
trusted_subjects() {
  az ad app federated-credential list --id "$app" \
    --query "[?issuer=='${issuer}' && contains(audiences, '${audience}')].subject" --output tsv
}

issuer="${PARTNER_APP_FEDERATED_ISSUER:-}"

if [ "$source" = "template" ]; then
  # Bicep created the credential in this deployment; its outputs say what it trusts.
  if [ -n "${PARTNER_APP_FEDERATED_SUBJECT:-}" ]; then
    if [ "$(lower "$PARTNER_APP_FEDERATED_SUBJECT")" != "$(lower "$principal")" ]; then
      fail "the partner app's federated credential trusts ${PARTNER_APP_FEDERATED_SUBJECT}, not the Function App's identity ${principal}: run azd provision again"
    fi
    echo "postprovision: app ${app} trusts the Function App's identity (${principal}) (created by the template)"
  fi
  problem="$(az_problem)"
  if [ -n "$problem" ]; then
    warn "not double-checked with the Azure CLI (${problem}); the deployment created the credential, nothing else is needed"
  elif [ -n "$issuer" ]; then
    if ! subjects="$(trusted_subjects 2>/dev/null)"; then
      warn "az could not read app ${app}'s federated credentials; the deployment created the credential"
    elif ! printf '%s\n' "$subjects" | tr '[:upper:]' '[:lower:]' | grep -qx "$(lower "$principal")"; then
      warn "app ${app} does not list a credential for ${principal} yet (the directory can lag a minute); check with: az ad app federated-credential list --id ${app}"
    elif [ -z "${PARTNER_APP_FEDERATED_SUBJECT:-}" ]; then
      echo "postprovision: app ${app} trusts the Function App's identity (${principal}) (created by the template)"
    fi
  fi
else
  problem="$(az_problem)"
  if [ -n "$problem" ]; then
    fail "the Azure CLI (az) is needed to add the federated credential to the existing app ${app} (EXISTING_PARTNER_APP_CLIENT_ID), and ${problem}; then run azd provision again"
  fi
  [ -n "$issuer" ] || fail "PARTNER_APP_FEDERATED_ISSUER is not set (run through azd, after provisioning)"
  existing_subjects="$(trusted_subjects)" || fail "az could not read app ${app}'s federated credentials"
  if printf '%s\n' "$existing_subjects" | tr '[:upper:]' '[:lower:]' | grep -qx "$(lower "$principal")"; then
    echo "postprovision: app ${app} already trusts the Function App's identity (${principal})"
  else
    parameters="$(printf '{"name":"%s","issuer":"%s","subject":"%s","audiences":["%s"],"description":"%s"}' \
      "$credential_name" "$issuer" "$principal" "$audience" \
      "The PAL Autopilot Function App's user-assigned managed identity")"
    by_name="$(az ad app federated-credential list --id "$app" \
      --query "[?name=='${credential_name}'] | length(@)" --output tsv)" ||
      fail "az could not read app ${app}'s federated credentials"
    if [ "$by_name" != "0" ]; then
      # The identity was re-created (new principal ID): point the credential at the new one.
      az ad app federated-credential update --id "$app" --federated-credential-id "$credential_name" \
        --parameters "$parameters" --output none ||
        fail "az could not update federated credential ${credential_name} on app ${app}"
      echo "postprovision: updated federated credential ${credential_name} on app ${app}"
    else
      az ad app federated-credential create --id "$app" --parameters "$parameters" --output none ||
        fail "az could not add federated credential ${credential_name} to app ${app}"
      echo "postprovision: added federated credential ${credential_name} to app ${app}"
    fi
    echo "postprovision: Entra ID may answer AADSTS70021 for a few minutes until the credential propagates"
  fi
fi

# The consent link may name only a redirect URI registered on the app: the template registers
# PARTNER_APP_CONSENT_REDIRECT_URI on the app it creates, and nothing on an existing one (a customer's
# administrator would get AADSTS50011). Without one, Entra ID uses the app's registered reply URL.
redirect=""
if [ "$source" = "template" ] && [ -n "${PARTNER_APP_CONSENT_REDIRECT_URI:-}" ]; then
  redirect=" --redirect-uri ${PARTNER_APP_CONSENT_REDIRECT_URI}"
fi

cat <<NEXT

Next steps (docs/customer-onboarding.md):
  Partner app client ID: ${app}
  Admin-consent link for a customer tenant:
    palctl consent-url --tenant <customer tenant ID> --client-id ${app}${redirect}
  Send a customer:
    palctl enqueue --namespace ${PAL_SERVICEBUS_NAMESPACE:-<namespace>} --tenant <customer tenant ID> --client-id ${app}
NEXT
