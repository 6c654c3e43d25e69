"""``flask dunning run``: send (or preview) a day's overdue reminders, warnings and stops."""

from __future__ import annotations

from collections import Counter
from datetime import date

import click
from flask.cli import AppGroup
from sqlmodel import Session, select

from app.clock import utcnow
from app.domain.money import format_money
from app.extensions import resources, session_scope

dunning_cli = AppGroup("dunning", help="Overdue reminders: run or preview a day's dunning.")


def _parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD, e.g. 2026-12-01", param_hint="--date") from None


@dunning_cli.command("run")
@click.option("--date", "day", help="The day (YYYY-MM-DD); default: each partner's today.")
@click.option("--dry-run", is_flag=True, help="List what would be sent, without sending.")
@click.option("--partner", "slug", help="Only this partner (its slug).")
def run_command(day: str | None, dry_run: bool, slug: str | None) -> None:
    """Send every overdue stage due on the day, once per invoice and stage."""
    from app.clock import local_today
    from app.models import Partner

    chosen = _parse_day(day)
    with session_scope() as session:
        query = select(Partner).order_by(Partner.id)
        if slug:
            query = query.where(Partner.slug == slug)
        partners = session.exec(query).all()
        if slug and not partners:
            raise click.BadParameter(f"no partner with slug {slug!r}", param_hint="--partner")
        targets = [(p.id, p.name, chosen or local_today(p.timezone)) for p in partners]
        session.rollback()
        for partner_id, name, run_date in targets:
            if dry_run:
                _preview(session, partner_id, name, run_date)
            else:
                _run(session, partner_id, name, run_date)


def _preview(session: Session, partner_id: int, name: str, run_date: date) -> None:
    from app.services.dunning_preview import preview_sweep

    plans = preview_sweep(session, partner_id=partner_id, as_of=run_date)
    sends = [p for p in plans if p.decision is not None and p.decision.stage is not None]
    click.echo(f"{name} — {run_date}: {len(sends)} stage(s) would be sent (dry run)")
    for plan in plans:
        invoice = plan.invoice
        head = f"  {invoice.number:<14} {plan.account.name[:28]:<28}"
        if plan.decision is None:
            click.echo(f"{head} {invoice.status}: leaves the sweep")
            continue
        decision = plan.decision
        balance = format_money(invoice.balance, invoice.currency)
        for stage in decision.skipped:
            click.echo(f"{head} day {stage.day:>3} {stage.kind.value:<8} skipped (caught up)")
        if decision.stage is not None:
            to = ", ".join(f"{who} <{address}>" for who, address in plan.recipients)
            click.echo(
                f"{head} day {decision.stage.day:>3} {decision.stage.kind.value:<8} "
                f"{decision.days} days overdue, {balance} → {to}"
            )
        elif decision.mark_overdue:
            click.echo(f"{head} turns overdue ({balance}); first stage later")
    session.rollback()


def _run(session: Session, partner_id: int, name: str, run_date: date) -> None:
    """Start the day's sweep and do its chunks here (no worker needed), with a progress bar;
    the emails go to the queue. A cron sweep of the same day still running is superseded:
    whichever handles an invoice first counts it."""
    from app.services.dunning_runs import start_sweep, sweep_run_chunk

    settings = resources().settings
    now = utcnow()
    plan = start_sweep(session, partner_id=partner_id, run_date=run_date, now=now)
    tally: Counter[str] = Counter()
    with click.progressbar(
        length=plan.invoices, label=f"{name} — {run_date}", show_pos=True
    ) as bar:

        def progress(counts: Counter[str]) -> None:
            tally.update(counts)
            bar.update(counts["invoices"] + counts["taken"])

        for n in range(plan.chunks):
            sweep_run_chunk(
                session,
                run_id=plan.run_id,
                sweep=plan.sweep,
                chunk=n,
                chunks=plan.chunks,
                now=now,
                base_url=settings.base_url,
                secret=settings.secret_key,
                on_emails=_enqueue_emails,
                on_progress=progress,
            )
    names = ("sent", "skipped", "stopped", "overdue", "closed", "emails", "taken")
    summary = ", ".join(f"{k} {tally[k]}" for k in names if tally[k]) or "nothing due"
    click.echo(f"  dunning run #{plan.run_id}: {summary}")


def _enqueue_emails(ids: list[int]) -> None:
    from app.jobs.dispatch import enqueue_emails

    try:
        enqueue_emails(ids)
    except Exception as exc:  # Redis down: the outbox sweeper sends them later
        click.echo(f"  ({len(ids)} emails stay in the outbox: {exc})", err=True)
