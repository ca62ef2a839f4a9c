"""The demand board (issue 16): seat requests, waitlists, product requests and utilisation per
product; members and org admins asking for a product not in the catalogue.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("demand", __name__)
