"""The attribution domain: which Power Platform resources credit the partner, and why not.

A Partner Admin Link earns nothing by itself: Microsoft credits the partner for a resource only
when the PAL-linked identity is that resource's attributed identity (owner, creator, publisher or
active user, by product).

- `rules`, `owner_tables`, `routes`, `rules_document`: the seed's rules as data (who counts per
  product, its three owner tables, what a service principal can do through Microsoft's APIs,
  verified or inferred) and their JSON.
- `advisor`: a pure answer to "does this count, and what do I do?" derived from those rules.
- `inventory`: reading a customer's Power Platform as the linked service principal.
- `findings`: per resource, attributed or not (pure), and the grant an API refused for.
- `audit`: the fan-out per customer and environment on the audit queue, with the spine's retries.
- `rows`, `store`: findings, their changes and the run summaries in the ledger.
- `api`: the operators' HTTP API for attribution.

Next: delivery and repair, built on these. Importing this package loads nothing.
"""
