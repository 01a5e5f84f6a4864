// The Function App on the Flex Consumption plan (Linux, Python 3.11) running as the user-assigned
// identity, and every app setting the code reads (shared/spine/settings.py,
// shared/delivery/settings.py, shared/dashboard/auth.py, %SETTING% binding expressions). All connections are identity-based: __fullyQualifiedNamespace, __tableServiceUri,
// __accountName with __credential=managedidentity and __clientId; no connection string, key or
// secret is set. tests/test_config_contract.py checks this list against the code.
//
// Settings the code reads that are deliberately NOT set here:
// default: MAX_MESSAGE_BYTES (64 KiB; the Standard tier would allow 256 KiB)
// default: MAX_ATTEMPTS (8 scheduled retries of a transient failure)
// default: RETRY_BASE_SECONDS (30 s, doubling)
// default: RETRY_MAX_SECONDS (1 h)
// default: CREDENTIAL_BROKEN_PAUSE_SECONDS (15 min)
// default: CREDENTIAL_BROKEN_MAX_SECONDS (a day of deferrals for a broken partner credential, then failed)
// default: RUN_SUMMARY_CHECK_SECONDS (the nightly run's summary checks every minute)
// default: CREDENTIAL_CACHE_SIZE (2000 customer credentials kept per instance, least recently used dropped)
// default: HOST_CREDENTIAL (managed-identity in Azure; "default" only for a developer's local run)
// default: SDK_RETRY_TOTAL (2 retries inside one call)
// default: HTTP_TIMEOUT_SECONDS (30 s)
// default: BAP_ENDPOINT (the public cloud's Power Platform admin API)
// default: POWERAPPS_ENDPOINT (the public cloud's Power Apps admin API)
// default: FLOW_ENDPOINT (the public cloud's Power Automate admin API)
// default: POWERBI_ENDPOINT (the public cloud's Power BI REST API)
// local-only: LedgerStorage (ledger connection string: Azurite)
// local-only: DeliveryStorage (delivery files' connection string: Azurite)
// default: DELIVERY_MAX_FILE_BYTES (100 MiB, the Functions host's own request limit)
// default: DELIVERY_POLL_SECONDS (one invocation polls an import for two minutes)
// default: DELIVERY_POLL_DELAY_SECONDS (then a follow-up message 30 s later)
// default: DELIVERY_MAX_POLLS (120 follow-ups, then the delivery fails as unfinished)
// local-only: ServiceBusConnection (connection string of the local broker or emulator)
// local-only: KEY_VAULT_VERIFY_CHALLENGE_RESOURCE (true in Azure, the code's default)
// local-only: PAL_CA_BUNDLE (the sandbox's test CA; Azure uses the system trust store)
// local-only: ALLOW_CUSTOM_ENDPOINTS (lets the sandbox's 127.0.0.1 endpoints receive tokens; Azure uses only its clouds' hosts)
// local-only: ARM_AUDIENCE (the sandbox's ARM wants public-cloud tokens at its own address; in Azure the audience is ARM_ENDPOINT)
// To change a default in Azure, add the setting below (or in the portal) rather than in code.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerUrl string
param applicationInsightsName string
param maximumInstanceCount int
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

param partnerId string
param allowedPartnerIds string
param onOtherPartner string
param onboardingQueueName string
param verifyQueueName string
param auditQueueName string
param deliveryQueueName string
param deliveryBlobServiceUri string
param deliveryContainerName string
param reverifySchedule string
param auditSchedule string
param serviceBusHostName string
param ledgerTableServiceUri string
param ledgerTableName string
param keyVaultUrl string
param federatedTokenAudience string
@description('Client ID of the partner\'s app registration that operators sign in to the dashboard with (its app roles).')
param dashboardClientId string
@description('Its Application ID URI, the audience of the dashboard\'s tokens. Empty: api://<client ID>, the code\'s default.')
param dashboardAudience string = ''

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'function'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      // No always-ready instances: the app costs nothing while no message arrives.
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // Flex Consumption takes the runtime from here; FUNCTIONS_WORKER_RUNTIME must not be set.
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // The Functions host's own storage (leases, keys) with the managed identity.
      AzureWebJobsStorage__accountName: storageAccountName
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId

      // Telemetry with Entra ID: the connection string only names the resource (the workspace
      // has local auth disabled, so it carries no usable key); the identity signs the uploads.
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

      // Service Bus triggers (connection "ServiceBusConnection") and the code's own sender.
      ServiceBusConnection__fullyQualifiedNamespace: serviceBusHostName
      ServiceBusConnection__credential: 'managedidentity'
      ServiceBusConnection__clientId: identityClientId
      ONBOARDING_QUEUE: onboardingQueueName
      VERIFY_QUEUE: verifyQueueName
      REVERIFY_SCHEDULE: reverifySchedule
      AUDIT_QUEUE: auditQueueName
      AUDIT_SCHEDULE: auditSchedule
      DELIVERY_QUEUE: deliveryQueueName

      // The product (shared/spine/settings.py).
      PARTNER_ID: partnerId
      ALLOWED_PARTNER_IDS: allowedPartnerIds
      ON_OTHER_PARTNER: onOtherPartner
      LedgerStorage__tableServiceUri: ledgerTableServiceUri
      LEDGER_TABLE: ledgerTableName
      DeliveryStorage__blobServiceUri: deliveryBlobServiceUri
      DELIVERY_CONTAINER: deliveryContainerName
      AZURE_CLIENT_ID: identityClientId
      KEY_VAULT_URL: keyVaultUrl
      // From the deployment's cloud; the code accepts only the known clouds' hosts here and derives
      // the ARM token scope from ARM_ENDPOINT. The audience is the cloud's own (main.bicep), the
      // one the partner app's federated credential carries.
      AZURE_AUTHORITY_HOST: environment().authentication.loginEndpoint
      ARM_ENDPOINT: environment().resourceManager
      FEDERATED_TOKEN_AUDIENCE: federatedTokenAudience

      // The operators' dashboard (shared/dashboard/auth.py): people of this (the partner's) tenant
      // sign in to the partner's app registration, whose app roles say who may read and who may act.
      DASHBOARD_TENANT_ID: tenant().tenantId
      DASHBOARD_CLIENT_ID: dashboardClientId
      DASHBOARD_AUDIENCE: dashboardAudience
    }
  }
}

// Publishing with a user name and password is turned off: azd deploys with Entra ID.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output url string = 'https://${functionApp.properties.defaultHostName}'
