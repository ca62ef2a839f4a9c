"""One row per setting; values are JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime
from portal.kernel.clock import now_utc


class CouncilSetting(Base):
    """A council-wide setting, validated by :mod:`portal.settings.services`."""

    __tablename__ = "council_settings"

    key: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    value: Mapped[Any] = mapped_column(sa.JSON, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=now_utc, onupdate=now_utc
    )
