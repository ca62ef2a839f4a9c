"""Provisioning (issue 17): a vendor's provisioning settings, the delivery log, reconciliation
(council and vendor admins).
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("provisioning", __name__)
