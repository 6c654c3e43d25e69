"""Every table, imported so SQLModel.metadata (and Alembic) sees them all."""

from app.models import sandbox  # noqa: F401  (the sandbox processor's own tables)
from app.models.accounts import (
    AccountStatus,
    CustomerAccount,
    MethodKind,
    Partner,
    PaymentMethod,
    Role,
    User,
)
from app.models.audit import AuditEvent
from app.models.billing import (
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    Subscription,
)
from app.models.dunning import DunningNotice, DunningRun, DunningRunStatus
from app.models.notifications import OutboxMessage, OutboxStatus
from app.models.on_behalf import OnBehalfDraft
from app.models.orders import Order, OrderLine
from app.models.portal import LinkPurpose, ScheduledPayment, ScheduledStatus, SignInToken
from app.models.runs import BillingRun, RunStatus
from app.models.webhooks import ProcessorEvent
from app.models.widgets import AmountMode, DeclineRecord, PayLink, Widget

__all__ = [
    "AccountStatus",
    "LinkPurpose",
    "ScheduledPayment",
    "ScheduledStatus",
    "SignInToken",
    "AmountMode",
    "DeclineRecord",
    "DunningNotice",
    "DunningRun",
    "DunningRunStatus",
    "PayLink",
    "Widget",
    "AuditEvent",
    "ProcessorEvent",
    "BillingRun",
    "RunStatus",
    "CustomerAccount",
    "Invoice",
    "InvoiceLine",
    "InvoiceSequence",
    "InvoiceStatus",
    "MethodKind",
    "OnBehalfDraft",
    "Order",
    "OrderLine",
    "OutboxMessage",
    "OutboxStatus",
    "Partner",
    "Payment",
    "PaymentKind",
    "PaymentMethod",
    "PaymentStatus",
    "Product",
    "Role",
    "Subscription",
    "User",
]
