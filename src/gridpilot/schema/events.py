"""Gateway changes announced through PostgreSQL (LISTEN/NOTIFY), so every
headend replica acts on them at once instead of at its next poll.

The writer announces inside its own transaction (PostgreSQL delivers the
notification at commit, never for a rollback); the payload is only the
gateway id, and the listener reads what changed from the tables.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

# A gateway's certificates were revoked, its enrollment withdrawn, or an
# asset re-bound away from it: its live sessions must be checked again.
GATEWAY_CHANGED = "gridpilot_gateway_changed"


async def announce_gateway_changed(conn: AsyncConnection, gateway_id: str) -> None:
    await conn.execute(select(func.pg_notify(GATEWAY_CHANGED, gateway_id)))
