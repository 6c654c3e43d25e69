"""Order upkeep through a real RQ worker and a real Redis: a scheduled order activates on
its partner-local day, an old hold is voided, and running again changes nothing."""

from __future__ import annotations

from datetime import timedelta

from rq import Queue
from sqlmodel import Session

from app.clock import local_today, utcnow
from app.jobs.worker import PorticoWorker
from app.models import Order, Partner
from app.services.order_payments import CardChoice
from tests.services.account_helpers import US_ADMIN
from tests.services.order_helpers import find_user, make_order, new_card, new_customer, submit


def _run_upkeep(app) -> None:  # noqa: ANN001
    redis = app.extensions["portico"].redis
    queue = Queue("default", connection=redis)
    queue.enqueue("app.jobs.orders.order_upkeep")
    PorticoWorker([queue], connection=redis).work(burst=True)


def test_does_the_upkeep_job_activate_due_orders_and_void_old_holds_once(demo, engine) -> None:
    with demo.app_context(), Session(engine, expire_on_commit=False) as db:
        admin = find_user(db, US_ADMIN)
        partner = db.get(Partner, admin.partner_id)
        assert partner is not None
        today = local_today(partner.timezone)
        now = utcnow()
        tomorrow = today + timedelta(days=1)
        customer = new_customer(db, partner.id)  # type: ignore[arg-type]
        due = make_order(db, customer, [("Plan", 1, 2000, "monthly", tomorrow)], by=admin)
        later = make_order(
            db, customer, [("Plan", 1, 2000, "monthly", today + timedelta(9))], by=admin
        )
        held = make_order(db, customer, [("Kit", 1, 5000, "once", today)], by=admin)
        for order in (due, later):
            assert (
                submit(
                    demo, db, admin, order, card=CardChoice(new_method=new_card(demo)), now=now
                ).order_status
                == "scheduled"
            )
        eight_days_ago = now - timedelta(days=8)
        assert submit(
            demo,
            db,
            admin,
            held,
            choice="authorize",
            card=CardChoice(new_method=new_card(demo)),
            now=eight_days_ago,
        ).approved
        # The scheduled order's day comes: move its date back instead of the clock forward.
        db.get(Order, due.id).activation_date = today  # type: ignore[union-attr]
        db.commit()
        ids = (due.id, later.id, held.id)

    _run_upkeep(demo)
    _run_upkeep(demo)

    with demo.app_context(), Session(engine) as db:
        statuses = [db.get(Order, order_id).status for order_id in ids]  # type: ignore[union-attr]
    assert statuses == ["activated", "scheduled", "voided"]
