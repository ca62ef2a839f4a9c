"""Notifications (issue 15): a person's notifications list, its unread count, and their choices."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("notifications", __name__)
