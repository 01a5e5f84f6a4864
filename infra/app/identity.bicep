// The Function App's user-assigned managed identity. User-assigned rather than system-assigned so
// that its principal ID exists before the app does (role assignments and the partner app's
// federated credential refer to it) and survives re-creating the app.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
