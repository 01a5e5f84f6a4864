#!/usr/bin/env bash
# Runs after `azd provision` (azure.yaml hook). Idempotent: running it again changes nothing.
#
# What Bicep cannot declare: a federated identity credential on a multi-tenant app registration
# that Bicep did not create. The Microsoft Graph extension finds applications only by the
# `uniqueName` they were created with, and an app registered in the portal or by another tool has
# none. Partners who already have an app their customers consented to (for example one used with
# client secrets) set EXISTING_PARTNER_APP_CLIENT_ID to keep it, so that no customer has to
# consent again; this script then adds the credential that trusts the Function App's identity.
# When Bicep created the app (the default), the credential is already there and this only checks.
#
# Needs: the Azure CLI, signed in to the partner tenant with the right to manage that app (an owner
# of the app, or Application Administrator). azd passes its environment (the outputs of
# infra/main.bicep) as variables.
set -euo pipefail

credential_name="pal-autopilot-function"

require() {
  if [ -z "${!1:-}" ]; then
    echo "postprovision: $1 is not set (run through azd, after provisioning)" >&2
    exit 1
  fi
}

require AZURE_TENANT_ID
require FUNCTION_IDENTITY_PRINCIPAL_ID
require PARTNER_APP_CLIENT_ID
audience="${FEDERATED_TOKEN_AUDIENCE:-api://AzureADTokenExchange}"

if ! command -v az >/dev/null 2>&1; then
  echo "postprovision: the Azure CLI (az) is needed to check the partner app's federated credential" >&2
  exit 1
fi

# The sign-in endpoint of the cloud az is signed in to, without a trailing slash.
login_endpoint="$(az cloud show --query endpoints.activeDirectory --output tsv)"
login_endpoint="${login_endpoint%/}"
issuer="${login_endpoint}/${AZURE_TENANT_ID}/v2.0"
app="${PARTNER_APP_CLIENT_ID}"

existing_subject="$(az ad app federated-credential list --id "$app" \
  --query "[?issuer=='${issuer}' && contains(audiences, '${audience}')].subject" --output tsv)"

if printf '%s\n' "$existing_subject" | grep -qx "$FUNCTION_IDENTITY_PRINCIPAL_ID"; then
  echo "postprovision: app ${app} already trusts the Function App's identity (${FUNCTION_IDENTITY_PRINCIPAL_ID})"
else
  parameters="$(printf '{"name":"%s","issuer":"%s","subject":"%s","audiences":["%s"],"description":"%s"}' \
    "$credential_name" "$issuer" "$FUNCTION_IDENTITY_PRINCIPAL_ID" "$audience" \
    "The PAL Autopilot Function App's user-assigned managed identity")"
  by_name="$(az ad app federated-credential list --id "$app" \
    --query "[?name=='${credential_name}'] | length(@)" --output tsv)"
  if [ "$by_name" != "0" ]; then
    # The identity was re-created (new principal ID): point the credential at the new one.
    az ad app federated-credential update --id "$app" --federated-credential-id "$credential_name" \
      --parameters "$parameters" --output none
    echo "postprovision: updated federated credential ${credential_name} on app ${app}"
  else
    az ad app federated-credential create --id "$app" --parameters "$parameters" --output none
    echo "postprovision: added federated credential ${credential_name} to app ${app}"
  fi
  echo "postprovision: Entra ID may answer AADSTS70021 for a few minutes until the credential propagates"
fi

cat <<NEXT

Next steps (docs/customer-onboarding.md):
  Partner app client ID: ${app}
  Admin-consent link for a customer tenant:
    palctl consent-url --tenant <customer tenant ID> --client-id ${app} --redirect-uri ${PARTNER_APP_CONSENT_REDIRECT_URI:-<your redirect URI>}
  Send a customer:
    palctl enqueue --namespace ${PAL_SERVICEBUS_NAMESPACE:-<namespace>} --tenant <customer tenant ID> --client-id ${app}
NEXT
