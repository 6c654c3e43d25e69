"""Gapless invoice numbers (per partner and series, under concurrency) and add_invoice."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.errors import InvalidInput
from app.models import CustomerAccount, Invoice, InvoiceLine, InvoiceSequence, Partner
from app.services.invoices import LineInput, add_invoice
from app.services.numbering import next_invoice_number

ISSUED = date(2026, 3, 2)
DUE = date(2026, 4, 1)
THREADS = 8


@dataclass(frozen=True)
class Tenant:
    partner_id: int
    account_id: int


@pytest.fixture
def tenants(db_session: Session) -> tuple[Tenant, Tenant]:
    """Two partners with one customer each: US (no tax) and DE (19 % VAT)."""
    made = []
    for slug, country, currency, rate in (("us", "US", "USD", 0), ("de", "DE", "EUR", 1900)):
        partner = Partner(
            name=slug.upper(), slug=slug, country=country, currency=currency, tax_rate_bp=rate
        )
        db_session.add(partner)
        db_session.flush()
        account = CustomerAccount(
            partner_id=partner.id, name=f"{slug} customer", email=f"{slug}@example.com",
            currency=currency,
        )  # fmt: skip
        db_session.add(account)
        db_session.flush()
        assert partner.id is not None and account.id is not None
        made.append(Tenant(partner.id, account.id))
    db_session.commit()
    return made[0], made[1]


def _issue(session: Session, tenant: Tenant, *, series: str = "INV", net: int = 1000) -> Invoice:
    partner = session.get(Partner, tenant.partner_id)
    account = session.get(CustomerAccount, tenant.account_id)
    assert partner is not None and account is not None
    return add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput("Membership", 1, net if series == "INV" else -net)],
        issue_date=ISSUED,
        due_date=DUE,
        series=series,
    )


def _sequences(session: Session, partner_id: int, series: str) -> list[int]:
    return sorted(
        session.exec(
            select(Invoice.sequence)
            .where(Invoice.partner_id == partner_id)
            .where(Invoice.series == series)
        ).all()
    )


# -- numbering ---------------------------------------------------------------------------


def test_are_numbers_sequential_per_partner_and_series(
    db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    us, de = tenants
    issued = [
        _issue(db_session, tenant, series=series)
        for tenant, series in [
            (us, "INV"), (us, "CN"), (de, "INV"), (us, "INV"), (de, "INV"), (us, "CN"),
            (us, "INV"), (de, "CN"),
        ]
    ]  # fmt: skip
    db_session.commit()

    assert [(i.partner_id, i.series, i.sequence) for i in issued] == [
        (us.partner_id, "INV", 1),
        (us.partner_id, "CN", 1),
        (de.partner_id, "INV", 1),
        (us.partner_id, "INV", 2),
        (de.partner_id, "INV", 2),
        (us.partner_id, "CN", 2),
        (us.partner_id, "INV", 3),
        (de.partner_id, "CN", 1),
    ]
    assert issued[0].number == f"INV-{us.partner_id:03d}-000001"
    assert issued[5].number == f"CN-{us.partner_id:03d}-000002"
    assert issued[7].number == f"CN-{de.partner_id:03d}-000001"
    assert len({(i.partner_id, i.number) for i in issued}) == len(issued)


def test_does_a_rolled_back_transaction_give_its_number_back(
    engine: Engine, tenants: tuple[Tenant, Tenant]
) -> None:
    us, _ = tenants
    with Session(engine, expire_on_commit=False) as session:
        assert _issue(session, us).sequence == 1
        session.commit()

        assert _issue(session, us).sequence == 2
        assert _issue(session, us, series="CN").sequence == 1  # the series' very first number
        session.rollback()

        again = _issue(session, us)
        first_credit = _issue(session, us, series="CN")
        session.commit()

        assert again.sequence == 2
        assert again.number == f"INV-{us.partner_id:03d}-000002"
        assert first_credit.sequence == 1
        assert _sequences(session, us.partner_id, "INV") == [1, 2]
        assert _sequences(session, us.partner_id, "CN") == [1]


def test_does_a_refused_invoice_take_no_number(
    db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    us, _ = tenants
    partner = db_session.get(Partner, us.partner_id)
    account = db_session.get(CustomerAccount, us.account_id)
    assert partner is not None and account is not None
    with pytest.raises(InvalidInput):
        add_invoice(
            db_session, partner=partner, account=account, lines=[], issue_date=ISSUED, due_date=DUE
        )
    db_session.commit()

    assert _issue(db_session, us).sequence == 1


def _issue_concurrently(engine: Engine, tenant: Tenant, *, with_invoice: bool) -> list[int]:
    """THREADS issuers start together; each holds its transaction open for a moment."""
    start = threading.Barrier(THREADS)
    sequences: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def issuer() -> None:
        try:
            with Session(engine, expire_on_commit=False) as session:
                start.wait(timeout=10)
                if with_invoice:
                    sequence = _issue(session, tenant).sequence
                else:
                    sequence, _ = next_invoice_number(
                        session, partner_id=tenant.partner_id, series="INV"
                    )
                time.sleep(0.02)  # keep the number (and its lock) while others ask
                session.commit()
            with lock:
                sequences.append(sequence)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=issuer) for _ in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers), "an issuer hung"
    assert errors == [], errors
    return sequences


@pytest.mark.parametrize("existing", [False, True], ids=["first-numbers", "later-numbers"])
def test_do_concurrent_issuers_get_distinct_consecutive_numbers(
    engine: Engine, db_session: Session, tenants: tuple[Tenant, Tenant], existing: bool
) -> None:
    """On PostgreSQL the counter row's lock orders the issuers; on SQLite the database
    write lock does (threads wait on the busy timeout). Both must give 1..n, no gaps."""
    us, _ = tenants
    offset = 0
    if existing:
        _issue(db_session, us)
        db_session.commit()
        offset = 1

    sequences = _issue_concurrently(engine, us, with_invoice=False)

    assert sorted(sequences) == list(range(offset + 1, offset + THREADS + 1))
    counter = db_session.exec(
        select(InvoiceSequence.next_value).where(InvoiceSequence.partner_id == us.partner_id)
    ).one()
    assert counter == offset + THREADS + 1


def test_do_concurrent_invoices_get_distinct_consecutive_numbers(
    engine: Engine, db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    us, _ = tenants

    sequences = _issue_concurrently(engine, us, with_invoice=True)

    assert sorted(sequences) == list(range(1, THREADS + 1))
    assert _sequences(db_session, us.partner_id, "INV") == list(range(1, THREADS + 1))


# -- add_invoice -----------------------------------------------------------------------------


def _add(session: Session, tenant: Tenant, lines: list[LineInput], **kwargs: object) -> Invoice:
    partner = session.get(Partner, tenant.partner_id)
    account = session.get(CustomerAccount, tenant.account_id)
    assert partner is not None and account is not None
    options: dict = {"issue_date": ISSUED, "due_date": DUE, **kwargs}
    return add_invoice(session, partner=partner, account=account, lines=lines, **options)


def _lines(session: Session, invoice: Invoice) -> list[InvoiceLine]:
    return list(
        session.exec(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).order_by(InvoiceLine.id)
        ).all()
    )


def test_is_19_percent_of_4900_taxed_931(
    db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    _, de = tenants

    invoice = _add(db_session, de, [LineInput("Mitgliedsbeitrag", 1, 4900)])
    db_session.commit()

    assert (invoice.subtotal, invoice.tax, invoice.total) == (4900, 931, 5831)
    assert invoice.currency == "EUR"
    [line] = _lines(db_session, invoice)
    assert (line.amount, line.tax_rate_bp, line.tax_amount) == (4900, 1900, 931)


def test_is_tax_rounded_half_up_on_each_line(
    db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    _, de = tenants

    invoice = _add(
        db_session,
        de,
        [
            LineInput("Coffee", 1, 50),  # 9.5 -> 10
            LineInput("Tea", 1, 50),  # 9.5 -> 10 (on the sum of 100 it would be 19)
            LineInput("Cake", 3, 150),  # 450 net, 85.5 -> 86
            LineInput("Napkins", 2, 1),  # 2 net, 0.38 -> 0
        ],
    )
    db_session.commit()

    assert [(line.amount, line.tax_amount) for line in _lines(db_session, invoice)] == [
        (50, 10),
        (50, 10),
        (450, 86),
        (2, 0),
    ]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (552, 106, 658)


def test_does_a_negative_line_get_exactly_the_negated_tax(
    db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    _, de = tenants

    credit = _add(db_session, de, [LineInput("Cancels: Coffee", 1, -50)], series="CN")

    assert (credit.subtotal, credit.tax, credit.total) == (-50, -10, -60)


def test_does_the_accounts_own_tax_rate_win_over_the_partners(
    db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    _, de = tenants
    account = db_session.get(CustomerAccount, de.account_id)
    assert account is not None
    account.tax_rate_bp = 0  # e.g. a tax-exempt association
    db_session.add(account)

    invoice = _add(db_session, de, [LineInput("Mitgliedsbeitrag", 1, 4900)])

    assert (invoice.tax, invoice.total) == (0, 4900)


@pytest.mark.parametrize(
    ("lines", "dates", "field"),
    [
        ([], {}, "lines"),
        ([LineInput("Late", 1, 1000)], {"due_date": date(2026, 3, 1)}, "due_date"),
        ([LineInput("Nothing", 0, 1000)], {}, "quantity"),
    ],
    ids=["no-lines", "due-before-issue", "zero-quantity"],
)
def test_is_an_invalid_invoice_refused(
    db_session: Session,
    tenants: tuple[Tenant, Tenant],
    lines: list[LineInput],
    dates: dict,
    field: str,
) -> None:
    us, _ = tenants

    with pytest.raises(InvalidInput) as refused:
        _add(db_session, us, lines, **dates)

    assert refused.value.field == field
    db_session.rollback()
    assert db_session.exec(select(Invoice)).all() == []


def test_may_an_invoice_be_due_on_its_issue_date(
    db_session: Session, tenants: tuple[Tenant, Tenant]
) -> None:
    us, _ = tenants

    invoice = _add(db_session, us, [LineInput("Today", 1, 1000)], due_date=ISSUED)

    assert invoice.due_date == invoice.issue_date
