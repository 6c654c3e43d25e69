"""partner pages indexes: open invoices by partner, payments by day, history by account

Revision ID: c4e8f1a2b3d5
Revises: 85d7a0bc8e0e
Create Date: 2026-11-22 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c4e8f1a2b3d5"
down_revision: str | None = "85d7a0bc8e0e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_invoice_partner_status_due", "invoice", ["partner_id", "status", "due_date"]
    )
    op.create_index(
        "ix_payment_partner_received",
        "payment",
        ["partner_id", "status", "received_on", "currency", "kind", "amount"],
    )
    op.create_index(
        "ix_auditevent_account_created", "auditevent", ["customer_account_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_auditevent_account_created", table_name="auditevent")
    op.drop_index("ix_payment_partner_received", table_name="payment")
    op.drop_index("ix_invoice_partner_status_due", table_name="invoice")
