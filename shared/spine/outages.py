"""The operators' APIs answer a storage outage the same way: 503 with Retry-After, never a 500."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec

from shared.spine.errors import is_unavailable
from shared.spine.problem import ApiResponse, storage_unavailable

__all__ = ["answers_outages"]

logger = logging.getLogger(__name__)
_P = ParamSpec("_P")


def answers_outages(call: Callable[_P, Awaitable[ApiResponse]]) -> Callable[_P, Awaitable[ApiResponse]]:
    """A storage outage is answered 503 with Retry-After; anything else is a bug and raises."""

    @functools.wraps(call)
    async def answer(*args: _P.args, **kwargs: _P.kwargs) -> ApiResponse:
        try:
            return await call(*args, **kwargs)
        except Exception as error:
            if not is_unavailable(error):
                raise
            logger.warning("HTTP API: the ledger is unavailable (%s); answered 503", type(error).__name__)
            return storage_unavailable()

    return answer
