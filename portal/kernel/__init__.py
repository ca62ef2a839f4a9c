"""The kernel: the few shared pieces every domain package may import.

It imports no domain package (``tests/test_architecture.py`` and the import
contracts in ``pyproject.toml`` hold that), so any domain can depend on it
without a cycle:

* :mod:`~portal.kernel.clock`: the one clock (``now_utc``, ``today``), frozen by tests;
* :mod:`~portal.kernel.actor`: who is acting (:class:`Actor`) and the four roles;
* :mod:`~portal.kernel.scope`: the organisation an actor's reads are limited to;
* :mod:`~portal.kernel.periods`: billing months (``YYYY-MM``) and their bounds;
* :mod:`~portal.kernel.money` and :mod:`~portal.kernel.iso`: integer minor units and currencies.
"""
