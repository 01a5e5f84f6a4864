"""Delivery as the linked identity (issue 14, sections 1 and 2): a managed solution imported into a
customer's Dataverse environment, or a .pbix published to a Power BI workspace, by the service
principal the customer's Partner Admin Link is on, so that it owns what it delivers.

- settings: DELIVERY_QUEUE, the Blob Storage account and container, the limits;
- message: the queue message (a reference to the file in Blob Storage, validated strictly);
- blobs: the files, stored once under their SHA-256;
- rows, store: one `DeliveryRow` per delivery in the ledger table, in the customer's partition;
- calls: the HTTP calls as the linked service principal (refusals, throttling, Dataverse errors);
- solution, pbix: the two flows (import and poll); service: the queue's worker; api: the HTTP API.
"""
