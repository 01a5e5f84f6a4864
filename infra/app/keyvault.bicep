// Key Vault for per-customer client secrets or certificates (identity types `secret` and
// `certificate`); the federated identity needs none. RBAC mode: access is granted by role
// assignments (rbac.bicep), never by access policies.
param name string
param location string
param tags object

// Purge protection: a deleted vault or secret stays recoverable for the retention period and nobody,
// not even an Owner, can purge it before then, so a compromised or mistaken deployer cannot destroy
// the customers' secrets for good. On by default; main.bicep's keyVaultPurgeProtection turns it off
// for throw-away environments (which then can be purged by `azd down --purge`).
@description('Purge protection; cannot be turned off again once on.')
param purgeProtection bool = true

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // The API refuses `false` once set, so "off" is sent as absent.
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
  }
}

output name string = vault.name
output id string = vault.id
// vaultUri ends with '/'; the code strips it.
output url string = vault.properties.vaultUri
