"""Who asked for the work being done: the person behind an operator's action (the dashboard's
signed-in operator), carried to the history event without threading it through every call.

`acting_as(actor)` sets it for the code it wraps (and the tasks that code starts); an `Attempt`
made inside takes it as its `actor`. Outside, there is none: queue messages and timers act for
nobody in particular.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ACTOR: ContextVar[str | None] = ContextVar("pal_actor", default=None)


def current_actor() -> str | None:
    """The actor of the work in progress, or None."""
    return _ACTOR.get()


def actor_text(object_id: str, name: str | None) -> str:
    """How an actor is recorded: `name (objectId)`, or the object ID alone."""
    return f"{name} ({object_id})" if name else object_id


@contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """Attribute the work done inside to `actor`."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)
