"""assist: per-chat switch for reply drafts written by the twin

Revision ID: 0004_assist
Revises: c4e1b7a9d2f0
Create Date: 2026-12-01 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0004_assist"
down_revision: str | None = "c4e1b7a9d2f0"


def upgrade() -> None:
    # Off for every existing chat: the twin drafts only where the owner switches it on.
    with op.batch_alter_table("dialog", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assist", sa.Boolean(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("dialog", schema=None) as batch_op:
        batch_op.drop_column("assist")
