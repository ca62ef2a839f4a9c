"""Billing: rating usage and seats into money, invoices, credit notes, exports."""
