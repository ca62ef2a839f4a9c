"""Procurement (issue 16, SPEC 8.3): demand, purchase orders with approvals, renewal
forecasts."""
