"""Tenancy: member organisations of the council and their lifecycle."""
