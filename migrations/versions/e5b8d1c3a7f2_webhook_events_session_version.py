"""processor webhook events; users' session version

Revision ID: e5b8d1c3a7f2
Revises: d2a7c9e4b1f0
Create Date: 2026-12-07 05:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5b8d1c3a7f2"
down_revision: str | None = "d2a7c9e4b1f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processorevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("object_ref", sa.String(length=255), nullable=False),
        sa.Column("event_created", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processorevent")),
        sa.UniqueConstraint("gateway", "event_id", name="uq_processorevent_event"),
    )
    op.create_index(
        op.f("ix_processorevent_object_ref"), "processorevent", ["object_ref"], unique=False
    )
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("session_version")
    op.drop_index(op.f("ix_processorevent_object_ref"), table_name="processorevent")
    op.drop_table("processorevent")
