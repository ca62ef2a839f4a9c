"""Catalogue tests share the seats tests' product factory."""

from tests.seats.conftest import make_product  # noqa: F401  (a fixture, registered by import)
