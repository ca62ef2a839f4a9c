"""The supplier directory's pages' reads (issue 15): a page of the filtered directory and the
filter's choices. The filtering and the summaries are
:func:`portal.suppliers.selectors.directory`'s.

The council buys from tens of vendors, not thousands: the directory reads at most
:data:`DIRECTORY_MAX` matching vendors (four queries whatever the count) and pages them
in memory, :data:`PER_PAGE` a page.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import Product, ServiceStatus
from portal.pagination import Page
from portal.suppliers.selectors import DirectoryFilter, VendorSummary, countries, directory

#: Vendors a directory page shows.
PER_PAGE = 20
#: The most vendors one directory search reads.
DIRECTORY_MAX = 500


def directory_page(
    session: Session,
    *,
    filters: DirectoryFilter,
    page: int,
    now: dt.datetime,
    per_page: int = PER_PAGE,
) -> Page[VendorSummary]:
    """One page of the vendors matching ``filters`` (a page past the last is empty)."""
    found = directory(session, filters=filters, now=now, limit=DIRECTORY_MAX)
    page = max(1, page)
    start = (page - 1) * per_page
    return Page(
        items=found[start : start + per_page], page=page, per_page=per_page, total=len(found)
    )


def filter_choices(session: Session) -> dict[str, list]:
    """What the directory's filters offer: countries vendors are in, the service statuses,
    the catalogue's products (SKU, name)."""
    return {
        "countries": countries(session),
        "statuses": [status.value for status in ServiceStatus],
        "products": [
            (sku, name)
            for sku, name in session.execute(
                sa.select(Product.sku, Product.name).order_by(Product.name, Product.sku)
            )
        ],
    }
