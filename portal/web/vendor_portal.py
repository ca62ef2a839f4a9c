"""The vendor portal (issue 15, SPEC 8.1): a vendor admin's own vendor: profile, service status
and incidents, products' seat counts, usage-reporting health, API tokens.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("vendor_portal", __name__)
