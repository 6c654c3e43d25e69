"""Project-wide rules that every change must keep."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import app.models  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def _alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def test_is_there_a_single_migration_head() -> None:
    heads = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"several Alembic heads: {heads}"


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path):  # noqa: ANN201
    """An empty database of the suite's kind (a new one on the PostgreSQL server)."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    name = f"portico_migrations_{secrets.token_hex(4)}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = database_url.rpartition("/")
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_do_the_migrations_create_the_schema_of_the_models(fresh_database_url: str) -> None:
    command.upgrade(_alembic_config(fresh_database_url), "head")
    engine = create_engine(fresh_database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_do_the_migrations_downgrade_to_nothing_and_back(fresh_database_url: str) -> None:
    config = _alembic_config(fresh_database_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")


def test_is_stripe_imported_only_inside_the_gateway_package() -> None:
    pattern = re.compile(r"^\s*(import stripe\b|from stripe\b)", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "app").rglob("*.py")
        if pattern.search(path.read_text()) and path.parent != ROOT / "app" / "gateway"
    ]
    assert offenders == []


def test_is_third_party_front_end_code_kept_out_of_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "app/static/vendor/" in ignored
    assert "node_modules/" in ignored


def _imported_names(node) -> set[str]:  # noqa: ANN001
    from jinja2 import nodes

    names: set[str] = set()
    for imp in node.find_all(nodes.FromImport):
        names.update(n[1] if isinstance(n, tuple) else n for n in imp.names)
    for imp in node.find_all(nodes.Import):
        names.add(imp.target)
    return names


def test_does_every_block_import_the_macros_it_calls() -> None:
    """A block rendered alone for htmx does not see imports made outside it."""
    from jinja2 import Environment, nodes

    env = Environment()
    alone = {
        name
        for path in (ROOT / "app").rglob("*.py")
        for name in re.findall(r'block="(\w+)"', path.read_text())
    }
    assert alone, "no view renders a block alone?"
    problems = []
    for folder in ("templates", "components"):
        for path in (ROOT / "app" / folder).rglob("*.html"):
            tree = env.parse(path.read_text())
            blocks = list(tree.find_all(nodes.Block))
            inside_blocks: set[str] = set()
            for block in blocks:
                inside_blocks |= _imported_names(block)
            top_level = _imported_names(tree) - inside_blocks
            for block in (b for b in blocks if b.name in alone):
                called = {
                    call.node.name
                    for call in block.find_all(nodes.Call)
                    if isinstance(call.node, nodes.Name)
                }
                missing = (called & top_level) - _imported_names(block)
                if missing:
                    problems.append(
                        f"{path.relative_to(ROOT)} block {block.name}: {sorted(missing)}"
                    )
    assert problems == []
