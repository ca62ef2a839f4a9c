"""Provisioning into vendors' applications (issue 17, SPEC 8.4): the portal as SCIM client
and as a signed-webhook sender, the delivery outbox and log, and reconciliation."""
