"""Renewal forecasts (issue 16): each pool's projected reserved seats, run-out date and
recommended capacity.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("forecasts", __name__)
