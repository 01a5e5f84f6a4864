"""Which Azure roles earn partner recognition: Microsoft's partner earned credit (PEC) role table, as data.

Microsoft recognises a partner for Azure consumption through the PAL-linked identity's Azure role
assignments, and only for the roles its PEC table marks eligible (read-only roles are not). This is
that table, row by row, with each built-in role's definition ID (the GUID every tenant shares), so
that a role assignment can be judged without asking ARM what the role is called.

To update: read the source page again, add, change or remove rows here, and set `SOURCE_DATE` to the
page's date. A role the table does not name (a newer built-in role, or a customer's custom role)
is reported by its name and never counted as earning: only Microsoft's list decides.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LEAST_PRIVILEGE",
    "PEC_ROLES",
    "SOURCE_DATE",
    "SOURCE_URL",
    "PecRole",
    "pec_role",
]

SOURCE_URL = "https://learn.microsoft.com/partner-center/billing/azure-roles-perms-pec"
"""Microsoft Learn, "Roles and permissions required to receive partner earned credit"."""
SOURCE_DATE = "2022-11-08"
"""The date the source page carries (ms.date) for the table as copied here."""
ROLE_IDS_SOURCE = "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles"
"""Where the role definition IDs of the built-in roles are published."""


@dataclass(frozen=True)
class PecRole:
    """One row of the PEC table: a built-in role, and whether it earns partner earned credit."""

    role_definition_id: str
    """The built-in role's definition ID (the last segment of its roleDefinitionId), lower case."""
    name: str
    """The role's name as the table spells it."""
    qualifies: bool
    """"PEC eligible": Yes."""


_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner", True),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor", True),
    ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", False),
    ("c2f4ef07-c644-48eb-af81-4b1b4947fb11", "AcrDelete", True),
    ("6cef56e8-d556-48e5-a04f-b8e64114680f", "AcrImageSigner", True),
    ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull", True),
    ("8311e382-0749-4cb8-b61a-304f252e45ec", "AcrPush", True),
    ("cdda3590-29a3-44f6-95f2-9f980659eb04", "AcrQuarantineReader", False),
    ("c8d4ff99-41c3-41a8-9f60-21dfdad59608", "AcrQuarantineWriter", True),
    ("312a565d-c81f-4fd8-895a-4e21e48d571c", "API Management Service Contributor", True),
    ("e022efe7-f5ba-4159-bbe4-b44f577e9b61", "API Management Service Operator Role", True),
    ("71522526-b88f-4d52-b57f-d31fc3546d0d", "API Management Service Reader Role", False),
    ("ae349356-3a1b-4a5e-921d-050484c6347e", "Application Insights Component Contributor", True),
    ("08954f03-6346-4c2e-81c0-ec3a5cfae23b", "Application Insights Snapshot Debugger", True),
    ("4fe576fe-1146-4730-92eb-48519fa6bf9f", "Automation Job Operator", True),
    ("d3881f73-407a-4167-8283-e981cbba0404", "Automation Operator", True),
    ("5fb5aef8-1081-4b8e-bb16-9d5d0385bab5", "Automation Runbook Operator", True),
    ("4f8fab4f-1852-4a58-a46a-8eaf358af14a", "Avere Contributor", True),
    ("c025889f-8102-4ebf-b32c-fc0c6f0c6bd9", "Avere Operator", True),
    ("f526a384-b230-433a-b45c-95f59c4a2dec", "Azure Event Hubs Data Owner", True),
    ("a638d3c7-ab3a-418d-83e6-5f17a39d4fde", "Azure Event Hubs Data Receiver", True),
    ("2b629674-e913-4c01-ae53-ef4638d8f975", "Azure Event Hubs Data Sender", True),
    ("0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8", "Azure Kubernetes Service Cluster Admin Role", True),
    ("4abbcc35-e782-43d8-92c5-2d3f1bd2253f", "Azure Kubernetes Service Cluster User Role", True),
    ("423170ca-a8f6-4b0f-8487-9e4eb8f49bfa", "Azure Maps Data Reader (Preview)", False),
    ("090c5cfd-751d-490a-894a-3ce6f1109419", "Azure Service Bus Data Owner", True),
    ("4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0", "Azure Service Bus Data Receiver", True),
    ("69a216fc-b8fb-44d8-bc22-1f3c2cd27a39", "Azure Service Bus Data Sender", True),
    ("6f12a6df-dd06-4f3e-bcb1-ce8be600526a", "Azure Stack Registration Owner", True),
    ("5e467623-bb1f-42f4-a55d-6e525e11384b", "Backup Contributor", True),
    ("00c29273-979b-4161-815c-10b084fb9324", "Backup Operator", True),
    ("a795c7a0-d4a2-40c1-ae25-d81f01202912", "Backup Reader", False),
    ("fa23ad8b-c56e-40d8-ac0c-ce449e1d2c64", "Billing Reader", False),
    ("5e3c6656-6cfa-4708-81fe-0de47ac73342", "BizTalk Contributor", True),
    ("31a002a1-acaf-453e-8a5b-297c9ca1ea24", "Blockchain Member Node Access (Preview)", True),
    ("41077137-e803-4205-871c-5a86e6a753b4", "Blueprint Contributor", True),
    ("437d2ced-4a38-4302-8479-ed2bcb43d090", "Blueprint Operator", True),
    ("426e0c7f-0c7e-4658-b36f-ff54d6c29b45", "CDN Endpoint Contributor", True),
    ("871e35f6-b5c1-49cc-a043-bde969a0f2cd", "CDN Endpoint Reader", False),
    ("ec156ff8-a8d1-4d15-830c-5b80698ca432", "CDN Profile Contributor", True),
    ("8f96442b-4075-438f-813d-ad51ab4019af", "CDN Profile Reader", False),
    ("b34d265f-36f7-4a0d-a4d4-e158ca92e90f", "Classic Network Contributor", True),
    ("86e8f5dc-a6e9-4c67-9d15-de283e8eac25", "Classic Storage Account Contributor", True),
    ("985d6b00-f706-48f5-a6fe-d0ca12fb668d", "Classic Storage Account Key Operator Service Role", True),
    ("d73bb868-a0df-4d4d-bd69-98a00b01fccb", "Classic Virtual Machine Contributor", True),
    ("25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68", "Cognitive Services Contributor", True),
    ("b59867f0-fa02-499b-be73-45a86b5b3e1c", "Cognitive Services Data Reader (Preview)", False),
    ("a97b65f3-24c7-4388-baec-2e87135dc908", "Cognitive Services User", False),
    ("fbdf93bf-df7d-467e-a4d2-9458aa1360c8", "Cosmos DB Account Reader Role", False),
    ("230815da-be43-4aae-9cb4-875f7bd000aa", "Cosmos DB Operator", True),
    ("db7b14f2-5adf-42da-9f96-f2ee17bab5cb", "CosmosBackupOperator", True),
    ("434105ed-43f6-45c7-a02f-909b2ba83430", "Cost Management Contributor", True),
    ("72fafb9e-0641-4937-9268-a91bfd8191a3", "Cost Management Reader", False),
    ("add466c9-e687-43fc-8d98-dfcf8d720be5", "Data Box Contributor", True),
    ("028f4ed7-e2a9-465e-a8f4-9c0ffdfdc027", "Data Box Reader", False),
    ("673868aa-7521-48a0-acc6-0f60742d39f5", "Data Factory Contributor", True),
    ("47b7735b-770e-4598-a7da-8b91488b4c88", "Data Lake Analytics Developer", True),
    ("150f5e0c-0603-4f03-8c7f-cf70034c4e90", "Data Purger", True),
    ("76283e04-6283-4c54-8f91-bcf1374a3c64", "DevTest Labs User", True),
    ("befefa01-2a29-4197-83a8-272ff33ce314", "DNS Zone Contributor", True),
    ("5bd9cd88-fe45-4216-938b-f97437e15450", "DocumentDB Account Contributor", True),
    ("428e0ff0-5e57-4d9c-a221-2c70d0e0a443", "Event Grid EventSubscription Contributor", True),
    ("2414bbcf-6497-4faf-8c65-045460748405", "Event Grid EventSubscription Reader", False),
    ("61ed4efc-fab3-44fd-b111-e24485cc132a", "HDInsight Cluster Operator", True),
    ("8d8d5a11-05d3-4bda-a417-a08778121c7c", "HDInsight Domain Services Contributor", True),
    ("03a6d094-3444-4b3d-88af-7477090a9e5e", "Intelligent Systems Account Contributor", True),
    ("f25e0fa2-a7c8-4377-a976-54943a77a395", "Key Vault Contributor", True),
    ("b97fb8bc-a8b2-4522-a38b-dd33c7e65ead", "Lab Creator", True),
    ("92aaf0da-9dab-42b6-94a3-d43ce8d16293", "Log Analytics Contributor", True),
    ("73c42c96-874c-492b-b04d-ab87d138a893", "Log Analytics Reader", False),
    ("87a39d53-fc1b-424a-814c-f7e04687dc9e", "Logic App Contributor", True),
    ("515c2055-d9d4-4321-b1b9-bd0c9a0f79fe", "Logic App Operator", True),
    ("c7393b34-138c-406f-901b-d8cf2b17e6ae", "Managed Application Operator Role", True),
    ("b9331d33-8a36-4f8c-b097-4f54124fdb44", "Managed Applications Reader", False),
    ("e40ec5ca-96e0-45a2-b4ff-59039f2c2b59", "Managed Identity Contributor", True),
    ("f1a07417-d97a-45cb-824c-7a7467783830", "Managed Identity Operator", True),
    ("5d58bcaf-24a5-4b20-bdb6-eed9f69fbe4c", "Management Group Contributor", True),
    ("ac63b705-f282-497d-ac71-919bf39d939d", "Management Group Reader", False),
    ("749f88d5-cbae-40b8-bcfc-e573ddc772fa", "Monitoring Contributor", True),
    ("3913510d-42f4-4e42-8a64-420c390055eb", "Monitoring Metrics Publisher", True),
    ("43d0d8ad-25c7-4714-9337-8ba259a9fe05", "Monitoring Reader", False),
    ("4d97b98b-1d4f-4787-a291-c67834d212e7", "Network Contributor", True),
    ("5d28c62d-5b37-4476-8438-e587778df237", "New Relic APM Account Contributor", True),
    ("c12c1c16-33a1-487b-954d-41c89c60f349", "Reader and Data Access", True),
    ("e0f68234-74aa-48ed-b826-c38b57376e17", "Redis Cache Contributor", True),
    ("36243c78-bf99-498c-9df9-86d9f8d28608", "Resource Policy Contributor (Preview)", True),
    ("188a0f2f-5c9e-469b-ae67-2aa5ce574b94", "Scheduler Job Collections Contributor", True),
    ("7ca78c08-252a-4471-8644-bb5ff32d4ba0", "Search Service Contributor", True),
    ("fb1c8493-542b-48eb-b624-b4c8fea62acd", "Security Admin", True),
    ("e3d13bf0-dd5a-482e-ba6b-9b8433878d10", "Security Manager (Legacy)", True),
    ("39bc4728-0917-49c7-9d2c-d95423bc2eb4", "Security Reader", False),
    ("6670b86e-a3f7-4917-ac9b-5d6ab1be4567", "Site Recovery Contributor", True),
    ("494ae006-db33-4328-bf46-533a6560a3ca", "Site Recovery Operator", True),
    ("dbaa88c4-0c30-4179-9fb3-46319faa6149", "Site Recovery Reader", False),
    ("8bbe83f1-e2a6-4df7-8cb4-4e04d4e5c827", "Spatial Anchors Account Contributor", True),
    ("70bbe301-9835-447d-afdd-19eb3167307c", "Spatial Anchors Account Owner", True),
    ("5d51204f-eb77-4b1c-b86a-2ec626c49413", "Spatial Anchors Account Reader", False),
    ("9b7fa17d-e63e-47b0-bb0a-15c516ac86ec", "SQL DB Contributor", True),
    ("4939a1f6-9ae0-4e48-a1e0-f2cbe897382d", "SQL Managed Instance Contributor", True),
    ("056cd41c-7e88-42e1-933e-88ba6a50c9c3", "SQL Security Manager", True),
    ("6d8ee4ec-f05a-4a1d-8b00-a9b17e38b437", "SQL Server Contributor", True),
    ("17d1049b-9a84-46fb-8f53-869881c3d3ab", "Storage Account Contributor", True),
    ("81a9662b-bebf-436f-a333-f67b29880f12", "Storage Account Key Operator Service Role", True),
    ("ba92f5b4-2d11-453d-a403-e96b0029c9fe", "Storage Blob Data Contributor", True),
    ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "Storage Blob Data Owner", True),
    ("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", "Storage Blob Data Reader", False),
    ("db58b8e5-c6ad-4a2a-8342-4190687cbf4a", "Storage Blob Delegator", True),
    ("0c867c2a-1d8c-454a-a3db-ab2ea1bdc8bb", "Storage File Data SMB Share Contributor", True),
    ("a7264617-510b-434b-a828-9731dc254ea7", "Storage File Data SMB Share Elevated Contributor", True),
    ("aba4ae5f-2193-4029-9191-0cb91df5e314", "Storage File Data SMB Share Reader", False),
    ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", "Storage Queue Data Contributor", True),
    ("8a0f0c08-91a1-4084-bc3d-661d67233fed", "Storage Queue Data Message Processor", True),
    ("c6a89b2d-59bc-44d0-9896-0f6e12d7b80a", "Storage Queue Data Message Sender", True),
    ("19e7f393-937e-4f77-808e-94535e297925", "Storage Queue Data Reader", False),
    ("cfd33db0-3dd1-45e3-aa9d-cdbdf3b6f24e", "Support Request Contributor", True),
    ("a4b10055-b0c7-44c2-b00f-c7b5b3550cf7", "Traffic Manager Contributor", True),
    ("18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "User Access Administrator", True),
    ("1c0163c0-47e6-4577-8991-ea5c82e286e4", "Virtual Machine Administrator Login", True),
    ("9980e02c-c2be-4d73-94e8-173b1dc7cf3c", "Virtual Machine Contributor", True),
    ("fb879df8-f326-4884-b1cf-06f3ad86be52", "Virtual Machine User Login", True),
    ("2cc479cb-7b4d-49a8-b449-8c00fd0f0a4b", "Web Plan Contributor", True),
    ("de139f84-1756-47ae-9be6-808fbbe84772", "Website Contributor", True),
)

PEC_ROLES: tuple[PecRole, ...] = tuple(PecRole(*row) for row in _ROWS)
_BY_ID = {role.role_definition_id: role for role in PEC_ROLES}

LEAST_PRIVILEGE = _BY_ID["cfd33db0-3dd1-45e3-aa9d-cdbdf3b6f24e"]
"""Support Request Contributor: it lets the identity open support requests and read role assignments
and resource groups, not the customer's resources, and it qualifies. The role to ask a customer for
when the partner's work needs no more (Contributor when the work changes resources)."""


def pec_role(role_definition_id: str) -> PecRole | None:
    """The table's row for a role definition ID (any case), None when the table does not name it."""
    return _BY_ID.get(role_definition_id.lower())
