"""The seats domain's services: import them from here outside ``portal.seats``.

They live by meaning in

* :mod:`portal.seats.subscriptions` — reserve, resize and cancel subscriptions
  (shortage handling: reject, partial, waitlist);
* :mod:`portal.seats.waitlist` — grant waiting seats first come first served;
* :mod:`portal.seats.assignments` — give and take back people's seats;
* :mod:`portal.seats.requests` — members ask for seats, admins decide;
* :mod:`portal.seats.capacity` — invariant 1 (reserved never above capacity in force);
* :mod:`portal.seats.lifecycle` — the subscription states and their transition table.

Who may do what is :mod:`portal.kernel.policy` (``subscription.*``, ``seat.*``).

Importing this module connects the seats receivers of :mod:`portal.signals`
(a pool changing or growing, a person deactivated); :func:`portal.create_app`
does.
"""

from __future__ import annotations

from portal.seats.assignments import (
    BulkResult,
    seat_assign,
    seat_assign_many,
    seat_release,
)
from portal.seats.capacity import free_seats
from portal.seats.requests import seat_request_create, seat_request_decide
from portal.seats.subscriptions import (
    MAX_QUANTITY,
    OnShortage,
    Outcome,
    product_for_subscription,
    subscription_cancel,
    subscription_create,
    subscription_resize,
)
from portal.seats.waitlist import waitlist_fill

__all__ = [
    "MAX_QUANTITY",
    "BulkResult",
    "OnShortage",
    "Outcome",
    "free_seats",
    "product_for_subscription",
    "seat_assign",
    "seat_assign_many",
    "seat_release",
    "seat_request_create",
    "seat_request_decide",
    "subscription_cancel",
    "subscription_create",
    "subscription_resize",
    "waitlist_fill",
]
