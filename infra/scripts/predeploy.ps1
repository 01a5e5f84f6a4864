# Runs before `azd deploy` uploads the code, on Windows (azure.yaml hook): the PowerShell twin of
# predeploy.sh. The first deploy for a new Function App identity waits PAL_FIRST_DEPLOY_WAIT_SECONDS
# (default 120, at most 600) for the identity's new Storage Blob Data Owner role to take effect, since
# the Flex Consumption plan uploads the package as that identity and a role only minutes old can
# still be refused (403). postdeploy records the identity; later deploys for it do not wait.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

if ([string]::IsNullOrEmpty($env:FUNCTION_IDENTITY_PRINCIPAL_ID)) {
    [Console]::Error.WriteLine('predeploy: FUNCTION_IDENTITY_PRINCIPAL_ID is not set (run through azd, after provisioning)')
    exit 1
}

$waitSeconds = if ($env:PAL_FIRST_DEPLOY_WAIT_SECONDS) { $env:PAL_FIRST_DEPLOY_WAIT_SECONDS } else { '120' }
if ($waitSeconds -notmatch '^[0-9]{1,3}$' -or [int]$waitSeconds -gt 600) {
    [Console]::Error.WriteLine('predeploy: PAL_FIRST_DEPLOY_WAIT_SECONDS must be a whole number of seconds from 0 to 600')
    exit 1
}

if ($env:PAL_DEPLOYED_IDENTITY -eq $env:FUNCTION_IDENTITY_PRINCIPAL_ID) {
    Write-Output "predeploy: the Function App's identity has deployed before; not waiting"
    exit 0
}

Write-Output "predeploy: first deploy for identity $($env:FUNCTION_IDENTITY_PRINCIPAL_ID): waiting $([int]$waitSeconds) s for its new Storage Blob Data Owner role to take effect (PAL_FIRST_DEPLOY_WAIT_SECONDS)"
Write-Output 'predeploy: if the deploy still fails with 403, wait a few minutes and run azd deploy (docs/deploy.md)'
if ([int]$waitSeconds -gt 0) {
    Start-Sleep -Seconds ([int]$waitSeconds)
}
