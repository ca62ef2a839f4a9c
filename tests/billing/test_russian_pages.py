"""Finance, an organisation's invoices and its payment method, read in Russian (issue 14).

Each page is asked for with ``Accept-Language: ru`` and must answer in Russian: the
headings and buttons of its English page are gone, money is in the Russian locale, and
messages made while it was handled (a bank statement's outcomes) are Russian too.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re

import pytest

from portal.kernel.clock import now_utc
from tests.conftest import post_form

pytestmark = pytest.mark.usefixtures("jobs_inline")

RU = {"Accept-Language": "ru"}


def _plain(response) -> str:
    text = html.unescape(response.get_data(as_text=True))
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S)
    shown = re.findall(r'(?:value|aria-label|title|placeholder)="([^"]*)"', text)  # words in tags
    return " ".join((re.sub(r"<[^>]+>", " ", text) + " " + " ".join(shown)).split())


@pytest.mark.parametrize(
    ("path", "russian", "english"),
    [
        (
            "/finance?period={period}",
            ["Финансы", "Рассчитать месяц", "Последние расчёты"],
            ["Run the month", "Recent runs"],
        ),
        (
            "/finance/exports?period={period}",
            ["Экономика совета", "Скачать CSV", "357,00"],
            ["Council economics", "Download CSV"],
        ),
        (
            "/finance/overdue",
            ["Неоплаченные в срок и просроченные счета", "Дней просрочки"],
            ["Days late", "Past due"],
        ),
        (
            "/finance/bank-import",
            ["Загрузить банковскую выписку", "Загрузить и сопоставить"],
            ["Import and match"],
        ),
        (
            "/finance/invoices/{invoice_id}",
            ["Покупатель", "Откуда взялась каждая строка", "Записать платёж", "место-дни"],
            ["What produced each line", "Record a payment"],
        ),
    ],
)
def test_finance_pages_in_russian(app, issued, signed_in, path, russian, english):
    finance = signed_in("finance")
    response = finance.get(path.format(**issued), headers=RU)
    assert response.status_code == 200
    text = _plain(response)
    missing = [word for word in russian if word not in text]
    assert not missing, (missing, text[:2000])
    left = [word for word in english if word in text]
    assert not left, left


def test_an_organisation_s_invoices_in_russian(app, issued, signed_in):
    admin = signed_in("org_admin", issued["org"])
    listing = _plain(admin.get("/org/invoices", headers=RU))
    assert "Счета, выставленные советом организации" in listing and "357,00" in listing
    page = _plain(admin.get(f"/org/invoices/{issued['invoice_id']}", headers=RU))
    assert f"Счёт {issued['number']}" in page and "Осталось оплатить" in page
    assert "Still due" not in page and "Bill to" not in page
    method = _plain(admin.get("/org/payment-method", headers=RU))
    assert "Способ оплаты" in method and "банковским переводом" in method


def test_a_bank_statement_s_outcomes_in_russian(app, issued, signed_in):
    finance = signed_in("finance")
    today = now_utc().date()
    future = today + dt.timedelta(days=3)
    statement = (
        f"date,amount,currency,reference\n{today},357.00,EUR,{issued['number']}\n"
        f"{today},5,EUR,NOPE-1\n{future},5,EUR,NOPE-2\n"
    ).encode()
    response = post_form(
        finance,
        "/finance/bank-import",
        {"file": (io.BytesIO(statement), "statement.csv")},
        content_type="multipart/form-data",
        headers=RU,
    )
    assert response.status_code == 200
    text = _plain(response)
    assert "сопоставлено: 1" in text and "не найдено: 1" in text and "ошибка: 1" in text
    assert "Оплачен полностью." in text and "Нет счёта с таким назначением платежа." in text
    assert "Дата в будущем." in text and "Paid in full" not in text


def test_a_refused_payment_is_explained_in_russian(app, issued, signed_in):
    finance = signed_in("finance")
    page = f"/finance/invoices/{issued['invoice_id']}"
    response = post_form(
        finance,
        f"{page}/payments",
        {
            "payment-amount": "9999",
            "payment-received_on": now_utc().date().isoformat(),
            "payment-method": "bank_transfer",
        },
        token_from=page,
        headers=RU,
    )
    assert response.status_code == 400
    text = _plain(response)
    assert "Введите сумму от 0,01 € до 357,00 €." in text.replace("\xa0", " "), text[-3000:]
