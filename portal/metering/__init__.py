"""Metering: usage events from vendors, their aggregates, entitlements and seat utilisation."""
