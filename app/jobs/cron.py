"""``rq cron app.jobs.cron``: what runs on a schedule."""

from rq import cron

from app.jobs.billing import reconcile_payments, start_daily_runs
from app.jobs.dunning import start_daily_dunning
from app.jobs.maintenance import (
    apply_webhook_events,
    complete_canceled_subscriptions,
    sweep_outbox,
)
from app.jobs.orders import order_upkeep

cron.register(sweep_outbox, queue_name="email", interval=60)
# Each partner's run starts at its billing hour in its own timezone; checking every few
# minutes finds it, and the (partner, day) unique run row makes repeated checks harmless.
cron.register(start_daily_runs, queue_name="billing", interval=300)
cron.register(reconcile_payments, queue_name="billing", interval=300)
# Each partner's dunning sweep starts at its local dunning hour (08:00); the (partner, day)
# run row, created before the job is queued, makes a day's sweep start once.
cron.register(start_daily_dunning, queue_name="default", interval=300)
# Scheduled orders activate on their partner-local day, and uncaptured holds are voided
# after the partner's authorization days; both are idempotent, so each tick may run them.
cron.register(order_upkeep, queue_name="default", interval=300)
# Subscriptions a customer canceled end (become complete) the day after their paid
# period; the step is idempotent, so an hourly tick is enough and a missed one catches up.
cron.register(complete_canceled_subscriptions, queue_name="default", interval=3600)
# Processor events whose application failed or whose delivery died after storing them
# (the processor redelivers only until it hears a 2xx); applying is idempotent.
cron.register(apply_webhook_events, queue_name="default", interval=300)
