"""The core of PAL Autopilot, without Azure Functions: two rooms.

- `shared.spine`: the machinery every domain of work uses (envelope, decision, retries, receipts,
  credentials, transport, settings, errors).
- `shared.links`: the first domain, Partner Admin Links (message, linker, service, ledger, nightly
  run, HTTP API).

A new domain (attribution next) is a third room beside `links`, built on the spine.
Importing this package loads nothing: the function adapters import only what they need.
"""
