"""audit events: indexes for the operator's newest-first listing

Revision ID: f3c6a9d2b8e1
Revises: e5b8d1c3a7f2
Create Date: 2026-12-07 06:05:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f3c6a9d2b8e1"
down_revision: str | None = "e5b8d1c3a7f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # /operator/audit reads the newest 51 events, all partners or one: without these
    # every page sorts the whole table.
    op.create_index("ix_auditevent_created", "auditevent", ["created_at"])
    op.create_index("ix_auditevent_partner_created", "auditevent", ["partner_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_auditevent_partner_created", table_name="auditevent")
    op.drop_index("ix_auditevent_created", table_name="auditevent")
