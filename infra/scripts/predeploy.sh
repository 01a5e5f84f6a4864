#!/usr/bin/env bash
# Runs before `azd deploy` uploads the code (azure.yaml hook; predeploy.ps1 is its Windows twin).
#
# On the Flex Consumption plan the package goes to the deployment container as the Function App's
# user-assigned identity. `azd up` deploys a minute after `azd provision` created that identity's
# Storage Blob Data Owner role, and Azure can take minutes to honour a new role assignment: the
# first upload then fails with 403 (InaccessibleStorageException). No one but the identity can tell
# whether the role works yet, so the first deploy for an identity waits PAL_FIRST_DEPLOY_WAIT_SECONDS
# (default 120, at most 600) first; postdeploy records the identity in the azd environment
# (PAL_DEPLOYED_IDENTITY), and later deploys for it do not wait. If the deploy still fails with 403:
# wait a few minutes and run `azd deploy` (docs/deploy.md, "If something fails").
set -euo pipefail

if [ -z "${FUNCTION_IDENTITY_PRINCIPAL_ID:-}" ]; then
  echo "predeploy: FUNCTION_IDENTITY_PRINCIPAL_ID is not set (run through azd, after provisioning)" >&2
  exit 1
fi

wait_seconds="${PAL_FIRST_DEPLOY_WAIT_SECONDS:-120}"
if ! [[ "$wait_seconds" =~ ^[0-9]{1,3}$ ]] || [ "$wait_seconds" -gt 600 ]; then
  echo "predeploy: PAL_FIRST_DEPLOY_WAIT_SECONDS must be a whole number of seconds from 0 to 600" >&2
  exit 1
fi

if [ "${PAL_DEPLOYED_IDENTITY:-}" = "$FUNCTION_IDENTITY_PRINCIPAL_ID" ]; then
  echo "predeploy: the Function App's identity has deployed before; not waiting"
  exit 0
fi

echo "predeploy: first deploy for identity ${FUNCTION_IDENTITY_PRINCIPAL_ID}: waiting ${wait_seconds} s for its new Storage Blob Data Owner role to take effect (PAL_FIRST_DEPLOY_WAIT_SECONDS)"
echo "predeploy: if the deploy still fails with 403, wait a few minutes and run azd deploy (docs/deploy.md)"
if [ "$wait_seconds" -gt 0 ]; then
  sleep "$wait_seconds"
fi
