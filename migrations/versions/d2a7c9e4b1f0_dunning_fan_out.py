"""dunning fan-out: sweep and chunk counters on the run, done chunks, the sweep's index

Revision ID: d2a7c9e4b1f0
Revises: c4e8f1a2b3d5
Create Date: 2026-11-21 12:16:55.601335
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d2a7c9e4b1f0"
down_revision: str | None = "c4e8f1a2b3d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE = sa.text("next_dunning_on IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "dunningrunchunk",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("sweep", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["dunningrun.id"], name=op.f("fk_dunningrunchunk_run_id_dunningrun")
        ),
        sa.PrimaryKeyConstraint("run_id", "sweep", "chunk", name=op.f("pk_dunningrunchunk")),
    )
    with op.batch_alter_table("dunningrun", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sweeps", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("chunks", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("chunks_done", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_index(
        "ix_invoice_dunning_due",
        "invoice",
        ["partner_id", "next_dunning_on", "id"],
        unique=False,
        postgresql_where=_DUE,
        sqlite_where=_DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_invoice_dunning_due", table_name="invoice")
    with op.batch_alter_table("dunningrun", schema=None) as batch_op:
        batch_op.drop_column("chunks_done")
        batch_op.drop_column("chunks")
        batch_op.drop_column("sweeps")
    op.drop_table("dunningrunchunk")
