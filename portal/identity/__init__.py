"""Identity: accounts, roles, sign-in sessions, invitations and password resets.

By meaning (each a module; services take a Session and an Actor, flush, never commit):

* :mod:`~portal.identity.sign_in` — checking a password, server-side sign-in sessions;
* :mod:`~portal.identity.accounts` — creating accounts, roles, (de)activation, profiles;
* :mod:`~portal.identity.invitations` — invitation links, accepting them, and approving a
  membership application with an invitation to its applicant;
* :mod:`~portal.identity.passwords` — changing one's password, resets by mail;
* :mod:`~portal.identity.selectors` — reads; :mod:`~portal.identity.auth` — Flask-Login glue;
* :mod:`~portal.identity.sso` — the OpenID gateway (pages reach it through ``portal.sso``).

Identity sits above tenancy and below sso: whether an address's domain is verified
elsewhere (seat provisioning) is ``portal.sso.services.user_provision``'s to decide.
"""
