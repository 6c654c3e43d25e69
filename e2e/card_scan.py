"""No card data at rest: scan a live stack's database, logs, outbox and Redis for the
sandbox's test card (and bank account) numbers and for CVCs.

What is looked for:

- every documented test number (``app/gateway/sandbox_cards.py``: the cards, and the
  bank account numbers) in any format: digits alone, or grouped with spaces, dashes,
  dots, ``+`` or ``%20`` (form-encoded), and not inside a longer run of digits;
- a CVC next to its name: ``cvc=123``, ``"cvc": "123"``, ``CVC: 1234``, ``cvv``,
  ``security_code`` (the e2e tests type the common ``123``, so the bare digits would
  match every id and amount; the name and value together are what a leak looks like).

Where: every column of every table of the stack's database (the sandbox processor's
``sandbox_*`` tables included, since they live in Portico's database; the outbox's
subjects and bodies are columns of ``outboxmessage``), the raw bytes of a SQLite file and
its WAL (deleted rows linger in free pages), every log file of the stack's processes
(web, worker, demo sites: their stdout and stderr), and every key of its Redis database
(RQ's job payloads are zlib-compressed pickles, so they are unpacked too).
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.gateway.sandbox_cards import TEST_BANK_ACCOUNTS, TEST_CARDS

_SEPARATOR = r"(?:[ .+\-]|%20|&nbsp;|\u00a0)?"
_NUMBERS = sorted(
    {c.digits for c in TEST_CARDS} | {a.account_number for a in TEST_BANK_ACCOUNTS},
    key=len,
    reverse=True,
)
NUMBER = re.compile("|".join(rf"(?<!\d){_SEPARATOR.join(number)}(?!\d)" for number in _NUMBERS))
_NAME = r"(?:cvc|cvv2?|csc|security[ _-]?code|card[ _-]?code)"
CVC = re.compile(
    rf"""(?ix)
    \b{_NAME}\b ["']? \s* (?:[:=]|%3A|%3D) \s* ["']? \s* \d{{3,4}} (?!\d)  # cvc=123, "cvc": "123"
    | name=["']{_NAME}["'][^>]{{0,200}}value=["']\d{{3,4}}["']           # a filled form field
    """
)


@dataclass
class ScanReport:
    """What one scan read, and where it found card data (empty: nothing)."""

    findings: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    rows: int = 0
    files: list[str] = field(default_factory=list)
    file_bytes: int = 0
    redis_keys: int = 0


def find(text: str) -> list[str]:
    """Each test number or CVC in ``text``, as found (with a few characters around)."""
    found = []
    for pattern, kind in ((NUMBER, "card/account number"), (CVC, "CVC")):
        for match in pattern.finditer(text):
            start, end = max(0, match.start() - 20), min(len(text), match.end() + 20)
            excerpt = text[start:end].replace("\n", " ")
            found.append(f"{kind} {match.group(0)!r} in …{excerpt}…")
    return found


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def scan_database(url: str, report: ScanReport) -> None:
    """Every column of every row of every table (values as text, JSON as JSON)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        quote = engine.dialect.identifier_preparer.quote
        for table in sorted(inspect(engine).get_table_names()):
            report.tables.append(table)
            with engine.connect() as conn:
                result = conn.execution_options(yield_per=1000).execute(
                    text(f"SELECT * FROM {quote(table)}")
                )
                for number, row in enumerate(result.mappings(), start=1):
                    report.rows += 1
                    for column, value in row.items():
                        if value is None:
                            continue
                        for hit in find(_as_text(value)):
                            report.findings.append(
                                f"database {table}.{column} (row {number}): {hit}"
                            )
    finally:
        engine.dispose()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for file in (path, path.with_name(path.name + "-wal")):
            scan_file(file, report, label="database file")


def scan_file(path: Path, report: ScanReport, *, label: str = "log") -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    report.files.append(path.name)
    report.file_bytes += len(data)
    for hit in find(data.decode("latin-1")):
        report.findings.append(f"{label} {path.name}: {hit}")


def _redis_values(client: Any, key: bytes) -> Iterator[bytes]:
    kind = client.type(key)
    if kind == b"string":
        yield client.get(key) or b""
    elif kind == b"hash":
        yield from client.hgetall(key).values()
    elif kind == b"list":
        yield from client.lrange(key, 0, -1)
    elif kind == b"set":
        yield from client.smembers(key)
    elif kind == b"zset":
        yield from client.zrange(key, 0, -1)


def scan_redis(url: str, report: ScanReport) -> None:
    """Every key's values, and their zlib-unpacked form when they are compressed."""
    from redis import Redis

    with Redis.from_url(url) as client:
        for key in client.scan_iter(count=500):
            report.redis_keys += 1
            for value in _redis_values(client, key):
                texts = [value.decode("latin-1")]
                with contextlib.suppress(zlib.error):  # not compressed
                    texts.append(zlib.decompress(value).decode("latin-1"))
                for text in texts:
                    for hit in find(text):
                        report.findings.append(f"redis {key.decode('latin-1')}: {hit}")


def scan_stack(workdir: Path, database_url: str, redis_url: str) -> ScanReport:
    """Scan one stack: its database, its processes' logs, its Redis."""
    report = ScanReport()
    scan_database(database_url, report)
    for log in sorted(workdir.glob("*.log")):
        scan_file(log, report)
    scan_redis(redis_url, report)
    return report


# Reports of the stacks stopped so far in this session (``running_stack`` adds them).
STOPPED: list[tuple[str, ScanReport]] = []


def check_stopped_stack(workdir: Path, database_url: str, redis_url: str) -> None:
    """Scan a stack that has just stopped (before its database is dropped), keep the
    report, and fail when it found card data."""
    import pytest

    report = scan_stack(workdir, database_url, redis_url)
    STOPPED.append((workdir.name, report))
    if report.findings:
        pytest.fail(
            "card data at rest in the e2e stack "
            f"{workdir.name}:\n" + "\n".join(report.findings[:50]),
            pytrace=False,
        )
