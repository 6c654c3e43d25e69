"""``flask billing run|verify``: run or preview a day's billing, and check the ledger."""

from __future__ import annotations

from datetime import date

import click
from flask.cli import AppGroup
from sqlmodel import select

from app.clock import utcnow
from app.domain.money import format_money
from app.extensions import gateway, resources, session_scope

billing_cli = AppGroup("billing", help="Recurring billing: run a day, verify the ledger.")


def _parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD, e.g. 2026-12-01") from None


@billing_cli.command("run")
@click.option("--date", "day", help="The billing day (YYYY-MM-DD); default: each partner's today.")
@click.option("--dry-run", is_flag=True, help="List what would be charged, without charging.")
@click.option("--partner", "slug", help="Only this partner (its slug).")
@click.option("--enqueue", is_flag=True, help="Fan the run out to the RQ workers instead.")
def run_command(day: str | None, dry_run: bool, slug: str | None, enqueue: bool) -> None:
    """Charge (or preview) every subscription due on the day, once per period, and the
    payments customers scheduled for the day (or missed days before it)."""
    from app.clock import local_today
    from app.models import Partner
    from app.services.billing_run import preview_run, process_chunk, start_run
    from app.services.scheduled_payments import charge_due_scheduled_payments

    settings = resources().settings
    chosen = _parse_day(day)
    with session_scope() as session:
        partners = session.exec(select(Partner).order_by(Partner.id)).all()
        if slug:
            partners = [p for p in partners if p.slug == slug]
            if not partners:
                raise click.BadParameter(f"no partner with slug {slug!r}", param_hint="--partner")
        for partner in partners:
            run_date = chosen or local_today(partner.timezone)
            if dry_run:
                preview = preview_run(session, run_date=run_date, partner_id=partner.id)
                click.echo(f"{partner.name} — {run_date}: {preview.count} charge(s) would be made")
                for sub, when, amount in preview.charges:
                    money = format_money(amount, sub.currency)
                    click.echo(f"  #{sub.id:<6} {when}  {money:>12}  {sub.description}")
                for currency, total in sorted(preview.totals.items()):
                    count = sum(1 for s, _, _ in preview.charges if s.currency == currency)
                    click.echo(
                        f"  total {currency}: {count} charge(s), {format_money(total, currency)}"
                    )
                for sub in preview.without_method:
                    click.echo(f"  #{sub.id:<6} skipped: no payment method on file")
                _preview_scheduled(session, partner.id, run_date)  # type: ignore[arg-type]
                continue
            if enqueue:
                from app.jobs.billing import enqueue_run

                run_id = enqueue_run(partner.id, run_date)  # type: ignore[arg-type]
                click.echo(f"{partner.name} — {run_date}: run #{run_id} queued on 'billing'")
                continue
            plan = start_run(
                session,
                partner_id=partner.id,
                run_date=run_date,
                chunk_size=settings.billing_chunk_size,
            )  # type: ignore[arg-type]
            ids = [i for chunk in plan.chunks for i in chunk]
            tally: dict[str, int] = {}
            with click.progressbar(ids, label=f"{partner.name} — {run_date}", show_pos=True) as bar:
                for sub_id in bar:
                    counts = process_chunk(
                        session,
                        gateway(),
                        run_id=plan.run.id,  # type: ignore[arg-type]
                        subscription_ids=[sub_id],
                        now=utcnow(),
                        base_url=settings.base_url,
                        on_email=_enqueue_emails,
                    )
                    for key, value in counts.items():
                        tally[key] = tally.get(key, 0) + value
            summary = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()) if v) or "nothing due"
            click.echo(f"  run #{plan.run.id}: {summary}")
            scheduled = charge_due_scheduled_payments(
                session, gateway(), partner_id=partner.id, as_of=run_date, now=utcnow(),
                base_url=settings.base_url, on_email=_enqueue_emails,
            )  # type: ignore[arg-type]  # fmt: skip
            click.echo(f"  {_scheduled_summary(scheduled)}")


def _scheduled_summary(tally: dict[str, int]) -> str:
    declined = tally.get("declined", 0) + tally.get("errors", 0)
    line = f"scheduled payments: charged {tally.get('charged', 0)}, declined {declined}"
    words = (("unknown", "being confirmed"), ("canceled", "canceled (invoice settled)"))
    extra = [f"{word} {tally[key]}" for key, word in words if tally.get(key)]
    return ", ".join([line, *extra])


def _preview_scheduled(session, partner_id: int, run_date: date) -> None:  # noqa: ANN001
    """List the scheduled payments a run of ``run_date`` would charge (no money moves)."""
    from app.models import Invoice, ScheduledStatus
    from app.services.scheduled_payments import due_scheduled_payments

    rows = [
        r
        for r in due_scheduled_payments(session, partner_id=partner_id, as_of=run_date)
        if r.status == ScheduledStatus.SCHEDULED
    ]
    click.echo(f"  {len(rows)} scheduled payment(s) would be charged")
    for row in rows:
        invoice = session.get(Invoice, row.invoice_id)
        number = invoice.number if invoice else "?"
        money = format_money(row.amount, row.currency)
        click.echo(f"  scheduled #{row.id:<6} {row.pay_on}  {money:>12}  invoice {number}")


def _enqueue_emails(ids: list[int]) -> None:
    if not ids:
        return
    from app.jobs.dispatch import enqueue_emails

    try:
        enqueue_emails(ids)
    except Exception as exc:  # Redis down: the outbox sweeper sends them later
        click.echo(f"  (emails {ids} stay in the outbox: {exc})", err=True)


@billing_cli.command("verify")
@click.option("--fix", is_flag=True, help="Settle unknown attempts from the processor's records.")
def verify_command(fix: bool) -> None:
    """List every difference between Portico's charges and the processor's records."""
    from app.services.reconcile import open_attempts, settle, verify

    with session_scope() as session:
        if fix:
            now = utcnow()
            for attempt in open_attempts(session, now=now):
                status, ids = settle(session, gateway(), attempt, now=now)
                click.echo(f"settled {attempt.purpose_key}: {status}")
                _enqueue_emails(ids)
        differences = verify(session, gateway())
    if not differences:
        click.echo("The ledger and the processor agree.")
        return
    for d in differences:
        click.echo(f"{d.purpose_key}: ours={d.ours} theirs={d.theirs} ({d.note})")
    raise SystemExit(1)
