"""Purchase orders (issue 16, SPEC 8.3): drafting, approvals, sending, receiving, vendor invoices
matched.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("procurement", __name__)
