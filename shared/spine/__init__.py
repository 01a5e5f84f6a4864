"""The spine: machinery every domain of work uses, and nothing specific to one domain.

- `envelope`: a queue message's origin and our application properties (`pal*`), derived MessageIds.
- `decision`, `retry`: what an attempt calls for next (final, retry at T, defer, give up) and the
  backoff and breaker it follows.
- `outcomes`, `errors`: the one outcome type, and the one place that turns SDK errors into outcomes.
- `identity`, `credentials`, `vault_secret`: the partner's identity in a customer tenant and how it
  signs in.
- `settings`, `transport`, `servicebus`: configuration, the shared HTTP pool, queue senders.
- `untrusted`, `screening`, `identifiers`, `problem`, `write_intent`: safe handling of what comes
  from outside, and of writes to other services.
"""
