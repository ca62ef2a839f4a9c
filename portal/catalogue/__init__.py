"""Catalogue: vendors, products and their meters, licence pools and prices."""
