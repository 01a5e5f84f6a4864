# Runs after `azd provision` on Windows (azure.yaml hook): the PowerShell twin of postprovision.sh,
# step for step, so that Windows needs no Git Bash. Idempotent. Works in PowerShell 7 and in Windows
# PowerShell 5.1 (which azd falls back to).
#
# Default path (Bicep created the partner app and its federated credential): checks the credential
# from the deployment's outputs, double-checks it with the Azure CLI when that is installed and
# signed in to the deployment's tenant, and otherwise warns and lets `azd up` deploy the code.
# Existing app (EXISTING_PARTNER_APP_CLIENT_ID): adds the credential with the Azure CLI, which must
# be signed in to the deployment's tenant; stops with a clear message otherwise.
#
# azd passes its environment (the outputs of infra/main.bicep) as environment variables.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$credentialName = 'pal-autopilot-function'

function Write-HookWarning([string]$message) {
    [Console]::Error.WriteLine("postprovision: WARNING: $message")
}

function Stop-Hook([string]$message) {
    [Console]::Error.WriteLine("postprovision: $message")
    exit 1
}

function Assert-Setting([string]$name) {
    if ([string]::IsNullOrEmpty([Environment]::GetEnvironmentVariable($name))) {
        Stop-Hook "$name is not set (run through azd, after provisioning)"
    }
}

Assert-Setting AZURE_TENANT_ID
Assert-Setting FUNCTION_IDENTITY_PRINCIPAL_ID
Assert-Setting PARTNER_APP_CLIENT_ID
$audience = if ($env:FEDERATED_TOKEN_AUDIENCE) { $env:FEDERATED_TOKEN_AUDIENCE } else { 'api://AzureADTokenExchange' }
$app = $env:PARTNER_APP_CLIENT_ID
$tenant = $env:AZURE_TENANT_ID
$principal = $env:FUNCTION_IDENTITY_PRINCIPAL_ID

# 'template': Bicep created the app and its credential; 'existing': EXISTING_PARTNER_APP_CLIENT_ID.
$source = $env:PARTNER_APP_SOURCE
if (-not $source) {
    $source = if ($env:EXISTING_PARTNER_APP_CLIENT_ID) { 'existing' } else { 'template' }
}

# Why az cannot be used here, or '' when it can: installed and signed in to the deployment's tenant.
function Get-AzProblem {
    if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
        return 'the Azure CLI (az) is not installed'
    }
    # Windows PowerShell turns a native command's error output into errors: do not stop on them.
    $ErrorActionPreference = 'Continue'
    $signedIn = (& az account show --query tenantId --output tsv 2>$null | Out-String).Trim()
    if ($LASTEXITCODE -ne 0 -or -not $signedIn) {
        return "az is not signed in: run az login --tenant $tenant"
    }
    if ($signedIn.ToLowerInvariant() -ne $tenant.ToLowerInvariant()) {
        return "az is signed in to tenant $signedIn, but this deployment is in tenant ${tenant}: run az login --tenant $tenant"
    }
    return ''
}

# The subjects of the app's credentials with this issuer and audience, lower case; $null if az failed.
function Get-TrustedSubject {
    $ErrorActionPreference = 'Continue'
    $query = "[?issuer=='$issuer' && contains(audiences, '$audience')].subject"
    $lines = & az ad app federated-credential list --id $app --query $query --output tsv 2>$null
    if ($LASTEXITCODE -ne 0) {
        return $null
    }
    # The comma keeps an empty list a list (PowerShell would hand back $null instead).
    return , @($lines | ForEach-Object { "$_".Trim().ToLowerInvariant() } | Where-Object { $_ })
}

$issuer = $env:PARTNER_APP_FEDERATED_ISSUER

if ($source -eq 'template') {
    # Bicep created the credential in this deployment; its outputs say what it trusts.
    if ($env:PARTNER_APP_FEDERATED_SUBJECT) {
        if ($env:PARTNER_APP_FEDERATED_SUBJECT.ToLowerInvariant() -ne $principal.ToLowerInvariant()) {
            Stop-Hook "the partner app's federated credential trusts $($env:PARTNER_APP_FEDERATED_SUBJECT), not the Function App's identity ${principal}: run azd provision again"
        }
        Write-Output "postprovision: app $app trusts the Function App's identity ($principal) (created by the template)"
    }
    $problem = Get-AzProblem
    if ($problem) {
        Write-HookWarning "not double-checked with the Azure CLI ($problem); the deployment created the credential, nothing else is needed"
    }
    elseif ($issuer) {
        $subjects = Get-TrustedSubject
        if ($null -eq $subjects) {
            Write-HookWarning "az could not read app ${app}'s federated credentials; the deployment created the credential"
        }
        elseif (@($subjects) -notcontains $principal.ToLowerInvariant()) {
            Write-HookWarning "app $app does not list a credential for $principal yet (the directory can lag a minute); check with: az ad app federated-credential list --id $app"
        }
        elseif (-not $env:PARTNER_APP_FEDERATED_SUBJECT) {
            Write-Output "postprovision: app $app trusts the Function App's identity ($principal) (created by the template)"
        }
    }
}
else {
    $problem = Get-AzProblem
    if ($problem) {
        Stop-Hook "the Azure CLI (az) is needed to add the federated credential to the existing app $app (EXISTING_PARTNER_APP_CLIENT_ID), and ${problem}; then run azd provision again"
    }
    if (-not $issuer) {
        Stop-Hook 'PARTNER_APP_FEDERATED_ISSUER is not set (run through azd, after provisioning)'
    }
    $existingSubjects = Get-TrustedSubject
    if ($null -eq $existingSubjects) {
        Stop-Hook "az could not read app ${app}'s federated credentials"
    }
    if (@($existingSubjects) -contains $principal.ToLowerInvariant()) {
        Write-Output "postprovision: app $app already trusts the Function App's identity ($principal)"
    }
    else {
        $parameters = [ordered]@{
            name        = $credentialName
            issuer      = $issuer
            subject     = $principal
            audiences   = @($audience)
            description = "The PAL Autopilot Function App's user-assigned managed identity"
        } | ConvertTo-Json -Compress
        # Passed as a file: JSON's quotes do not survive the trip through az.cmd's command line.
        $parametersFile = [System.IO.Path]::GetTempFileName()
        try {
            [System.IO.File]::WriteAllText($parametersFile, $parameters)
            $ErrorActionPreference = 'Continue'
            $byName = (& az ad app federated-credential list --id $app --query "[?name=='$credentialName'] | length(@)" --output tsv | Out-String).Trim()
            if ($LASTEXITCODE -ne 0) {
                Stop-Hook "az could not read app ${app}'s federated credentials"
            }
            if ($byName -ne '0') {
                # The identity was re-created (new principal ID): point the credential at the new one.
                & az ad app federated-credential update --id $app --federated-credential-id $credentialName --parameters "@$parametersFile" --output none
                if ($LASTEXITCODE -ne 0) {
                    Stop-Hook "az could not update federated credential $credentialName on app $app"
                }
                Write-Output "postprovision: updated federated credential $credentialName on app $app"
            }
            else {
                & az ad app federated-credential create --id $app --parameters "@$parametersFile" --output none
                if ($LASTEXITCODE -ne 0) {
                    Stop-Hook "az could not add federated credential $credentialName to app $app"
                }
                Write-Output "postprovision: added federated credential $credentialName to app $app"
            }
            $ErrorActionPreference = 'Stop'
        }
        finally {
            Remove-Item -LiteralPath $parametersFile -Force -ErrorAction SilentlyContinue
        }
        Write-Output 'postprovision: Entra ID may answer AADSTS70021 for a few minutes until the credential propagates'
    }
}

# The consent link may name only a redirect URI registered on the app: the template registers
# PARTNER_APP_CONSENT_REDIRECT_URI on the app it creates, and nothing on an existing one (a customer's
# administrator would get AADSTS50011). Without one, Entra ID uses the app's registered reply URL.
$redirect = ''
if ($source -eq 'template' -and $env:PARTNER_APP_CONSENT_REDIRECT_URI) {
    $redirect = " --redirect-uri $($env:PARTNER_APP_CONSENT_REDIRECT_URI)"
}
$namespace = if ($env:PAL_SERVICEBUS_NAMESPACE) { $env:PAL_SERVICEBUS_NAMESPACE } else { '<namespace>' }

Write-Output @"

Next steps (docs/customer-onboarding.md):
  Partner app client ID: $app
  Admin-consent link for a customer tenant:
    palctl consent-url --tenant <customer tenant ID> --client-id $app$redirect
  Send a customer:
    palctl enqueue --namespace $namespace --tenant <customer tenant ID> --client-id $app
"@
