"""``GET /pools/{id}/forecast``: a licence pool's renewal forecast (council; SPEC 8.3).

How the forecast is made: :mod:`portal.procurement.forecast` and docs/FORECAST.md.
"""

from __future__ import annotations

import datetime as dt

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, Field

from portal.api.auth import COUNCIL, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import IdPath
from portal.catalogue.models import LicencePool
from portal.db import db_session
from portal.kernel.policy import Action
from portal.procurement import forecast as forecasting

tag = Tag(
    name="Forecasts",
    description="Renewal forecasts of licence pools: projected seats, run-out, renewal.",
)


class PoolPath(IdPath):
    pass


class MoneyOut(BaseModel):
    amount: int = Field(description="Minor units of currency")
    currency: str


class PointOut(BaseModel):
    date: dt.date
    seats: int


class ForecastOut(BaseModel):
    """A pool's renewal forecast: projected reserved seats of its product (every
    organisation's) through and past ``ends_on``, when it runs out, and what to renew."""

    pool: int = Field(description="The pool's id")
    product: str = Field(description="The product's SKU")
    as_of: dt.date = Field(description="The day the forecast was made (today)")
    starts_on: dt.date
    ends_on: dt.date
    capacity: int = Field(description="This pool's seats")
    product_capacity: int = Field(description="Seats of every pool of the product in force today")
    reserved: int = Field(description="Seats of the product reserved today")
    waiting: int = Field(description="Seats on the product's waitlist")
    open_requests: int = Field(description="People's seat requests not yet decided")
    trend_per_day: str = Field(
        description="The fitted trend, seats a day (a decimal string, four places)"
    )
    fitted_days: int = Field(description="Days of history the trend was fitted to")
    at_ends_on: int = Field(description="Projected reserved seats on ends_on")
    runs_out_on: dt.date | None = Field(
        description=(
            "The first day up to ends_on on which the projected seats plus the waitlist "
            "reach the product's capacity; null when they do not"
        )
    )
    projection: list[PointOut] = Field(
        description=(
            f"Weekly from today, ends_on included, to {forecasting.PAST_END_DAYS} days past it"
        )
    )
    next_term_starts_on: dt.date
    next_term_ends_on: dt.date
    term_months: int
    projected_peak: int = Field(description="Projected peak reserved seats of the next term")
    recommended_capacity: int = Field(
        description=(
            f"Seats to renew: (projected peak + waitlist + open requests) plus "
            f"{forecasting.HEADROOM_PERCENT} % headroom, rounded up, less the product's "
            "other pools still in force then"
        )
    )
    cost: MoneyOut = Field(description="recommended_capacity × unit cost × term_months")
    revenue: list[MoneyOut] = Field(
        description="Projected revenue of the next term at current seat prices, per currency"
    )

    @classmethod
    def of(cls, pool: LicencePool, f: forecasting.Forecast) -> ForecastOut:
        return cls.model_validate(forecasting.as_json(pool, f))


@route(
    "get",
    "/pools/<int:id>/forecast",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.POOL_READ,
    responses={200: ForecastOut},
    errors=[404],
)
def pool_forecast(path: PoolPath) -> Response:
    """A pool's renewal forecast (404 for an unknown pool); see docs/FORECAST.md."""
    pool, result = forecasting.pool_forecast(db_session(), actor=current_actor(), pool_id=path.id)
    return reply(ForecastOut.of(pool, result))
