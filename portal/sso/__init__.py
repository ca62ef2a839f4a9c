"""Single sign-on for member organisations: their identity provider and verified email domains.

An organisation's admin connects its OpenID provider (:class:`SsoConnection`)
and claims email domains (:class:`EmailDomain`) that a council admin verifies.
People whose email is on a verified domain are sent to that provider from
``/login`` (home-realm discovery) and may be created on their first sign-in
(just-in-time provisioning). Talking to the providers themselves is
``portal.identity.sso``'s job, the one gateway to identity providers; pages reach
it only through :func:`portal.sso.services.sign_in_begin` and ``sign_in_finish``.
"""
