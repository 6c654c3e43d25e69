"""``rq cron app.jobs.cron``: what runs on a schedule. Later issues add their daily runs."""

from rq import cron

from app.jobs.maintenance import sweep_outbox

cron.register(sweep_outbox, queue_name="email", interval=60)
