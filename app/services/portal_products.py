"""What the customer portal's self-service catalog offers, and at what price.

The catalog lists the partner's active recurring products marked ``self_service`` in the
account's currency. A membership costs its list price plus tax, per line and rounded
half-up as orders price it (``app.domain.orders.line_amounts``): that price is what the
page shows and what is charged every period. A donation (``payer_sets_amount``) charges
what the customer types (tax included, as widget gifts), between one and 10,000 units
of the currency, monthly, quarterly or yearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.errors import FieldsInvalid, InvalidInput, NotFound
from app.domain.money import exponent, format_money, parse_amount
from app.domain.orders import line_amounts
from app.models import CustomerAccount, Partner, PaymentMethod, Product, Subscription, User
from app.services.invoices import tax_rate_for
from app.services.portal_subscriptions import price_per_period
from app.services.tenancy import own_account

DONATION_FREQUENCIES: Final = ("monthly", "quarterly", "annual")
MAX_DONATION_UNITS: Final = 10_000  # whole units of the currency
ACTIVE: Final = (
    rules.SubscriptionStatus.RECURRING,
    rules.SubscriptionStatus.ERROR,
    rules.SubscriptionStatus.SUSPENDED,
)


@dataclass(frozen=True)
class CatalogItem:
    """A product offered to the customer, priced for their account."""

    product: Product
    price: int  # a membership's charge per period (tax included); a gift's suggestion
    rate_bp: int  # the tax rate that price includes
    is_member: bool  # an active subscription of this membership exists

    @property
    def donation(self) -> bool:
        return self.product.payer_sets_amount

    @property
    def currency(self) -> str:
        return self.product.currency

    @property
    def price_words(self) -> str:
        """ "$25.00 a month"."""
        return price_per_period(self.price, self.currency, str(self.product.frequency))


@dataclass(frozen=True)
class Catalog:
    account: CustomerAccount
    partner: Partner
    items: list[CatalogItem]


@dataclass(frozen=True)
class JoinPage:
    """One catalog product with what the customer needs to pay for it."""

    account: CustomerAccount
    partner: Partner
    item: CatalogItem
    methods: list[PaymentMethod]  # saved methods, the default first
    min_amount: int
    max_amount: int
    frequencies: tuple[str, ...]  # a gift's choices; a membership's own frequency


@dataclass(frozen=True)
class JoinInput:
    """What the customer typed (a gift's amount and frequency; empty for a membership)."""

    amount: str = ""
    frequency: str = ""


@dataclass(frozen=True)
class JoinTerms:
    amount: int
    frequency: str


def _is_recurring(product: Product) -> bool:
    return bool(product.frequency) and product.frequency != rules.Frequency.ONCE


def is_member(session: Session, account_id: int, product: Product) -> bool:
    """An active, not canceled subscription of ``product`` (or, for rows made before
    products were linked, of the same name)."""
    rows = session.exec(
        select(Subscription).where(
            Subscription.customer_account_id == account_id,
            col(Subscription.status).in_(ACTIVE),
            col(Subscription.canceled_at).is_(None),
        )
    ).all()
    name = product.name.strip().lower()
    return any(
        sub.product_id == product.id
        or (sub.product_id is None and sub.description.strip().lower() == name)
        for sub in rows
    )


def member_message(product: Product) -> str:
    """Why a second sign-up for a membership is refused."""
    return f"You are already a member of {product.name}: it is in your subscriptions."


def _item(
    session: Session, account: CustomerAccount, partner: Partner, product: Product
) -> CatalogItem:
    rate = tax_rate_for(account, partner)
    if product.payer_sets_amount:
        return CatalogItem(product, product.unit_amount, rate, False)
    net, tax = line_amounts(1, product.unit_amount, rate)
    member = is_member(session, account.id, product)  # type: ignore[arg-type]
    return CatalogItem(product, net + tax, rate, member)


def _offered(session: Session, account: CustomerAccount) -> list[Product]:
    """The account's catalog: memberships first, then gifts, each by name."""
    rows = session.exec(
        select(Product)
        .where(
            Product.partner_id == account.partner_id,
            col(Product.active).is_(True),
            col(Product.self_service).is_(True),
            Product.currency == account.currency,
        )
        .order_by(col(Product.payer_sets_amount), col(Product.name))
    ).all()
    return [p for p in rows if _is_recurring(p)]


def catalog(session: Session, user: User) -> Catalog:
    """The partner's active self-service recurring products in the account's currency,
    memberships first, each priced for the account.

    Raises:
        NotFound: the user is not a customer.
    """
    account = own_account(session, user)
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    items = [_item(session, account, partner, p) for p in _offered(session, account)]
    return Catalog(account, partner, items)


def join_page(session: Session, user: User, product_id: int) -> JoinPage:
    """One product of the customer's catalog, with their saved methods and the bounds.

    Raises:
        NotFound: not a customer, or the product is not in their catalog (another
            partner's, inactive, not offered, one-time, or in another currency).
    """
    account = own_account(session, user)
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    product = next((p for p in _offered(session, account) if p.id == product_id), None)
    if product is None:
        raise NotFound("Not found.")
    methods = session.exec(
        select(PaymentMethod)
        .where(PaymentMethod.customer_account_id == account.id)
        .order_by(col(PaymentMethod.is_default).desc(), col(PaymentMethod.id))
    ).all()
    unit = 10 ** exponent(account.currency)
    frequencies = DONATION_FREQUENCIES if product.payer_sets_amount else (str(product.frequency),)
    return JoinPage(
        account=account,
        partner=partner,
        item=_item(session, account, partner, product),
        methods=list(methods),
        min_amount=unit,
        max_amount=MAX_DONATION_UNITS * unit,
        frequencies=frequencies,
    )


def join_terms(page: JoinPage, data: JoinInput) -> JoinTerms:
    """What the sign-up charges per period, and how often.

    A membership charges its price at its own frequency (the posted fields are ignored).
    Raises:
        FieldsInvalid: a gift's amount is malformed or outside the bounds (``amount``),
            or its frequency is not offered (``frequency``); every problem at once.
    """
    item = page.item
    if not item.donation:
        return JoinTerms(item.price, str(item.product.frequency))
    errors: dict[str, str] = {}
    amount = 0
    try:
        amount = parse_amount(data.amount, item.currency)
    except InvalidInput as exc:
        errors["amount"] = exc.message
    else:
        if not page.min_amount <= amount <= page.max_amount:
            low = format_money(page.min_amount, item.currency)
            high = format_money(page.max_amount, item.currency)
            errors["amount"] = f"Enter an amount between {low} and {high}."
    if data.frequency not in page.frequencies:
        errors["frequency"] = "Choose how often to give: monthly, quarterly or yearly."
    if errors:
        raise FieldsInvalid(errors)
    return JoinTerms(amount, data.frequency)
