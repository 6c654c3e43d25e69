"""partner pages indexes

Revision ID: c4e8f1a2b3d5
Revises: 85d7a0bc8e0e
Create Date: 2026-11-22 09:00:00.000000
"""

from collections.abc import Sequence


revision: str = 'c4e8f1a2b3d5'
down_revision: str | None = '85d7a0bc8e0e'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
