#!/usr/bin/env bash
# Runs after `azd deploy` succeeded (azure.yaml hook; postdeploy.ps1 is its Windows twin). Records
# the identity that deployed, so that predeploy waits for a new identity's Storage role only once.
set -euo pipefail

if [ -z "${FUNCTION_IDENTITY_PRINCIPAL_ID:-}" ]; then
  echo "postdeploy: FUNCTION_IDENTITY_PRINCIPAL_ID is not set (run through azd, after provisioning)" >&2
  exit 1
fi

if [ "${PAL_DEPLOYED_IDENTITY:-}" = "$FUNCTION_IDENTITY_PRINCIPAL_ID" ]; then
  exit 0
fi

if ! command -v azd >/dev/null 2>&1 || ! azd env set PAL_DEPLOYED_IDENTITY "$FUNCTION_IDENTITY_PRINCIPAL_ID"; then
  echo "postdeploy: WARNING: could not record PAL_DEPLOYED_IDENTITY with azd env set; the next deploy waits again" >&2
fi
