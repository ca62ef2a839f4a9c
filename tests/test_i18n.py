"""English and Russian (SPEC section 8.6; docs/I18N.md).

The catalogue tests run per area (``templates/billing``, ``portal/seats`` …), so a failure
names the files to fix: text shown but not marked, a marked message without a complete
Russian translation (every plural form), a flash or domain error written as a bare string.
Then the language choice (profile, switcher, Accept-Language; the API in English unless
asked) and the locale formats.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from flask_babel import force_locale

from portal import i18n
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _l, _n
from tests import i18n_catalogue as catalogue
from tests.conftest import login
from tests.support import quick_user

AREAS = catalogue.areas()
#: Modules whose words stay English, and why.
ENGLISH_ONLY = {
    "portal/cli.py": "the CLI's output is a contract that scripts read (SPEC: the CLI)",
}
ERRORS = catalogue._error_classes()


def _in(area: str, paths: list) -> list:
    return [p for p in paths if catalogue.area(p) == area]


@pytest.mark.parametrize("area", [a for a in AREAS if a.startswith("templates")])
def test_every_text_a_template_shows_is_marked_for_translation(area):
    found = [
        t
        for p in _in(area, catalogue.template_files())
        for t in catalogue.unmarked_template_text(p)
    ]
    assert not found, 'Text shown but not marked (wrap it in {{ _("…") }}):\n' + "\n".join(found)


@pytest.mark.parametrize(
    "area", [a for a in AREAS if a.startswith("portal") and a not in ENGLISH_ONLY]
)
def test_flashes_errors_and_labels_are_marked_for_translation(area):
    found = [
        t
        for p in _in(area, catalogue.python_files())
        for t in catalogue.unmarked_python_text(p, ERRORS)
    ]
    assert not found, "Bare strings people read (use _() or _l()):\n" + "\n".join(found)


@pytest.mark.parametrize("area", AREAS)
def test_every_marked_message_has_a_russian_translation(area):
    files = _in(area, catalogue.python_files() + catalogue.template_files())
    missing = catalogue.untranslated(catalogue.marked(files))
    assert not missing, (
        f"{len(missing)} messages lack a Russian translation "
        f"(python -m tests.i18n_catalogue {area}):\n"
        + "\n".join(f"{m.where}: {m.msgid!r}" for m in missing[:40])
    )


def test_the_checks_catch_what_they_look_for(tmp_path, monkeypatch):
    """The three checks on files made to fail them (a check that cannot fail proves nothing)."""
    monkeypatch.setattr(catalogue, "ROOT", tmp_path)
    page = tmp_path / "page.html"
    page.write_text(
        '<h1>{{ _("Seats") }}</h1>\n<p title="Reserved seats">{{ n }} held</p>\n'
        '<input type="submit" value="{{ _(\'Save\') }}">\n{# Not shown #}'
    )
    found = catalogue.unmarked_template_text(page)
    assert len(found) == 2 and "Reserved seats" in found[0] and "held" in found[1]
    module = tmp_path / "module.py"
    module.write_text(
        'flash(f"Seat {email} released.", "success")\n'
        'flash(_("Seat released."), "success")\n'
        'raise Conflict("No free seat.")\n'
        'raise Conflict(_l("No free seat."))\n'
        'raise ValidationFailed(_l("Bad."), errors={"email": ["Give an email."]})\n'
        'name = StringField("Name")\n'
    )
    found = catalogue.unmarked_python_text(module, ERRORS)
    assert [f.split(": ", 1)[1] for f in found] == [
        "flash(…)",
        "Conflict(…)",
        "ValidationFailed(…)",
        "StringField(…)",
    ]
    messages = catalogue.marked([module])
    assert {m.msgid for m in messages} == {"Seat released.", "No free seat.", "Bad."}
    assert [m.msgid for m in catalogue.untranslated(messages)] != []  # not in the catalogue


def test_russian_has_three_plural_forms(app):
    with app.test_request_context(), force_locale("ru"):
        assert [_n("%(num)d seat", "%(num)d seats", n) for n in (1, 3, 5, 21, 11)] == [
            "1 место",
            "3 места",
            "5 мест",
            "21 место",
            "11 мест",
        ]
    with app.test_request_context():
        assert _n("%(num)d seat", "%(num)d seats", 1) == "1 seat"


def test_the_browser_s_language_is_used_until_one_is_chosen(app, client):
    page = client.get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    html = page.get_data(as_text=True)
    assert '<html lang="ru"' in html and "Войти" in html
    english = client.get("/login", headers={"Accept-Language": "de-DE,en;q=0.8"})
    assert '<html lang="en"' in english.get_data(as_text=True)


def test_the_switcher_keeps_the_choice_in_a_cookie_before_sign_in(app, client):
    from tests.conftest import csrf_token

    token = csrf_token(client, "/login")
    answer = client.post(
        "/language", data={"language": "ru", "next": "/login", "csrf_token": token}
    )
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")
    assert '<html lang="ru"' in client.get("/login").get_data(as_text=True)
    refused = client.post(
        "/language", data={"language": "xx", "next": "//evil.example", "csrf_token": token}
    )
    assert refused.status_code == 302 and "evil" not in refused.headers["Location"]
    assert '<html lang="ru"' in client.get("/login").get_data(as_text=True)  # unchanged


def test_a_signed_in_person_s_choice_is_saved_and_wins_over_the_browser(app, client, make_org):
    from portal.db import db
    from portal.identity.models import User
    from tests.conftest import csrf_token

    org = make_org()
    user = quick_user(app, role="member", org=org)
    login(client, user)
    token = csrf_token(client, "/my")
    client.post("/language", data={"language": "ru", "next": "/my", "csrf_token": token})
    with app.app_context():
        assert db.session.get(User, user.id).locale == "ru"
    page = client.get("/my", headers={"Accept-Language": "en"})
    assert '<html lang="ru"' in page.get_data(as_text=True)


def test_the_api_answers_in_english_unless_asked(app):
    with app.test_request_context("/api/v1/x"):
        error = ValidationFailed(
            _l("Choose English or Russian."), errors={"language": [_l("Bad request")]}
        )
        assert error.detail == "Choose English or Russian." and error.errors == {
            "language": ["Bad request"]
        }
    with app.test_request_context("/api/v1/x", headers={"Accept-Language": "ru"}):
        assert error.detail == "Выберите английский или русский язык."
        assert (
            error.errors == {"language": ["Неверный запрос"]}
            and str(error.title) == "Данные не прошли проверку"
        )
    with app.test_request_context("/api/v1/x", headers={"Accept-Language": "fr"}):
        assert error.detail == "Choose English or Russian."


def test_an_api_problem_is_localised_only_when_asked(app, client):
    english = client.get("/api/v1/organisations", headers={"Accept-Language": "en"})
    russian = client.get("/api/v1/organisations", headers={"Accept-Language": "ru"})
    assert english.status_code == russian.status_code == 401
    assert english.json["code"] == russian.json["code"]  # codes never change
    assert (
        english.headers["Content-Language"] == "en" and russian.headers["Content-Language"] == "ru"
    )


def test_money_numbers_and_dates_in_the_reader_s_locale(app):
    day = dt.date(2026, 12, 1)
    moment = dt.datetime(2026, 12, 1, 10, 5, tzinfo=dt.UTC)
    with app.test_request_context():
        assert i18n.money(123450, "EUR") == "€1,234.50"
        assert i18n.number(Decimal("4140")) == "4,140"  # never 4.14E+3
        assert i18n.number(Decimal("12.0000"), 4) == "12" and i18n.number(0.16667, 2) == "0.17"
        assert i18n.date(day) == "2026-12-01" and i18n.datetime(moment) == "2026-12-01 10:05 UTC"
        assert i18n.percent_bp(1250) == "12.5%"
    with app.test_request_context(), force_locale("ru"):
        assert i18n.money(123450, "EUR") == "1\xa0234,50\xa0€"
        assert i18n.number(Decimal("4140")) == "4\xa0140"
        assert i18n.date(day) == "1 дек. 2026\u202fг."
        assert i18n.datetime(moment) == "1 дек. 2026\u202fг., 10:05 UTC"
        assert i18n.percent_bp(1250) == "12,5%"


def test_a_status_badge_says_its_word_in_the_reader_s_language(app):
    from portal.billing.models import InvoiceStatus

    template = app.jinja_env.from_string(
        '{% from "_macros.html" import status %}{{ status(value) }}'
    )
    with app.test_request_context():
        assert i18n.status_word("under_review") == "under review"
        assert i18n.status_word(InvoiceStatus.OPEN) == "open"  # an enum: its value's word
        assert i18n.status_word("on_hold") == "on hold"  # no word: the code, readable
        assert template.render(value="under_review") == (
            '<span class="badge badge-under_review">under review</span>'
        )
    with app.test_request_context(), force_locale("ru"):
        assert i18n.status_word("under_review") == "на рассмотрении"
        assert "на рассмотрении" in template.render(value="under_review")


def test_in_language_speaks_the_chosen_language_outside_a_request(app):
    with app.app_context():
        with i18n.in_language("ru-RU") as chosen:
            assert chosen == "ru" and str(_l("Sign in")) == "Войти"
        with i18n.in_language("de") as chosen:
            assert chosen == "en" and str(_l("Sign in")) == "Sign in"
        assert str(_l("Sign in")) == "Sign in"


def test_compiled_catalogues_are_as_new_as_their_sources():
    assert i18n.compile_catalogues() == []  # the session's start compiled every edited one
    for po in i18n.catalogue_files():
        assert po.with_suffix(".mo").exists()


def test_csv_headers_are_codes_in_english_and_labels_in_russian(app):
    """Scripts and the CLI read the codes; a reader who chose Russian reads the labels."""
    import io

    from portal.billing.exports import CSV_COLUMNS, write_csv

    def header() -> str:
        out = io.StringIO()
        write_csv(iter(()), out)
        return out.getvalue().splitlines()[0]

    with app.app_context():  # the CLI: no request, English
        assert header() == ",".join(CSV_COLUMNS)
    with app.test_request_context("/api/v1/exports/invoices.csv"):  # an API client not asking
        assert "unit_amount_minor" in header()
    with app.test_request_context(
        "/api/v1/exports/invoices.csv", headers={"Accept-Language": "ru"}
    ):
        russian = header()
    assert "Номер счёта" in russian and "Цена за единицу, в минимальных единицах" in russian
    assert "invoice_number" not in russian
