"""SCIM 2.0 provisioning (RFC 7643/7644): an organisation's identity provider manages its people.

Each organisation has its own bearer tokens (:class:`ScimToken`) for
``/scim/v2``. Users map onto the portal's accounts of that organisation;
groups are kept here, and a group mapped to a product gives its members seats
of the organisation's subscription to it.
"""
