"""Invoice and receipt PDFs, laid out from the same read models as the printable pages."""

from __future__ import annotations

from typing import Final

from app.domain.money import format_money
from app.models import InvoiceStatus
from app.services.billing_pages import InvoiceDetail, PaymentDetail
from app.services.pdf import PAGE_HEIGHT, PdfDocument, fit, wrap

LEFT: Final = 50
RIGHT: Final = 545
BOTTOM: Final = PAGE_HEIGHT - 60
TITLES: Final = {
    InvoiceStatus.CANCELLATION.value: "Cancellation invoice",
}


def _day(value: object) -> str:
    return value.strftime("%b %-d, %Y") if value is not None else "—"  # type: ignore[attr-defined]


def _rate(rate_bp: int) -> str:
    whole, part = divmod(rate_bp, 100)
    return f"{whole}.{part:02d}".rstrip("0").rstrip(".") + " %"


class _Writer:
    """A cursor down the page that starts a new page when the bottom is reached."""

    def __init__(self, title: str) -> None:
        self.pdf = PdfDocument(title=title)
        self.y = 60

    def need(self, height: int) -> None:
        if self.y + height > BOTTOM:
            self.pdf.new_page()
            self.y = 60

    def row(self, label: str, value: str, *, bold: bool = False, size: int = 10) -> None:
        self.need(16)
        self.pdf.text(LEFT, self.y, label, size=size, bold=bold)
        self.pdf.text(RIGHT, self.y, value, size=size, bold=bold, align="right")
        self.y += size + 6

    def paragraph(self, text: str, *, size: int = 10) -> None:
        for line in wrap(text, RIGHT - LEFT, size):
            self.need(size + 4)
            self.pdf.text(LEFT, self.y, line, size=size)
            self.y += size + 4


def invoice_pdf(detail: InvoiceDetail) -> bytes:
    """The invoice as a PDF: number, dates, status, lines, amount, tax, total, paid, balance."""
    invoice, partner, account = detail.invoice, detail.partner, detail.account

    def money(amount: int) -> str:
        return format_money(amount, invoice.currency, partner.locale)

    title = f"{TITLES.get(invoice.status, 'Invoice')} {invoice.number}"
    out = _Writer(title)
    out.pdf.text(LEFT, out.y, fit(partner.name, 300, 12), size=12, bold=True)
    out.pdf.text(RIGHT, out.y, title, size=16, bold=True, align="right")
    out.y += 34
    out.pdf.text(LEFT, out.y, "Bill to", bold=True)
    out.y += 14
    for text in (account.name, invoice.billing_email or account.email):
        out.pdf.text(LEFT, out.y, fit(text, 300, 10))
        out.y += 14
    out.y += 8
    out.row("Issue date", _day(invoice.issue_date))
    out.row("Due date", _day(invoice.due_date))
    out.row("Status", invoice.status.replace("_", " "))
    if detail.cancels is not None:
        out.row("Cancels invoice", detail.cancels.number)
    if detail.canceled_by is not None:
        out.row("Canceled by", detail.canceled_by.number)
    out.y += 12
    columns = ((LEFT, "Description", "left"), (360, "Qty", "right"), (440, "Unit price", "right"))
    out.need(40)
    for x, label, align in (*columns, (RIGHT, "Amount", "right")):
        out.pdf.text(x, out.y, label, bold=True, align=align)  # type: ignore[arg-type]
    out.pdf.rule(LEFT, out.y + 5, RIGHT)
    out.y += 20
    for line in detail.lines:
        out.need(16)
        out.pdf.text(LEFT, out.y, fit(line.description, 270, 10))
        out.pdf.text(360, out.y, str(line.quantity), align="right")
        out.pdf.text(440, out.y, money(line.unit_amount), align="right")
        out.pdf.text(RIGHT, out.y, money(line.amount), align="right")
        out.y += 16
    out.pdf.rule(LEFT, out.y - 8, RIGHT)
    out.y += 8
    rates = ", ".join(_rate(r) for r in detail.tax_rates) or "0 %"
    out.row("Amount", money(invoice.subtotal))
    out.row(f"Tax (VAT {rates})", money(invoice.tax))
    out.row("Total", money(invoice.total), bold=True, size=12)
    out.row("Amount paid", money(invoice.amount_paid))
    out.row("Balance", money(invoice.balance), bold=True)
    if invoice.memo:
        out.y += 10
        out.paragraph(invoice.memo)
    return out.pdf.render()


def receipt_pdf(detail: PaymentDetail) -> bytes:
    """The payment's receipt as a PDF; a donation's carries the partner's receipt wording."""
    payment, partner = detail.payment, detail.partner

    def money(amount: int) -> str:
        return format_money(amount, payment.currency, partner.locale)

    title = f"{'Donation receipt' if detail.is_donation else 'Payment receipt'} {detail.reference}"
    out = _Writer(title)
    out.pdf.text(LEFT, out.y, fit(partner.name, 300, 12), size=12, bold=True)
    out.pdf.text(RIGHT, out.y, title, size=16, bold=True, align="right")
    out.y += 40
    payer = str(payment.detail.get("payer_name", "")) or (
        detail.account.name if detail.account else ""
    )
    if payer:
        out.row("Received from", payer)
    out.row("Receipt date", _day(detail.receipt_date))
    out.row("Method", detail.label)
    if detail.invoice is not None:
        out.row("Invoice", detail.invoice.number)
    out.row("Amount", money(payment.amount), bold=True, size=12)
    for refund in detail.refunds:
        if refund.status == "approved":
            out.row(f"Refunded {_day(refund.received_on)}", money(-refund.amount))
    if detail.balance_after is not None:
        out.row("Balance after this payment", money(detail.balance_after))
    if detail.receipt_wording:
        out.y += 12
        out.paragraph(detail.receipt_wording)
    return out.pdf.render()
