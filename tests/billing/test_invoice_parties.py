"""Issue 14 in billing: the invoice's seller and buyer, its language, the confirm step's
preview of "Finalise all drafts", and the council settings that name the seller."""

from __future__ import annotations

import html
import io
import re

import pypdf
import pytest

from portal.billing import documents
from portal.billing.operations import drafts_finalize, drafts_finalize_preview
from portal.db import db
from portal.kernel.errors import PermissionDenied, ValidationFailed
from portal.kernel.scope import Scope
from portal.settings.services import check_bic, check_iban, settings_get, settings_update
from portal.tenancy.models import Organisation
from portal.tenancy.services import organisation_update
from tests.billing.factories import draft, finalize, invoice_of
from tests.conftest import SYSTEM, flashes, post_form

pytestmark = pytest.mark.usefixtures("jobs_inline")

SELLER = {
    "seller_legal_name": "Business Council of Testland e.V.",
    "seller_address": "Hauptstraße 1\n10115 Berlin\nGermany",
    "seller_tax_id": "de 123456789",
    "seller_iban": "de89 3704 0044 0532 0130 00",
    "seller_bic": "cobadeffxxx",
}


def _seller(app, **values) -> None:
    with app.app_context():
        settings_update(db.session, actor=SYSTEM, data={**SELLER, **values})
        db.session.commit()


def _buyer(app, org_id: int, **values) -> None:
    with app.app_context():
        organisation = db.session.get(Organisation, org_id)
        organisation_update(db.session, actor=SYSTEM, organisation=organisation, data=values)
        db.session.commit()


def _words(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def _plain(response) -> str:
    text = html.unescape(response.get_data(as_text=True))
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


# ---------------------------------------------------------------- the seller's settings


def test_seller_settings_are_normalised(app):
    _seller(app)
    with app.app_context():
        settings = settings_get(db.session)
    assert settings.seller_tax_id == "DE 123456789"
    assert settings.seller_iban == "DE89 3704 0044 0532 0130 00"  # grouped by four
    assert settings.seller_bic == "COBADEFFXXX"
    assert settings.seller_address.splitlines() == ["Hauptstraße 1", "10115 Berlin", "Germany"]


@pytest.mark.parametrize(
    "iban",
    ["DE89 3704 0044 0532 0130 01", "DE8937040044", "89DE37040044053201300", "DE89-3704-0044"],
)
def test_an_iban_with_wrong_check_digits_or_shape_is_refused(iban):
    with pytest.raises(ValueError):
        check_iban(iban)


def test_bic_and_iban_checks_accept_good_ones():
    assert check_iban("GB82 WEST 1234 5698 7654 32") == "GB82 WEST 1234 5698 7654 32"
    assert check_bic("deutdeff") == "DEUTDEFF" and check_bic("") == ""
    with pytest.raises(ValueError):
        check_bic("DEUT1EFF")


def test_bad_seller_settings_change_nothing(app):
    for field, value in (
        ("seller_iban", "DE00 0000 0000"),
        ("seller_bic", "NOPE"),
        ("seller_tax_id", "<script>"),
        ("seller_legal_name", "x" * 201),
    ):
        with app.app_context(), pytest.raises(ValidationFailed) as refused:
            settings_update(db.session, actor=SYSTEM, data={**SELLER, field: value})
        assert field in refused.value.errors, (field, refused.value.errors)
    with app.app_context():
        assert settings_get(db.session).seller_legal_name == ""


def test_the_settings_page_edits_the_seller_and_shows_every_error_at_once(app, signed_in):
    client = signed_in("council_admin")
    base = {
        "default_tax_rate_percent": "19",
        "idle_seat_days": "30",
        "invoice_prefix": "INV",
        "credit_note_prefix": "CN",
        "payment_terms_days": "30",
        "overdue_grace_days": "14",
        "bank_details": "Commerzbank Berlin",
        **SELLER,
    }
    assert post_form(client, "/council/settings", base).status_code == 302
    with app.app_context():
        assert settings_get(db.session).seller_legal_name == SELLER["seller_legal_name"]
    page = client.get("/council/settings").get_data(as_text=True)
    assert "DE89 3704 0044 0532 0130 00" in page and "Hauptstraße 1" in page
    # Three wrong fields, one the form's own check (the rate), two the service's: all
    # three are explained on the first submit, and nothing is saved.
    bad = {**base, "default_tax_rate_percent": "120", "invoice_prefix": "inv-1"}
    bad["seller_iban"] = "DE89 3704 0044 0532 0130 01"
    response = post_form(client, "/council/settings", bad)
    assert response.status_code == 400
    messages = " ".join(flashes(response))
    assert "between 0 and 100" in messages
    assert "capital letters and digits" in messages
    assert "check digits are wrong" in messages
    assert 'value="DE89 3704 0044 0532 0130 01"' in response.get_data(as_text=True)  # kept
    with app.app_context():
        assert settings_get(db.session).invoice_prefix == "INV"


def test_the_settings_page_speaks_russian(app, signed_in):
    client = signed_in("council_admin")
    page = client.get("/council/settings", headers={"Accept-Language": "ru"})
    text = page.get_data(as_text=True)
    assert "Настройки совета" in text and "Продавец в каждом счёте" in text
    assert "Council settings" not in text


# ---------------------------------------------------------------- the buyer's profile


def test_the_buyer_s_address_and_language_are_validated(app, billed):
    org_id = billed["org"].id
    _buyer(app, org_id, billing_address="  Acme GmbH\nIndustriestr. 5\n80331 München ")
    with app.app_context():
        org = db.session.get(Organisation, org_id)
        assert org.billing_address == "Acme GmbH\nIndustriestr. 5\n80331 München"
    for field, value in (("invoice_language", "de"), ("billing_address", "x" * 501)):
        with app.app_context(), pytest.raises(ValidationFailed) as refused:
            organisation_update(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org_id),
                data={field: value},
            )
        assert field in refused.value.errors
    _buyer(app, org_id, invoice_language="ru", billing_address="")
    with app.app_context():
        org = db.session.get(Organisation, org_id)
        assert (org.invoice_language, org.billing_address) == ("ru", None)  # cleared


def test_an_org_admin_may_set_the_buyer_fields_but_not_the_tax_rate(app, billed, make_user):
    from portal.kernel.actor import Actor

    user = make_user("org_admin", billed["org"])
    with app.app_context():
        from portal.identity.models import User

        actor = Actor.person(db.session.get(User, user.id))
        org = db.session.get(Organisation, billed["org"].id)
        organisation_update(
            db.session, actor=actor, organisation=org, data={"billing_address": "Somewhere 1"}
        )
        with pytest.raises(PermissionDenied):
            organisation_update(db.session, actor=actor, organisation=org, data={"tax_rate_bp": 0})
        db.session.rollback()


# ---------------------------------------------------------------- both on the invoice


def test_seller_and_buyer_are_on_the_page_and_the_pdf(app, billed, signed_in):
    _seller(app)
    _buyer(app, billed["org"].id, billing_address="Industriestr. 5\n80331 München")
    with app.app_context():
        db.session.get(Organisation, billed["org"].id).tax_id = "DE999999999"
        db.session.commit()
    invoice_id = draft(app, billed["org"].id, billed["period"])
    number = finalize(app, invoice_id)
    words = _words(invoice_of(app, invoice_id).pdf)
    for expected in (
        "Business Council of Testland e.V.",
        "Hauptstraße 1",
        "Tax id: DE 123456789",
        "Industriestr. 5",
        "80331 München",
        "Germany",
        "Tax id: DE999999999",
        "IBAN DE89 3704 0044 0532 0130 00",
        "BIC COBADEFFXXX",
        f"Invoice {number}",
    ):
        assert expected in words, (expected, words)
    page = _plain(signed_in("finance").get(f"/finance/invoices/{invoice_id}"))
    assert "From Business Council of Testland e.V." in page and "Bill to Org acme" in page
    assert "Industriestr. 5" in page and "Tax id: DE 123456789" in page


def test_without_seller_settings_the_council_name_stands_and_no_iban_line(app, billed):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    finalize(app, invoice_id)
    words = _words(invoice_of(app, invoice_id).pdf)
    with app.app_context():
        council = app.config["PORTAL_COUNCIL_NAME"]
    assert f"From {council}" in words and "Account holder" not in words


def test_an_organisation_reading_russian_gets_its_invoice_in_russian(app, billed, mailbox):
    _seller(app)
    _buyer(app, billed["org"].id, invoice_language="ru", reverse_charge=True)
    invoice_id = draft(app, billed["org"].id, billed["period"])
    number = finalize(app, invoice_id)
    invoice = invoice_of(app, invoice_id)
    words = _words(invoice.pdf)
    assert f"Счёт {number}" in words and "Покупатель" in words and "Итого" in words
    assert "300,00" in words and "Bill to" not in words  # money in the Russian locale
    assert "Германия" in words  # the buyer's country by name, in the invoice's language
    assert "Обратное начисление НДС: налог уплачивает получатель услуг." in words
    assert invoice.note.startswith("Обратное начисление")  # stored as drafted
    # the line drafted for it speaks Russian too (seat-days pluralised), in the PDF and stored
    [line] = invoice.lines
    assert "место-д" in line.description and "seat-days" not in line.description
    [message] = mailbox
    assert message["Subject"] == f"Счёт {number} за {billed['period']}"


def test_the_invoice_page_follows_its_reader_not_the_organisation(app, issued, signed_in):
    _buyer(app, issued["org"].id, invoice_language="ru")
    finance = signed_in("finance")
    english = _plain(finance.get(f"/finance/invoices/{issued['invoice_id']}"))
    russian = _plain(
        finance.get(f"/finance/invoices/{issued['invoice_id']}", headers={"Accept-Language": "ru"})
    )
    assert "Bill to" in english and "Unit price" in english
    assert "Покупатель" in russian and "Цена за единицу" in russian and "Bill to" not in russian
    # a quantity in the reader's locale: 10 seats for the whole month is "10" in both
    assert " 10 " in english and " 10 " in russian


# ---------------------------------------------------------------- "Finalise all": what it will do


def test_the_preview_names_the_invoices_numbers_and_mails_it_will_give(
    app, billed, make_org, mailbox
):
    from tests.billing.factories import subscribe

    other = make_org("beta")
    subscribe(app, other.id, billed["product"].id, 2, billed["first"])
    with app.app_context():
        db.session.get(Organisation, other.id).billing_provider = "stripe"
        db.session.commit()
    finalize(app, draft(app, billed["org"].id, billed["period"]))  # takes a number first
    assert draft(app, other.id, billed["period"]) is not None
    with app.app_context():
        preview = drafts_finalize_preview(
            db.session, scope=Scope.council(), period=billed["period"]
        )
    # acme's invoice is final already; beta's is the one draft
    assert (preview.drafts, preview.organisations, preview.mails) == (1, 1, 1)
    assert preview.card_charges == 1 and preview.recipients == ["billing@beta.example"]
    with app.app_context():
        finalised = drafts_finalize(db.session, actor=SYSTEM, period=billed["period"])
        db.session.commit()
        numbers = [i.number for i in finalised]
    assert preview.numbers == (numbers[0], numbers[-1])


def test_the_preview_of_several_drafts_and_of_none(app, billed, make_org):
    from tests.billing.factories import subscribe

    orgs = [billed["org"]] + [make_org(f"extra-{n}") for n in range(3)]
    for org in orgs[1:]:
        subscribe(app, org.id, billed["product"].id, 1, billed["first"])
    for org in orgs:
        draft(app, org.id, billed["period"])
    with app.app_context():
        preview = drafts_finalize_preview(
            db.session, scope=Scope.council(), period=billed["period"]
        )
        assert preview.drafts == 4 and preview.mails == 4 and preview.card_charges == 0
        assert list(preview.totals) == ["EUR"] and preview.totals["EUR"] > 0
        finalised = drafts_finalize(db.session, actor=SYSTEM, period=billed["period"])
        db.session.commit()
        assert preview.numbers == (finalised[0].number, finalised[-1].number)
        assert preview.numbers[0] != preview.numbers[1]
        nothing = drafts_finalize_preview(
            db.session, scope=Scope.council(), period=billed["period"]
        )
    assert nothing.empty and nothing.numbers is None and nothing.mails == 0


def test_the_preview_refuses_a_malformed_month(app):
    with app.app_context(), pytest.raises(ValidationFailed):
        drafts_finalize_preview(db.session, scope=Scope.council(), period="2026-13")


def test_invoice_language_falls_back_to_english():
    class Org:
        invoice_language = None

    assert documents.invoice_language(Org()) == "en"
    Org.invoice_language = "ru-RU"
    assert documents.invoice_language(Org()) == "ru"
    Org.invoice_language = "xx"
    assert documents.invoice_language(Org()) == "en"
