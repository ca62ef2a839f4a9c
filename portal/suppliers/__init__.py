"""Suppliers online (issue 15, SPEC 8.2): the supplier directory, vendors' service status
and its history, uptime, incidents, compliance documents, and the vendor portal's rules."""
