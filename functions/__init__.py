"""Trigger adapters: parse the binding, call the core in `shared`, map the result back to the host."""
