"""The JSON API under ``/api/v1``: bearer tokens, schemas, problem details, OpenAPI.

:func:`init_app` registers the resource modules' routes (one module per
resource, all on :data:`portal.api.framework.api`), the public OpenAPI
document and docs page, and exempts the API from CSRF: it is authenticated by
bearer tokens, never by cookies. Entitlement checks that can be answered in one
query are answered before Flask (:mod:`portal.api.fastpath`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the package stays light: importing any of its modules runs this file
    from portal.api.fastpath import TokenLimit


def init_app(app: Any, *, token_limit: TokenLimit) -> None:
    """Attach ``/api/v1`` to the (flask-openapi3) application.

    ``token_limit`` counts the fast path's calls in the token's rate limit
    (:func:`portal.ratelimit.fast_path_allows`; the rate limits sit above the API).
    """
    from portal.api import (  # noqa: F401 (routes)
        catalogue,
        compliance,
        demand,
        docs,
        forecasts,
        invoices,
        organisations,
        provisioning,
        purchase_orders,
        reconciliation,
        subscriptions,
        usage,
        vendor_portal,
        vendors,
    )
    from portal.api.fastpath import EntitlementCheckFastPath
    from portal.api.framework import api
    from portal.api.seat_fastpath import SeatFastPath
    from portal.extensions import csrf

    csrf.exempt(api)
    app.register_api(api)
    app.register_blueprint(docs.bp)
    # What the portal POSTs to vendors (OpenAPI 3.1 ``webhooks``), beside the paths.
    app.openapi_extensions = {**(app.openapi_extensions or {}), "webhooks": provisioning.WEBHOOKS}

    # Seat assignment and release in a few statements (docs/PERFORMANCE.md, issue 13).
    app.wsgi_app = SeatFastPath(app, app.wsgi_app, token_limit=token_limit)
    app.wsgi_app = EntitlementCheckFastPath(app, app.wsgi_app, token_limit=token_limit)
