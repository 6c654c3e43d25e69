"""Flask CLI commands (ARCHITECTURE §4). Later issues add `billing` and `dunning` groups."""

from __future__ import annotations

import click
from flask import Flask

from app.extensions import gateway, session_scope


@click.command("seed-demo")
def seed_demo_command() -> None:
    """Load the demo partners, users, customers and invoices (once; safe to repeat)."""
    from app.services.demo import seed_demo

    with session_scope() as session:
        created = seed_demo(session, gateway())
    if created:
        click.echo("Demo data loaded. Every demo user's password: portico-demo")
    else:
        click.echo("Demo data already present; nothing changed.")


def init_app(app: Flask) -> None:
    from app.cli_billing import billing_cli
    from app.cli_dunning import dunning_cli

    app.cli.add_command(seed_demo_command)
    app.cli.add_command(billing_cli)
    app.cli.add_command(dunning_cli)
