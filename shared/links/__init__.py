"""The links domain: Partner Admin Links, from the `customer-onboarded` message to the nightly check.

- `message`, `message_builder`: the v1 message, parsed strictly and written.
- `linker`: GET, then PUT, PATCH or nothing against Microsoft.ManagementPartner.
- `service`: one attempt in a straight line (read the ledger, act, decide, schedule, record).
- `ledger`: the link state, history and receipts in Table Storage.
- `reverify`: the nightly fan-out and its run summary; `api`: the operators' HTTP API.
- `retirement`, `dead_letters`: retiring an identity's record; recording dead-lettered messages.
"""
