"""What every HTTP trigger adapter shares: the methods routed to it, and an ApiResponse as the
Functions host's response."""

from __future__ import annotations

import azure.functions as func

from shared.spine.problem import ApiResponse

__all__ = ["ALL_METHODS", "reply"]

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
"""Every method is routed to a trigger so that a wrong one gets 405 with Allow, not the host's 404."""


def reply(response: ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        body=response.encoded(),
        status_code=response.status,
        headers=response.headers,
        mimetype=response.content_type,
        charset="utf-8",
    )
