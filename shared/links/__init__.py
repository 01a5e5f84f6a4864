"""The links domain: Partner Admin Links, from the `customer-onboarded` message to the nightly check
and the `customer-offboarded` one.

- `message`, `message_builder`: the v1 messages (`customer-onboarded`, `customer-offboarded`),
  parsed strictly and written.
- `linker`: GET, then PUT, PATCH or nothing against Microsoft.ManagementPartner (or DELETE, to unlink).
- `service`: one attempt in a straight line (read the ledger, act, decide, schedule, record);
  `verdicts`: the outcomes it decides without ARM.
- `offboarding`: a customer leaves: its link removed and no longer checked, on the service's spine.
- `ledger`: the link state, history and receipts in Table Storage.
- `reverify`: the nightly fan-out and its run summary; `api`: the operators' HTTP API.
- `retirement`, `dead_letters`: retiring an identity's record; recording dead-lettered messages.
"""
