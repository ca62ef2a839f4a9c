"""Words people read, in their language: the markers every layer uses.

The portal speaks English and Russian (SPEC section 8.6). Text a person reads is
written in English inside one of these markers, and the Russian catalogue
(``portal/translations``) holds its translation; ``pybabel extract`` finds them:

* ``_("Seat released.")``: translated now, in the reader's language (pages, flashes);
* ``_l("No free seat in %(pool)s.", pool=name)``: translated when it is shown, for text
  made before anybody knows who will read it (domain errors, form labels, module
  constants); placeholders are named, so a translation can put them in its own order;
* ``_n("%(num)d seat", "%(num)d seats", count)`` and ``_ln``: plural forms (Russian
  has three: 1 место, 2 места, 5 мест).

Outside a request (a job, the CLI) they answer in English unless the caller chose a
language with :func:`portal.i18n.in_language`. Identifiers (codes, API field names,
slugs, audit event names) are never translated.
"""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext as _ln
from flask_babel import ngettext as _n

__all__ = ["LANGUAGES", "_", "_l", "_ln", "_n"]

# The languages of the portal, the first the default; each has a catalogue but English,
# which is the text itself.
LANGUAGES: tuple[str, ...] = ("en", "ru")
