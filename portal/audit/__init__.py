"""Audit: who changed what, when, from where."""
