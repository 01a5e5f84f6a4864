// PAL Autopilot: everything `azd up` creates. One resource group; small modules under app/.
// No connection string, account key or secret anywhere: every connection is identity-based and the
// partner's multi-tenant app trusts the Function App's user-assigned identity (federated credential).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names and tags derive from it.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object ID of the user (or service principal) running azd: owner of the partner app, and (see deployerDataRoles) holder of the data-plane roles of palctl and local runs. Empty: none.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Kind of principal that principalId names. azd sets it (AZURE_PRINCIPAL_TYPE).')
param principalType string = 'User'

@description('Give the deploying user (principalType User) the data-plane roles of palctl and a local run: Service Bus send and receive, ledger read and write, Key Vault secrets. Never given to a pipeline\'s service principal.')
param deployerDataRoles bool = true

@minLength(6)
@maxLength(10)
@description('The Associated Partner ID (location MPN ID, 6-10 digits) linked in every customer tenant. The code validates the digits.')
param partnerId string

@description('Every partner ID of ours, comma-separated (PARTNER_ID and any other location IDs). Empty: PARTNER_ID alone. A message may ask for no other ID, and a link found on any other ID is an ALERT.')
param allowedPartnerIds string = ''

@allowed([
  'update'
  'keep'
])
@description('What to do when a customer identity is already linked to another partner ID.')
param onOtherPartner string = 'update'

@description('NCRONTAB schedule (with seconds, UTC) of the nightly re-verification of every link.')
param reverifySchedule string = '0 0 2 * * *'

@description('NCRONTAB schedule (UTC, with seconds) of the attribution audit: weekly by default.')
param auditSchedule string = '0 0 3 * * 0'

@description('Client ID of an existing multi-tenant app registration to reuse (customers who consented to it need not consent again). Empty: this template creates the app. The post-provision script adds the federated credential to an existing app.')
param partnerAppClientId string = ''

@description('Display name of the partner app that customers see on the consent page.')
param partnerAppDisplayName string = 'PAL Autopilot'

@description('Where the admin-consent page sends the customer\'s administrator afterwards. Empty: the Function App\'s address.')
param consentRedirectUri string = ''

@description('Audience of the managed-identity token used as the client assertion. Empty: the cloud\'s own (api://AzureADTokenExchange in the public cloud).')
param federatedTokenAudience string = ''

@minValue(1)
@maxValue(1000)
@description('Flex Consumption scale-out limit: bounds the number of concurrent ARM and Entra calls.')
param maximumInstanceCount int = 40

@description('Key Vault purge protection (irreversible once on). Turn off only for throw-away environments: a protected vault cannot be purged, so its name stays taken for 90 days after `azd down`.')
param keyVaultPurgeProtection bool = true

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// The names the code, the local broker (sandbox/broker/queues.json) and host.json agree on;
// tests/test_config_contract.py checks them against shared/spine/settings.py.
var onboardingQueueName = 'customer-onboarded'
var verifyQueueName = 'link-verify'
var auditQueueName = 'attribution-audit'
var deliveryQueueName = 'solution-delivery'
var deliveryContainerName = 'deliveries'
var ledgerTableName = 'PalLinks'

// The audience Entra ID accepts in a managed-identity token used as a federated assertion, one per
// cloud ("Configure an application to trust a managed identity", Microsoft Learn). The code derives
// the same from AZURE_AUTHORITY_HOST (shared/spine/settings.py); both come from the deployment's cloud.
var exchangeAudiences = {
  AzureCloud: 'api://AzureADTokenExchange'
  AzureUSGovernment: 'api://AzureADTokenExchangeUSGov'
  AzureChinaCloud: 'api://AzureADTokenExchangeChina'
}
var exchangeAudience = empty(federatedTokenAudience) ? exchangeAudiences[environment().name] : federatedTokenAudience
// The issuer of the Function App identity's tokens, which the partner app's credential names.
var federatedIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
// The Function App's address, known before it exists: its default host is <name>.<the cloud's
// App Service domain> (the site does not opt in to unique default host names). The partner app's
// redirect URIs need it and the Function App's settings need the partner app's client ID, so the
// address cannot wait for the site (a cycle).
var functionHostSuffixes = {
  AzureCloud: 'azurewebsites.net'
  AzureUSGovernment: 'azurewebsites.us'
  AzureChinaCloud: 'chinacloudsites.cn'
}
var functionAppUrl = 'https://${functionAppName}.${functionHostSuffixes[environment().name]}'
var deploymentContainerName = 'app-package-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deliveryContainerName: deliveryContainerName
    ledgerTableName: ledgerTableName
  }
}

module serviceBus 'app/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    onboardingQueueName: onboardingQueueName
    verifyQueueName: verifyQueueName
    auditQueueName: auditQueueName
    deliveryQueueName: deliveryQueueName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    purgeProtection: keyVaultPurgeProtection
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    partnerId: partnerId
    allowedPartnerIds: allowedPartnerIds
    onOtherPartner: onOtherPartner
    onboardingQueueName: onboardingQueueName
    verifyQueueName: verifyQueueName
    auditQueueName: auditQueueName
    deliveryQueueName: deliveryQueueName
    deliveryBlobServiceUri: storage.outputs.blobServiceUri
    deliveryContainerName: deliveryContainerName
    reverifySchedule: reverifySchedule
    auditSchedule: auditSchedule
    serviceBusHostName: serviceBus.outputs.hostName
    ledgerTableServiceUri: storage.outputs.tableServiceUri
    ledgerTableName: ledgerTableName
    keyVaultUrl: keyVault.outputs.url
    federatedTokenAudience: exchangeAudience
    // The dashboard's sign-in: the partner app (created here, or the existing one).
    dashboardClientId: empty(partnerAppClientId) ? partnerApp.outputs.clientId : partnerAppClientId
    dashboardAudience: empty(partnerAppClientId) ? partnerApp.outputs.identifierUri : ''
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    userDataRoles: deployerDataRoles && principalType == 'User'
    storageAccountName: storage.outputs.name
    deliveryContainerName: deliveryContainerName
    serviceBusNamespaceName: serviceBus.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

var redirectUri = empty(consentRedirectUri) ? functionAppUrl : consentRedirectUri

// The partner's multi-tenant app and its federated credential (Microsoft Graph Bicep extension).
// Skipped when an existing app is reused: infra/scripts/postprovision.sh adds the credential to it;
// its dashboard roles, redirect URI and Application ID URI are added by hand (docs/deploy.md).
module partnerApp 'app/partner-app.bicep' = if (empty(partnerAppClientId)) {
  name: 'partner-app'
  scope: rg
  params: {
    uniqueName: 'pal-autopilot-${resourceToken}'
    displayName: partnerAppDisplayName
    identityPrincipalId: identity.outputs.principalId
    federatedTokenAudience: exchangeAudience
    redirectUri: redirectUri
    dashboardRedirectUri: '${functionAppUrl}/api/dashboard'
    ownerPrincipalId: principalId
  }
}

// --- Outputs: azd stores them in the environment (`azd env get-values`). The ones named like app
// settings are what a local run against these resources needs (docs/deploy.md).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output FEDERATED_TOKEN_AUDIENCE string = exchangeAudience
output PARTNER_APP_CLIENT_ID string = empty(partnerAppClientId) ? partnerApp.outputs.clientId : partnerAppClientId
// For infra/scripts/postprovision.*: whether this template created the partner app (then it only
// checks the credential, from the next two outputs) or an existing app needs the credential added.
output PARTNER_APP_SOURCE string = empty(partnerAppClientId) ? 'template' : 'existing'
output PARTNER_APP_FEDERATED_SUBJECT string = empty(partnerAppClientId) ? partnerApp.outputs.federatedSubject : ''
output PARTNER_APP_FEDERATED_ISSUER string = federatedIssuer
// Registered only on the app this template creates; an existing app's customers would get
// AADSTS50011 with it, so for one the output is empty and the consent link carries no redirect.
output PARTNER_APP_CONSENT_REDIRECT_URI string = empty(partnerAppClientId) ? redirectUri : ''
output PAL_SERVICEBUS_NAMESPACE string = serviceBus.outputs.hostName
output ServiceBusConnection__fullyQualifiedNamespace string = serviceBus.outputs.hostName
output LedgerStorage__tableServiceUri string = storage.outputs.tableServiceUri
output LEDGER_TABLE string = ledgerTableName
output ONBOARDING_QUEUE string = onboardingQueueName
output VERIFY_QUEUE string = verifyQueueName
output AUDIT_QUEUE string = auditQueueName
output DELIVERY_QUEUE string = deliveryQueueName
output DeliveryStorage__blobServiceUri string = storage.outputs.blobServiceUri
output DELIVERY_CONTAINER string = deliveryContainerName
output KEY_VAULT_URL string = keyVault.outputs.url
