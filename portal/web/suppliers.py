"""The supplier directory (issue 15): every signed-in person's view of vendors, their service
status, incidents and uptime; the council's status, incident and compliance-document pages.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("suppliers", __name__)
