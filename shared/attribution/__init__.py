"""The attribution domain: which Power Platform resources credit the partner, and why not.

A Partner Admin Link earns nothing by itself: Microsoft credits the partner for a resource only
when the PAL-linked identity is that resource's attributed identity (owner, creator, publisher or
active user, by product).

- `rules`: the seed's rules as data (who counts per product, its three owner tables, what a
  service principal can do through Microsoft's APIs, verified or inferred) and `rules_document`.
- `advisor`: a pure answer to "does this count, and what do I do?" derived from those rules.

Next: the audit (which resources credit the partner), delivery and repair, built on these rules.
Importing this package loads nothing.
"""
