"""The documentation stays true: the site builds strict, the README stays a landing page, the
configuration page names every key of config.example.yaml, the metrics page every family the demo
serves, and every alert links to a runbook page that names only series that exist.

The demo (`python -m exporter --demo`, a child process on 127.0.0.1) is the source of the metric
families: what it serves once every poller has run is what a user of this version sees.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit.procs import ExporterProcess, start_exporter
from tests.kit.waits import wait_http, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
RUNBOOKS = DOCS / "runbooks"

# Where every alert's runbook_url points: this base followed by `<AlertName>.md`, set in one
# place, `runbook_base_url` of mixin/config.yml (docs/alerts.md says how to change it).
RUNBOOK_BASE = yaml.safe_load((ROOT / "mixin" / "config.yml").read_text())["runbook_base_url"]

# The two commands the README gives verbatim (CI and the tests run them as they are written).
DEMO_COMMAND = "pip install . && cams-exporter --demo"
TEST_COMMAND = "bash scripts/test.sh"
README_MAX_LINES = 200

RULE_FILES = sorted((ROOT / "prometheus").glob("*.yml"))
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"

# Names in a runbook that look like a metric but are a label users add themselves (by metric
# relabelling, docs/alerts.md "Always-on senders"), not a series the exporter or the rules make.
USER_LABELS = {"cams_always_on"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
RUNBOOK_SECTIONS = (
    "## What it means",
    "## How to confirm it",
    "## Likely causes",
    "## When it resolves",
)


# --------------------------------------------------------------------------- the site


def test_the_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, or a page left out of the nav, fails
    here with MkDocs' own line naming the page."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    lines = result.stderr.splitlines()
    problems = [line for line in lines if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0 and not problems, "\n".join(problems) or result.stderr[-2000:]
    assert (tmp_path / "site" / "runbooks" / "CamsDataStale" / "index.html").is_file()


def test_docs_point_nowhere_outside_the_repository() -> None:
    """docs/ is self-contained: no relative link or path climbs out of the repository."""
    for page in DOCS.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text and "notes/cams-api.md" not in text, page
        depth = len(page.relative_to(DOCS).parts) - 1  # runbooks/ may link to ../ (docs/)
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target:
                continue
            assert target.count("../") <= depth, f"{page.relative_to(ROOT)} links to {target}"


# --------------------------------------------------------------------------- README


def test_readme_is_a_landing_page() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert DEMO_COMMAND in lines, "the demo command, verbatim, on a line of its own"
    assert TEST_COMMAND in lines, "the test command, verbatim, on a line of its own"
    # No commit hashes (they go stale): a word of 7 to 40 hex digits with a digit and a letter.
    hashes = [w for w in re.findall(r"\b[0-9a-f]{7,40}\b", text) if re.search(r"\d", w)]
    assert not [w for w in hashes if re.search(r"[a-f]", w)], hashes
    # Every page it links to exists.
    for target in re.findall(r"\]\((docs/[^)#\s]+)", text):
        assert (ROOT / target).is_file(), target


# --------------------------------------------------------------------------- configuration


def keys_of(node: Any) -> Iterator[str]:
    """Every mapping key in a YAML document, at any depth (list items included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from keys_of(value)
    elif isinstance(node, list):
        for item in node:
            yield from keys_of(item)


def test_every_key_of_the_example_config_is_on_the_configuration_page() -> None:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = set(keys_of(example))
    assert {"poll", "accounts", "sender_health", "max_error_series", "name_regex"} <= keys
    missing = sorted(key for key in keys if f"`{key}`" not in page)
    assert not missing, f"docs/configuration.md does not name {missing}"


# --------------------------------------------------------------------------- metrics


def families(exposition: str) -> set[str]:
    """The metric families of a text-format exposition, as `# TYPE` names them, without the
    `_created` gauges client_python adds beside its own counters and histograms."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE))
    created = set()
    for name, kind in types.items():
        if kind == "counter" and name.endswith("_total"):
            created.add(name.removesuffix("_total") + "_created")
        elif kind == "histogram":
            created.add(name + "_created")
    return {name for name in types if name not in created}


def has_sample(exposition: str, name: str) -> bool:
    return re.search(rf"^{name}[{{ ]", exposition, re.MULTILINE) is not None


@pytest.fixture(scope="module")
def demo_families(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """The families the demo serves once every poller ran: templates, phone numbers, the
    per-number counters and one health-status round."""
    log = tmp_path_factory.mktemp("demo") / "exporter.log"
    demo: ExporterProcess = start_exporter(log, "--demo")
    try:
        wait_http(f"{demo.url}/-/ready", timeout=60)

        def complete() -> str | None:
            text = demo.get("/metrics").text
            done = all(
                has_sample(text, name)
                for name in (
                    "cams_poll_last_success_timestamp_seconds",
                    "cams_phone_numbers_last_success_timestamp_seconds",
                    "cams_phone_number_messages_sent_total",
                    "cams_health_status_last_round_timestamp_seconds",
                )
            )
            return text if done else None

        exposition = wait_until(complete, timeout=60, what="every demo poller ran once")
        yield families(exposition)
    finally:
        assert demo.stop() == 0


def test_every_family_the_demo_serves_is_on_the_metrics_page(demo_families: set[str]) -> None:
    page = (DOCS / "metrics.md").read_text(encoding="utf-8")
    assert len(demo_families) > 40 and "cams_template_messages_read_total" in demo_families
    missing = sorted(name for name in demo_families if f"`{name}`" not in page)
    assert not missing, f"docs/metrics.md does not describe {missing}"
    # The README lists the exporter's own families by name (the standard ones by prefix).
    readme = README.read_text(encoding="utf-8")
    ours = {name for name in demo_families if name.startswith("cams_")}
    unlisted = sorted(name for name in ours if f"`{name}`" not in readme)
    assert not unlisted, f"README.md does not list {unlisted}"


# --------------------------------------------------------------------------- alerts, runbooks


def alerts_in(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def all_alerts() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, alert name, rule) for every alert of prometheus/*.yml and the PrometheusRule."""
    found = []
    for path in RULE_FILES:
        for name, rule in alerts_in(yaml.safe_load(path.read_text())["groups"]).items():
            found.append((path.name, name, rule))
    manifest = yaml.safe_load(PROMETHEUS_RULE.read_text())
    for name, rule in alerts_in(manifest["spec"]["groups"]).items():
        found.append((PROMETHEUS_RULE.name, name, rule))
    return found


def recorded_names() -> set[str]:
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_every_alert_links_to_its_runbook_page() -> None:
    alerts = all_alerts()
    assert len({name for _, name, _ in alerts}) >= 14
    for source, name, rule in alerts:
        page = RUNBOOKS / f"{name}.md"
        assert page.is_file(), f"{source}: {name} has no docs/runbooks/{name}.md"
        url = rule["annotations"]["runbook_url"]
        assert url == RUNBOOK_BASE + f"{name}.md", f"{source}: {name}: runbook_url {url}"
        assert url.endswith(f"docs/runbooks/{name}.md")
    # and every runbook page belongs to an alert, and is listed on the alerts page
    names = {name for _, name, _ in alerts}
    assert {page.stem for page in RUNBOOKS.glob("*.md")} == names
    overview = (DOCS / "alerts.md").read_text(encoding="utf-8")
    for name in names:
        assert f"(runbooks/{name}.md)" in overview, name


def test_every_runbook_has_its_sections() -> None:
    for page in sorted(RUNBOOKS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        assert text.startswith(f"# {page.stem}\n"), page.name
        for section in RUNBOOK_SECTIONS:
            assert f"\n{section}\n" in text, (page.name, section)
        assert "\n## What to do" in text, page.name
        assert "```promql" in text, f"{page.name}: no query to confirm the alert with"


def test_runbooks_name_only_series_that_exist(demo_families: set[str]) -> None:
    served = demo_families | {f + s for f in demo_families for s in HISTOGRAM_SUFFIXES}
    recorded = recorded_names()
    assert "cams:template_data:stale" in recorded
    for page in sorted(RUNBOOKS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        metrics = set(re.findall(r"\bcams_[a-z0-9_]*[a-z0-9]", text)) - USER_LABELS
        rules = set(re.findall(r"\bcams:[a-z][a-z0-9_:]*[a-z0-9]", text))
        assert metrics or rules, page.name
        unknown = sorted((metrics - served) | (rules - recorded))
        assert not unknown, f"{page.name} names {unknown}: not served by the exporter nor recorded"
