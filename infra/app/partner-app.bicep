// The partner's multi-tenant app registration. Each customer's administrator consents to it once
// (docs/customer-onboarding.md), which creates its service principal in their tenant; the Function
// App then signs in there as that service principal, with no secret: the app trusts the Function
// App's user-assigned identity through a federated identity credential (issuer: this tenant's
// Entra ID v2.0 endpoint, subject: the identity's principal ID, audience: the cloud's token-exchange
// audience, api://AzureADTokenExchange in the public cloud).
// The code's side of this is shared/spine/credentials.py (ClientAssertionCredential with a
// managed-identity token as the assertion).
//
// Declared with the Microsoft Graph Bicep extension (alias in bicepconfig.json), which needs Bicep
// 0.36.1 or later (bundled from azd 1.17.0) and deploys to the public cloud only. The deploying user
// needs the right to create app registrations in the partner tenant (Application Developer, or the
// default user setting that lets users register apps); a service principal that deploys needs the
// Microsoft Graph application permission Application.ReadWrite.OwnedBy (docs/deploy.md).
extension microsoftGraphV1

param uniqueName string
param displayName string
param identityPrincipalId string
param federatedTokenAudience string
param redirectUri string

@description('The operators\' dashboard\'s address (https://<function app host>/api/dashboard): the single-page-app redirect URI its sign-in returns to.')
param dashboardRedirectUri string

@description('Object ID made an owner of the app (the deploying user), so that it can manage the app later; empty: none added.')
param ownerPrincipalId string = ''

var issuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'
var userReadScopeId = 'e1fe6dd8-ba31-4d61-89e7-88639da4683d'
// The Application ID URI: api://<tenant ID>/<unique name> is a form Entra ID accepts on a
// multi-tenant app without a verified domain, and is known before the app (and its appId) exists.
var identifierUri = 'api://${tenant().tenantId}/${uniqueName}'

resource partnerApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMultipleOrgs'
  // The admin-consent page returns the customer's administrator here.
  web: {
    redirectUris: [
      redirectUri
    ]
  }
  // The dashboard's sign-in: the authorization code flow with PKCE from the page itself (no secret,
  // no implicit grant), v2 access tokens for the app's own Application ID URI, and its app roles.
  spa: {
    redirectUris: [
      dashboardRedirectUri
    ]
  }
  identifierUris: [
    identifierUri
  ]
  api: {
    requestedAccessTokenVersion: 2
  }
  // The dashboard's two app roles (shared/dashboard/auth.py), assigned to people under Enterprise
  // applications. Their IDs are fixed (from the app's unique name and the role's value), so a new
  // deployment never replaces a role, which would drop its assignments.
  appRoles: [
    {
      id: guid(uniqueName, 'PalAutopilot.Reader')
      value: 'PalAutopilot.Reader'
      displayName: 'PAL Autopilot reader'
      description: 'Sees the PAL Autopilot dashboard: the fleet, every customer, its history and attribution.'
      allowedMemberTypes: [
        'User'
      ]
      isEnabled: true
    }
    {
      id: guid(uniqueName, 'PalAutopilot.Operator')
      value: 'PalAutopilot.Operator'
      displayName: 'PAL Autopilot operator'
      description: 'Sees the PAL Autopilot dashboard and acts on a customer (relink, audit now, offboard), recorded as the operator.'
      allowedMemberTypes: [
        'User'
      ]
      isEnabled: true
    }
  ]
  // The app calls Azure Resource Manager with app-only tokens, which need no declared permission
  // (ARM authorises the service principal itself). User.Read (delegated, sign-in only) is listed
  // because Entra ID refuses admin consent to an app that declares no permission at all.
  requiredResourceAccess: [
    {
      resourceAppId: microsoftGraphAppId
      resourceAccess: [
        {
          id: userReadScopeId
          type: 'Scope'
        }
      ]
    }
  ]
  owners: {
    relationshipSemantics: 'append'
    relationships: empty(ownerPrincipalId) ? [] : [
      ownerPrincipalId
    ]
  }

  // At most 20 federated credentials per app; this one trusts the Function App's identity.
  resource functionIdentity 'federatedIdentityCredentials@v1.0' = {
    name: '${partnerApp.uniqueName}/pal-autopilot-function'
    description: 'The PAL Autopilot Function App\'s user-assigned managed identity'
    issuer: issuer
    subject: identityPrincipalId
    audiences: [
      federatedTokenAudience
    ]
  }
}

output clientId string = partnerApp.appId
output objectId string = partnerApp.id
// The dashboard's audience (DASHBOARD_AUDIENCE): the Application ID URI its page asks a token for.
output identifierUri string = identifierUri
// What the credential trusts, for the post-provision hook to check without the Azure CLI.
output federatedSubject string = partnerApp::functionIdentity.subject
