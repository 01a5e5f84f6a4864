// Every role assignment, in one place, each named guid(scope, principal, role) so that re-running
// the deployment finds the same assignment instead of failing on a duplicate.
//
// The Function App's identity gets exactly what the code and the host use:
//   Service Bus: Data Owner on the namespace (both queues). The triggers receive, the code sends
//     (scheduled retries, the nightly run's verify messages), and the scale controller of the Flex
//     Consumption plan reads each queue's runtime properties (active message count) to decide how
//     many instances to run. With Data Receiver and Data Sender alone that read is refused (it needs
//     the Manage right) and scaling runs on less information. Microsoft's identity-based connection
//     docs for Functions name Azure Service Bus Data Owner for Service Bus triggers; it is the least
//     built-in role with that right, and it includes sending and receiving, so it replaces both.
//     Service Bus has no data action that reads entity properties without also managing them, so a
//     custom role could not be narrower on the data plane; one with the data actions only (no
//     control-plane `Microsoft.ServiceBus/*`) would be, but Microsoft does not document it for the
//     scale controller, and creating role definitions needs Owner or User Access Administrator from
//     whoever deploys. Scoped to the namespace, which holds only this product's two queues.
//   Storage: Blob Data Owner on the account (the host's leases and keys, the deployment package, and
//     the delivery files in the deliveries container, which lives in the same account) and
//     Table Data Contributor on the table service (the ledger). Not on the ledger table alone: the
//     code calls create_table on first use (shared/links/ledger.py), a request to the table service
//     (POST /Tables), which Storage does not document as allowed by a role on one table; refused, it
//     would fail every message. The role holds table permissions only, so on the table service it
//     reaches no blob, queue or file data, and the account has no other table.
//   Key Vault Secrets User: reads per-customer secrets and certificates by name.
//   Monitoring Metrics Publisher: telemetry into Application Insights with local auth disabled.
// The deploying user (optional, userDataRoles) gets what `palctl` and a local run need: Service Bus
// Data Sender and Receiver (enqueue, dead-letter list/replay), Table Data Contributor (read the
// ledger), Blob Data Contributor on the deliveries container only (upload files to deliver), and Key Vault Secrets Officer instead of Secrets User, to store per-customer secrets. A
// pipeline's service principal gets none of them (main.bicep passes false for it).
param identityPrincipalId string

@description('Object ID of the deploying user or service principal; empty: no assignments for it.')
param userPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

@description('Give userPrincipalId the data-plane roles of palctl and a local run; false: none.')
param userDataRoles bool = true

param storageAccountName string
param deliveryContainerName string
param serviceBusNamespaceName string
param keyVaultName string
param applicationInsightsName string

// Built-in role definition IDs (the same in every tenant).
var roles = {
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var withUser = !empty(userPrincipalId) && userDataRoles

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deliveryContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/${deliveryContainerName}'
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// --- The Function App's user-assigned identity --------------------------------------------------

// Receive, send, and read queue runtime properties for the scale controller (see the top).
resource appServiceBusOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, identityPrincipalId, roles.serviceBusDataOwner)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(tableService.id, identityPrincipalId, roles.storageTableDataContributor)
  scope: tableService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- The deploying user (optional) --------------------------------------------------------------

resource userServiceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(serviceBus.id, userPrincipalId, roles.serviceBusDataReceiver)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userServiceBusSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(serviceBus.id, userPrincipalId, roles.serviceBusDataSender)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(tableService.id, userPrincipalId, roles.storageTableDataContributor)
  scope: tableService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// An uploader of delivery files (palctl, a pipeline run as the deploying user) writes to the
// deliveries container alone: Blob Data Contributor there, nothing on the host's own blobs.
resource userDeliveryContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(deliveryContainer.id, userPrincipalId, roles.storageBlobDataContributor)
  scope: deliveryContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(vault.id, userPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
