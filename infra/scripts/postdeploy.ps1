# Runs after `azd deploy` succeeded, on Windows (azure.yaml hook): the PowerShell twin of
# postdeploy.sh. Records the identity that deployed, so that predeploy waits for a new identity's
# Storage role only once.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

if ([string]::IsNullOrEmpty($env:FUNCTION_IDENTITY_PRINCIPAL_ID)) {
    [Console]::Error.WriteLine('postdeploy: FUNCTION_IDENTITY_PRINCIPAL_ID is not set (run through azd, after provisioning)')
    exit 1
}

if ($env:PAL_DEPLOYED_IDENTITY -eq $env:FUNCTION_IDENTITY_PRINCIPAL_ID) {
    exit 0
}

$recorded = $false
if (Get-Command azd -ErrorAction SilentlyContinue) {
    $ErrorActionPreference = 'Continue'
    & azd env set PAL_DEPLOYED_IDENTITY $env:FUNCTION_IDENTITY_PRINCIPAL_ID
    $recorded = ($LASTEXITCODE -eq 0)
    $ErrorActionPreference = 'Stop'
}
if (-not $recorded) {
    [Console]::Error.WriteLine('postdeploy: WARNING: could not record PAL_DEPLOYED_IDENTITY with azd env set; the next deploy waits again')
}
