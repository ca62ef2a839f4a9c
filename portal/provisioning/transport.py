"""What one delivery attempt to a vendor's application came to, whatever carried it.

The delivery engine (:mod:`portal.provisioning.delivery`) hands a due delivery to its
transport: SCIM (:mod:`portal.provisioning.scim_client`) or a signed webhook
(:mod:`portal.provisioning.webhooks`). Each answers an :class:`Outcome`, which the engine
records as an attempt and turns into "delivered", "retry later" or "failed".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One attempt's result.

    ``delivered``: the vendor's application holds the change. Otherwise ``retry`` says
    whether trying again may help (a timeout, a refused connection, a 5xx or 429) or not
    (a 4xx the same request will always get: the delivery fails at once). ``request`` and
    ``response`` are what the delivery log shows (secrets already left out), each cut to
    a few kilobytes; ``status`` is the HTTP status, if an answer came. ``retry_after``:
    seconds the vendor asked the portal to wait (a 429's or 503's ``Retry-After``), which
    the engine waits at least, instead of a shorter backoff.
    """

    delivered: bool
    retry: bool = False
    status: int | None = None
    request: str = ""
    response: str = ""
    error: str | None = None
    retry_after: int | None = None

    @classmethod
    def ok(cls, *, status: int | None, request: str = "", response: str = "") -> Outcome:
        return cls(delivered=True, status=status, request=request, response=response)

    @classmethod
    def failed(
        cls,
        *,
        retry: bool,
        status: int | None = None,
        request: str = "",
        response: str = "",
        error: str | None = None,
        retry_after: int | None = None,
    ) -> Outcome:
        return cls(
            delivered=False,
            retry=retry,
            status=status,
            request=request,
            response=response,
            error=error,
            retry_after=retry_after,
        )
