// One storage account: the Functions host's own blobs (leases, keys), the deployment package
// container of the Flex Consumption app, and the ledger table. Shared-key access is disabled, so
// no account key or SAS can be used against it; everything signs in with Entra ID.
param name string
param location string
param tags object
param deploymentContainerName string
param deliveryContainerName string
param ledgerTableName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'

    // azd uploads the app package here; the app reads it with its managed identity.
    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    // Solution and report files to deliver (shared/delivery): one blob per content (its SHA-256),
    // written by the HTTP API or an uploader, read by the delivery worker.
    resource deliveryContainer 'containers' = {
      name: deliveryContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource tableService 'tableServices' = {
    name: 'default'

    // The ledger (shared/links/ledger.py): one table, PartitionKey = customer tenant. Declared here so it
    // exists before the first message; the code also creates it if missing.
    resource ledgerTable 'tables' = {
      name: ledgerTableName
    }
  }
}

output name string = storage.name
output id string = storage.id
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
output tableServiceUri string = storage.properties.primaryEndpoints.table
output blobServiceUri string = storage.properties.primaryEndpoints.blob
