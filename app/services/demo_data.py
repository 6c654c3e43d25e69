"""The demo data set: two partners, their users and customers (data only, no logic)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEMO_PASSWORD = "portico-demo"


@dataclass(frozen=True)
class SubSpec:
    key: str
    description: str
    frequency: str
    amount: int  # fixed installment (manual amount), gross
    start_offset: int  # days from today
    status: str = "recurring"
    stop_rule: str = "unending"
    total: int | None = None
    stop_count: int | None = None
    charge_day: int | None = None
    start_on_first_of_month: bool = False
    history: bool = True  # charge every period on or before today
    decline_first: bool = False


@dataclass(frozen=True)
class InvSpec:
    key: str
    description: str
    net: int
    issue_offset: int
    due_offset: int
    status: str  # created | overdue | paid | paid_by_check | canceled


@dataclass(frozen=True)
class CustomerSpec:
    key: str
    name: str
    email: str
    card: str | None = "4242424242424242"
    bank: bool = False
    user: bool = False
    subscriptions: tuple[SubSpec, ...] = ()
    invoices: tuple[InvSpec, ...] = ()


@dataclass(frozen=True)
class ProductSpec:
    """Something the partner sells on orders: a one-time item or a recurring plan."""

    name: str
    sku: str
    amount: int  # list price before tax, minor units of the partner's currency
    frequency: str | None = None  # None: one time
    self_service: bool = False  # offered in the customer portal's catalog
    payer_sets_amount: bool = False  # a donation: the customer chooses the amount


@dataclass(frozen=True)
class PartnerSpec:
    slug: str
    name: str
    country: str
    timezone: str
    currency: str
    locale: str
    tax_rate_bp: int
    users: tuple[tuple[str, str, str], ...]  # (email, name, role)
    customers: tuple[CustomerSpec, ...] = field(default=())
    products: tuple[ProductSpec, ...] = field(default=())
    sales_collect_payment: bool = False  # salespeople may take payments on orders
    portal_cancel_allowed: bool = False  # customers may cancel at the end of a period


US = PartnerSpec(
    slug="us-partner",
    name="Harbor Community Network",
    country="US",
    timezone="America/New_York",
    currency="USD",
    locale="en_US",
    tax_rate_bp=0,
    users=(
        ("admin@us-partner.example", "Avery Brooks", "partner_admin"),
        ("sales@us-partner.example", "Sam Ortiz", "partner_sales"),
    ),
    products=(
        ProductSpec("Community membership", "MEM-M", 2500, "monthly", self_service=True),
        ProductSpec("Annual supporter plan", "SUP-A", 12000, "annual", self_service=True),
        ProductSpec("Workshop seat", "WS-1", 4000),
        ProductSpec("Studio setup fee", "SETUP", 7500),
        ProductSpec(
            "Youth programs fund",
            "DON-Y",
            2000,
            "monthly",
            self_service=True,
            payer_sets_amount=True,
        ),  # fmt: skip
    ),
    sales_collect_payment=True,
    portal_cancel_allowed=True,
    customers=(
        CustomerSpec(
            key="jordan",
            name="Jordan Rivera",
            email="customer@example.com",
            user=True,
            subscriptions=(
                SubSpec(
                    "membership",
                    "Community membership",
                    "monthly",
                    2500,
                    0,
                    start_on_first_of_month=True,
                ),
                SubSpec("supporter", "Annual supporter plan", "annual", 12000, 15),
                SubSpec(
                    "equipment",
                    "Studio equipment installments",
                    "monthly",
                    15000,
                    -40,
                    stop_rule="balance_due",
                    total=60000,
                    charge_day=15,
                ),
            ),
            invoices=(
                InvSpec("workshop", "Workshop series fee", 4000, -5, 25, "created"),
                InvSpec("hall", "Hall rental — October", 9000, -42, -12, "overdue"),
            ),
        ),
        CustomerSpec(
            key="makers",
            name="Maple Street Makers",
            email="makers@example.com",
            card="5555555555554444",
            user=True,
            subscriptions=(SubSpec("weekly", "Open workshop pass", "weekly", 1500, -20),),
            invoices=(InvSpec("tools", "Tool library deposit", 5000, -30, -15, "paid"),),
        ),
        CustomerSpec(
            key="soccer",
            name="Riverside Youth Soccer",
            email="treasurer@riverside-soccer.example",
            card="4000000000000341",
            subscriptions=(
                SubSpec(
                    "season",
                    "League season dues",
                    "monthly",
                    5000,
                    -10,
                    status="error",
                    history=False,
                    decline_first=True,
                ),
            ),
            invoices=(InvSpec("fields", "Field booking — spring", 5000, -70, -40, "overdue"),),
        ),
        CustomerSpec(
            key="library",
            name="Oak Hill Library Friends",
            email="friends@oakhill-library.example",
            card=None,
            bank=True,
            subscriptions=(
                SubSpec(
                    "quarterly",
                    "Quarterly sponsorship",
                    "quarterly",
                    30000,
                    -100,
                    status="stopped",
                    stop_rule="count",
                    stop_count=4,
                ),
            ),
            invoices=(
                InvSpec("print", "Newsletter printing", 7500, -20, 10, "canceled"),
                InvSpec("books", "Book fair table", 3000, -12, 18, "created"),
            ),
        ),
        CustomerSpec(
            key="yoga",
            name="Sunrise Yoga Collective",
            email="hello@sunrise-yoga.example",
            subscriptions=(
                SubSpec("retreat", "Retreat deposit", "once", 20000, -30, status="complete"),
            ),
            invoices=(InvSpec("mats", "Mat storage — annual", 6000, -25, 5, "paid_by_check"),),
        ),
        CustomerSpec(
            key="scouts",
            name="Pine Ridge Scouts",
            email="leader@pineridge-scouts.example",
            card="378282246310005",
            subscriptions=(SubSpec("annual", "Annual troop membership", "annual", 9900, -200),),
        ),
    ),
)

DE = PartnerSpec(
    slug="de-partner",
    name="Rheinland Vereine GmbH",
    country="DE",
    timezone="Europe/Berlin",
    currency="EUR",
    locale="de_DE",
    tax_rate_bp=1900,
    users=(
        ("admin@de-partner.example", "Lena Wagner", "partner_admin"),
        ("sales@de-partner.example", "Jonas Becker", "partner_sales"),
    ),
    products=(
        ProductSpec("Mitgliedschaft", "MG-M", 4900, "monthly", self_service=True),
        ProductSpec("Probenraum Quartal", "PR-Q", 15000, "quarterly"),
        ProductSpec("Notenpaket", "NP-1", 3500),
    ),
    customers=(
        CustomerSpec(
            key="choir",
            name="Kölner Chorverein",
            email="kasse@koelner-chor.example",
            subscriptions=(
                SubSpec(
                    "dues",
                    "Mitgliedsbeitrag",
                    "monthly",
                    5831,
                    0,
                    charge_day=1,
                    start_on_first_of_month=True,
                ),
            ),
            invoices=(InvSpec("hall", "Konzertsaal Miete", 25000, -3, 11, "created"),),
        ),
        CustomerSpec(
            key="chess",
            name="Bonner Schachclub",
            email="vorstand@bonner-schach.example",
            card="5555555555554444",
            subscriptions=(SubSpec("semi", "Turnierlizenz", "semiannual", 12000, 20),),
            invoices=(InvSpec("boards", "Schachbretter", 8000, -38, -8, "overdue"),),
        ),
    ),
)

PARTNERS = (US, DE)
DEMO_WIDGET_KEY = "harbor-support"
OPERATOR = ("operator@example.com", "Olivia Operator")
