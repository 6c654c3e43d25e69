"""Invoice and receipt PDFs (read back with pypdf, an independent reader) and print data."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from flask import Flask
from pypdf import PdfReader
from sqlalchemy import Engine
from sqlmodel import Session

from app.models import Payment
from app.services import invoice_admin
from app.services.billing_pages import invoice_detail, payment_detail
from app.services.documents import invoice_pdf, receipt_pdf
from tests.services.invoice_helpers import DAY, Shop, issue, make_shop, pay_by_card


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def shop(app: Flask, db: Session) -> Shop:
    return make_shop(app, db, tax_bp=1900)


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_does_the_invoice_pdf_contain_its_number_and_total(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop, ("Sail repair", "2", "250.00"), ("Dock fee", "1", "12.34"))
    pdf = invoice_pdf(invoice_detail(db, shop.admin, invoice.id))
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    text = text_of(pdf)
    assert invoice.number in text
    assert "$609.68" in text  # 512.34 + tax per line (95.00 + 2.34)
    assert "Sail repair" in text and "Tax (VAT 19 %)" in text and "$97.34" in text


def test_does_a_long_invoice_continue_on_more_pages(app: Flask, db: Session, shop: Shop) -> None:
    lines = [(f"Lesson {n}", "1", "10.00") for n in range(1, 50)]
    invoice = issue(app, db, shop, *lines)
    reader = PdfReader(io.BytesIO(invoice_pdf(invoice_detail(db, shop.admin, invoice.id))))
    assert len(reader.pages) >= 2
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Lesson 49" in text and "$583.10" in text


def test_does_a_cancellation_invoice_pdf_show_negative_amounts(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    cancellation = invoice_admin.cancel_invoice(db, shop.admin, invoice.id, as_of=DAY)
    text = text_of(invoice_pdf(invoice_detail(db, shop.admin, cancellation.id)))
    assert f"Cancellation invoice {cancellation.number}" in text
    assert "-$119.00" in text and invoice.number in text


def test_does_a_euro_invoice_print_the_euro_sign(app: Flask, db: Session) -> None:
    shop = make_shop(app, db, "berlin", tax_bp=1900)
    shop.partner.currency, shop.partner.locale = "EUR", "de_DE"
    shop.account.currency = "EUR"
    db.add_all([shop.partner, shop.account])
    db.commit()
    invoice = issue(app, db, shop, ("Müller Beratung", "1", "1000.00"))
    text = text_of(invoice_pdf(invoice_detail(db, shop.admin, invoice.id)))
    assert "Müller Beratung" in text and "1.190,00\xa0€" in text


def test_does_the_receipt_pdf_show_the_card_and_amount(app: Flask, db: Session, shop: Shop) -> None:
    invoice = issue(app, db, shop)
    payment = pay_by_card(app, db, shop, invoice, 5000)
    text = text_of(receipt_pdf(payment_detail(db, shop.admin, payment.id)))
    assert f"Payment receipt PAY-{payment.id:06d}" in text
    assert "Visa •••• 4242" in text and "$50.00" in text
    assert "$69.00" in text  # the balance after this payment


def test_does_a_donation_receipt_carry_the_partners_wording(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    payment = pay_by_card(app, db, shop, invoice, 11900)
    payment.detail = {**payment.detail, "source": "widget"}
    shop.partner.receipt_wording = "No goods or services were provided in exchange for this gift."
    db.add_all([payment, shop.partner])
    db.commit()
    detail = payment_detail(db, shop.admin, payment.id)
    assert detail.is_donation
    text = text_of(receipt_pdf(detail))
    assert "Donation receipt" in text
    assert "No goods or services were provided" in text


def test_is_the_wording_kept_off_ordinary_receipts(app: Flask, db: Session, shop: Shop) -> None:
    invoice = issue(app, db, shop)
    payment: Payment = pay_by_card(app, db, shop, invoice, 11900)
    shop.partner.receipt_wording = "Tax-deductible gift."
    db.add(shop.partner)
    db.commit()
    assert "Tax-deductible" not in text_of(receipt_pdf(payment_detail(db, shop.admin, payment.id)))
