"""Who handles invoices: council finance and council admins (and the portal itself).

The rules are :data:`portal.kernel.policy.RULES` (``invoice.*``, ``credit_note.*``,
``payment.*``); this module keeps the message the billing services refuse with.
"""

from __future__ import annotations

from portal.kernel.i18n import _l

FINANCE_ONLY = _l("Only council finance and council admins handle invoices.")
