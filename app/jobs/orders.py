"""Order upkeep, run by ``rq cron``: scheduled orders activate on their day, and holds
not captured in time are voided. Both are safe to repeat, so every tick may run them."""

from __future__ import annotations

from sqlmodel import select

from app.clock import local_today, utcnow
from app.jobs.context import job_session


def order_upkeep() -> dict[str, int]:
    """Cron: for every partner, on its local day, activate due scheduled orders and void
    authorizations older than its ``authorization_days``. Returns the counts."""
    from app.extensions import gateway
    from app.models import Partner
    from app.services.order_activation import activate_due_orders
    from app.services.order_holds import void_expired_authorizations

    activated = voided = 0
    with job_session() as session:
        partners = session.exec(select(Partner.id, Partner.timezone)).all()
        session.rollback()
        for partner_id, timezone in partners:
            now = utcnow()
            as_of = local_today(timezone)
            activated += activate_due_orders(session, partner_id=partner_id, as_of=as_of, now=now)  # type: ignore[arg-type]
            voided += void_expired_authorizations(
                session,
                gateway(),
                partner_id=partner_id,  # type: ignore[arg-type]
                as_of=as_of,
                now=now,
            )
    return {"activated": activated, "voided": voided}
