"""Accessibility checks shared by the browser tests (axe-core through Playwright)."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page; prints the others."""
    violations = Axe().run(page).response["violations"]
    for v in violations:
        if v["impact"] not in ("serious", "critical"):
            print(f"axe {page.url}: {v['id']} ({v['impact']}) x{len(v['nodes'])}: {v['help']}")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
