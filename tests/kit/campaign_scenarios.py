"""The campaign scenarios of issue 11, as promtool unit tests generated from the traffic model.

A `Case` is one promtool test case: template-languages played by `trafficmodel.simulate` (late
reads over about 48 h, increments at each 5-minute poll, bursts, weekend dips, moving send times,
slow audiences, campaign ends, small volumes), each in its own account unless it needs peers,
and what the alerts must do with them:

- `Fires`: the alert fires for one template at a given time and not one step earlier, never
  before the first badly-read send (or the stop), and keeps firing (or resolves) later on;
- every other template of the case never fires a template alert over the whole run.

The checks read the ALERTS series (`ALERTS{alertname=..., alertstate="firing",
template_code=...}` at an eval_time, the same state alert_rule_test compares) so that several
templates of one case can be checked apart. The asserted fire times are what promtool measures
with the shipped rules (`--probe` prints them); tests/artifacts/test_campaign_scenarios.py checks
each one against the issue's bound (12 h from the first badly-read send, 24 h for small
templates, about 25 h after a real stop).

    python3 -m tests.kit.campaign_scenarios          # rewrite prometheus/tests/campaign_*_test.yml
    python3 -m tests.kit.campaign_scenarios --check  # exit 1 if those files are out of date
    python3 -m tests.kit.campaign_scenarios --probe  # run promtool, print the fire times
    python3 -m tests.kit.campaign_scenarios --probe --rules OTHER_RECORDING.yml OTHER_ALERTS.yml
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

if not __package__:  # run as a script: the repository root, so that `tests` imports
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.kit.trafficmodel import (
    POLL_S,
    SLOW,
    TYPICAL,
    Rate,
    ReadShape,
    Unit,
    daily,
    input_series,
    simulate,
)

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
# The recording groups in file order (each reads only groups before it, or older values), then
# the alerting groups.
GROUP_ORDER = [
    group["name"]
    for name in ("recording.yml", "alerts.yml")
    for group in yaml.safe_load((PROM / name).read_text())["groups"]
]
H = 24  # hours in a day
READ_DROP = "CamsTemplateReadRateDrop"
DELIVERY_DROP = "CamsTemplateDeliveryRateDrop"
SILENT = "CamsTemplateSilent"
STALE = "CamsDataStale"


@dataclass(frozen=True)
class Fires:
    """`alert` fires for `unit` at `at_h`: firing there, not one step before, never before
    `since_h`; `at_h - since_h` must stay within `within_h` (the issue's bound)."""

    alert: str
    unit: Unit
    at_h: float
    since_h: float
    within_h: float
    extra_labels: tuple[tuple[str, str], ...]
    still_at_h: tuple[float, ...] = ()
    resolved_at_h: tuple[float, ...] = ()
    # the situation in the table, if this is one of its rows
    table_row: str = ""

    def labels(self) -> dict[str, str]:
        u = self.unit
        return {
            "__name__": "ALERTS",
            "alertname": self.alert,
            "alertstate": "firing",
            "account": u.account,
            "space": u.space,
            "template_code": u.template_code,
            "language": u.language,
            "severity": "warning",
            **dict(self.extra_labels),
        }


@dataclass(frozen=True)
class Case:
    """One promtool test case."""

    name: str
    units: tuple[Unit, ...]
    days: int
    # promtool's evaluation_interval, and the input series' interval (0: the same; the
    # exporter's counters move every 5 minutes, so the finer evaluations read 5-minute samples)
    step_s: int
    fires: tuple[Fires, ...] = ()
    # template alerts (a regex on alertname) that no other template may fire
    quiet: str = "CamsTemplate.*"
    # only cams_template_info and the sent counter (cases about sends alone)
    sent_only: bool = False
    # templates of the case that are rows of the table and must never fire
    quiet_rows: tuple[tuple[str, str], ...] = ()
    sample_s: int = 0
    # the last evaluation, in hours (0: the end of the last day)
    hours: float = 0

    @property
    def input_s(self) -> int:
        return self.sample_s or self.step_s

    @property
    def end_h(self) -> float:
        return self.hours or self.days * H


# First fire times in hours from t=0, as `--probe` measures them with the shipped rules.
FIRE_AT: dict[str, float] = {
    "t_new_drop": 181.0,
    "t_new_drop_ends": 181.0,
    "t_new_drop_slow": 181.0,
    "t_broken": 278.0,
    "t_broken_alone": 278.0,
    "t_established": 277.0,
    "t_small_200": 287.0,
    "t_small_100": 289.0,
    "t_bursts_drop": 287.0,
    "t_undelivered": 278.0,
    "s_utility": 399.0,
    "s_otp": 409.0,
    "s_marketing_daily": 542.0,
    "s_named": 397.0,
    "s_utility_pause": 327.0,
    "x_outage": 255.0,
    "x_outage_utility": 255.0,
    "x_stopped_utility": 277.0,
}


def _fires(
    alert: str,
    unit: Unit,
    since_h: float,
    within_h: float,
    *extra: tuple[str, str],
    **kw: Any,
) -> Fires:
    return Fires(
        alert,
        unit,
        FIRE_AT.get(unit.template_code, since_h),
        since_h,
        within_h,
        tuple(extra),
        **kw,
    )


# --------------------------------------------------------------------------------------------
# Read and delivery rate drops (every 30 minutes, two weeks)


def _peers(account: str, last_day: int) -> tuple[Unit, ...]:
    """Three established MARKETING templates reading 50%, 55% and 60%, weekday-heavy."""
    return tuple(
        Unit(
            f"peer_{account}_{i}",
            account=account,
            windows=daily(0, last_day, 7, 14, 5000, weekend_factor=0.5),
            read_rates=(Rate(0, 0.50 + 0.05 * i),),
            seed=10 + i,
        )
        for i in range(3)
    )


def _campaign(code: str, first_day: int, last_day: int, shape: ReadShape, *rates: Rate) -> Unit:
    """A campaign sending 20,000 a day in a 2-hour burst from 10:00."""
    return Unit(
        code,
        account=f"a_{code}",
        shape=shape,
        windows=daily(first_day, last_day, 10, 2, 20000),
        read_rates=rates,
    )


def drops_case() -> Case:
    days = 14
    # a new campaign from Monday (day 4), 60% for three days, 25% from its 4th day (day 7)
    start, bad = 4, 7
    rates = (Rate(0, 0.6), Rate(bad * H, 0.25))
    new = _campaign("t_new_drop", start, days, TYPICAL, *rates)
    ends = _campaign("t_new_drop_ends", start, bad + 4, TYPICAL, *rates)
    slow = _campaign("t_new_drop_slow", start, days, SLOW, *rates)
    # broken from its first send (Monday, day 11), among templates reading 50-60%, or alone
    first = 11
    broken = Unit(
        "t_broken",
        account="a_peers",
        windows=daily(first, days, 10, 2, 20000),
        read_rates=(Rate(0, 0.25),),
    )
    alone = _campaign("t_broken_alone", first, days, TYPICAL, Rate(0, 0.25))
    # established (every day 07:00-21:00 for 11 days, weekend dips), small templates; the
    # drop comes with Monday's (day 11) first send
    drop = 11
    established = Unit(
        "t_established",
        account="a_established",
        windows=daily(0, days, 7, 14, 5000, weekend_factor=0.5),
        read_rates=(Rate(0, 0.7), Rate(drop * H, 0.35)),
    )
    small = [
        Unit(
            f"t_small_{n}",
            account=f"a_small_{n}",
            windows=daily(0, days, 7, 14, sends),
            read_rates=(Rate(0, 0.6), Rate(drop * H, 0.2)),
        )
        for n, sends in ((200, 210), (100, 105))
    ]
    # bursts on Mondays and Thursdays at moving send times; 25% from day 10 on
    bursts = Unit(
        "t_bursts_drop",
        account="a_bursts",
        windows=daily(0, days, [9, 19, 13, 20, 8, 17], 1.5, 20000, weekdays=("Mon", "Thu")),
        read_rates=(Rate(0, 0.6), Rate(10 * H, 0.25)),
    )
    first_bad_burst = min(w.start_h for w in bursts.windows if w.start_h >= 10 * H)
    # delivery rate 95% -> 50% with Monday's (day 11) first send
    undelivered = Unit(
        "t_undelivered",
        account="a_undelivered",
        windows=daily(0, days, 7, 14, 5000, weekend_factor=0.5),
        delivery_rates=(Rate(0, 0.95), Rate(drop * H, 0.5)),
    )
    row_new = "new campaign, read rate 60% -> 25% on its 4th day"
    return Case(
        "read and delivery rates drop",
        (
            new,
            ends,
            slow,
            *_peers("a_peers", days),
            broken,
            alone,
            established,
            *small,
            bursts,
            undelivered,
        ),
        days=days,
        step_s=3600,
        fires=(
            _fires(READ_DROP, new, bad * H + 10, 12, ("baseline", "own"), table_row=row_new),
            _fires(
                READ_DROP,
                ends,
                bad * H + 10,
                12,
                ("baseline", "own"),
                table_row="the same, campaign ends 4 days after the drop",
            ),
            _fires(READ_DROP, slow, bad * H + 10, 12, ("baseline", "own")),
            _fires(
                READ_DROP,
                broken,
                first * H + 10,
                12,
                ("baseline", "peers"),
                still_at_h=((first + 2) * H + 12,),
                table_row=(
                    "new campaign broken from its first send (25% while the account's other "
                    "marketing templates read 50-60%)"
                ),
            ),
            _fires(READ_DROP, alone, first * H + 10, 12, ("baseline", "floor")),
            _fires(
                READ_DROP,
                established,
                drop * H + 7,
                12,
                ("baseline", "own"),
                table_row="established template, 70% -> 35%",
            ),
            _fires(
                READ_DROP,
                small[0],
                drop * H + 7,
                24,
                ("baseline", "own"),
                table_row="small template, 200 deliveries a day, 60% -> 20%",
            ),
            _fires(READ_DROP, small[1], drop * H + 7, 24, ("baseline", "own")),
            _fires(READ_DROP, bursts, first_bad_burst, 12, ("baseline", "own")),
            _fires(DELIVERY_DROP, undelivered, drop * H + 7, 12),
        ),
    )


# --------------------------------------------------------------------------------------------
# Four weeks of healthy traffic (every 30 minutes)


def healthy_case() -> Case:
    units: list[Unit] = []
    for shape, tag in ((TYPICAL, "typical"), (SLOW, "slow")):
        units += [
            Unit(
                f"h_bursts_{tag}",
                account=f"h_bursts_{tag}",
                shape=shape,
                windows=daily(0, 27, [9, 19, 13, 20, 8, 17], 1.5, 20000, weekdays=("Mon", "Thu")),
            ),
            Unit(
                f"h_daily_moving_{tag}",
                account=f"h_daily_{tag}",
                shape=shape,
                windows=daily(0, 27, [7, 11, 18, 9], 3, 8000, weekend_factor=0.4),
            ),
            Unit(
                f"h_small_{tag}",
                account=f"h_small_{tag}",
                shape=shape,
                windows=daily(0, 27, 7, 14, 105),
            ),
            Unit(
                f"h_weekly_{tag}",
                account=f"h_weekly_{tag}",
                shape=shape,
                windows=daily(0, 27, [10, 16], 4, 30000, weekdays=("Wed",)),
            ),
        ]
    # The slow audience where it is hardest to judge: a steady sender with weekend dips (the
    # peers below are its typical counterpart), and new campaigns from day 10, one among peers
    # reading 50-60% (it reads 45%), one alone (judged against the floor at first; it reads 55%).
    units += [
        Unit(
            "h_continuous_slow",
            account="h_continuous_slow",
            shape=SLOW,
            windows=daily(0, 27, 7, 14, 5000, weekend_factor=0.4),
        ),
        Unit(
            "h_new_with_peers_slow",
            account="h_peers",
            shape=SLOW,
            windows=daily(10, 27, [18, 9], 2, 20000),
            read_rates=(Rate(0, 0.45),),
        ),
        Unit(
            "h_new_alone_slow",
            account="h_alone_slow",
            shape=SLOW,
            windows=daily(10, 27, [18, 9], 2, 20000),
            read_rates=(Rate(0, 0.55),),
        ),
    ]
    return Case(
        "four weeks of healthy traffic: bursts at moving send times, weekend dips, weekly "
        "campaigns, small volumes, new campaigns; typical and twice-as-slow audiences",
        (*units, *_peers("h_peers", 27)),
        days=28,
        step_s=3600,
        quiet_rows=(
            (
                "h_bursts_typical",
                "healthy Mon/Thu bursts whose send time moves between morning and evening",
            ),
        ),
    )


# --------------------------------------------------------------------------------------------
# Silence (hourly; the sent counter alone)


def silence_case() -> Case:
    days = 26

    def last_send(unit: Unit) -> float:
        return max(w.start_h + w.hours for w in unit.windows)

    # not always on: a two-week daily campaign that ends, weekly and Mon/Thu campaigns, a
    # weekday-only UTILITY sender, a UTILITY template three days old, one opted out
    campaign = Unit(
        "s_campaign_end", account="s_quiet", windows=daily(0, 13, 9, 3, 10000, weekend_factor=0.5)
    )
    quiet = (
        campaign,
        Unit(
            "s_weekly", account="s_quiet", windows=daily(0, days, 10, 4, 30000, weekdays=("Wed",))
        ),
        Unit(
            "s_bursts",
            account="s_quiet",
            windows=daily(0, days, [9, 19], 2, 20000, weekdays=("Mon", "Thu")),
        ),
        Unit(
            "s_utility_weekdays",
            account="s_quiet",
            category="UTILITY",
            windows=daily(0, days, 6, 16, 3000, weekdays=("Mon", "Tue", "Wed", "Thu", "Fri")),
        ),
        Unit(
            "s_utility_young",
            account="s_quiet",
            category="UTILITY",
            windows=daily(20, 22, 0, 24, 3000),
        ),
        Unit(
            "s_utility_opted_out",
            account="s_quiet",
            category="UTILITY",
            windows=daily(0, 14, 0, 24, 3000),
            info_labels=(("cams_always_on", "false"),),
        ),
    )
    # always on, then a real stop
    utility = Unit(
        "s_utility", account="s_stop", category="UTILITY", windows=daily(0, 15, 0, 14, 4000)
    )
    otp = Unit(
        "s_otp", account="s_stop", category="AUTHENTICATION", windows=daily(5, 15, 0, 24, 2000)
    )
    marketing = Unit(
        "s_marketing_daily", account="s_stop", windows=daily(0, 21, 9, 4, 10000, weekend_factor=0.3)
    )
    named = Unit(
        "s_named",
        account="s_stop",
        windows=daily(12, 15, 10, 2, 5000),
        info_labels=(("cams_always_on", "true"),),
    )
    # always on, pauses for two days, resumes
    pause = Unit(
        "s_utility_pause",
        account="s_pause",
        category="UTILITY",
        windows=(*daily(0, 12, 0, 14, 4000), *daily(15, days, 0, 14, 4000)),
    )
    fires = [
        _fires(SILENT, u, last_send(u), 25.5, ("always_on", why), still_at_h=still)
        for u, why, still in (
            (utility, "category", (last_send(utility) + 7 * H, last_send(utility) + 10 * H)),
            (otp, "category", (last_send(otp) + 9 * H,)),
            (marketing, "daily", (last_send(marketing) + 4 * H,)),
            (named, "named", (last_send(named) + 10 * H,)),
        )
    ]
    pause_stop = 12 * H + 14
    fires.append(
        _fires(
            SILENT,
            pause,
            pause_stop,
            25.5,
            ("always_on", "category"),
            resolved_at_h=(15 * H + 2,),
        )
    )
    return Case(
        "silence: always-on senders that stop, and senders that are not always on",
        (*quiet, utility, otp, marketing, named, pause),
        days=days,
        step_s=3600,
        fires=tuple(fires),
        sent_only=True,
        quiet_rows=(("s_campaign_end", "normal end of a daily campaign"),),
    )


# --------------------------------------------------------------------------------------------
# Stale data (hourly): the exporter's reads of a unit fail, so its counters stand still


def stale_case() -> Case:
    days = 14
    outage = 10 * H + 12  # Sunday (day 10) 12:00, to the end: three and a half days

    def established(code: str, reads_fail: bool) -> Unit:
        return Unit(
            code,
            account="x_stale",
            windows=daily(0, days, 7, 14, 5000, weekend_factor=0.5),
            read_rates=(Rate(0, 0.7),),
            frozen_from_h=outage,
            reads_fail=reads_fail,
        )

    def utility(code: str, reads_fail: bool) -> Unit:
        return Unit(
            code,
            account="x_stale",
            category="UTILITY",
            windows=daily(0, days, 0, 24, 3000),
            frozen_from_h=outage,
            reads_fail=reads_fail,
        )

    # an outage: the counters stand still, and so does the time of the last successful read
    marketing_out, utility_out = established("x_outage", True), utility("x_outage_utility", True)
    # the same counters, read successfully: the sender really stopped
    utility_stop = utility("x_stopped_utility", False)
    return Case(
        "stale data: the exporter's reads fail and the counters stand still; a sender that "
        "really stops, read successfully",
        (marketing_out, utility_out, utility_stop),
        days=days,
        step_s=3600,
        fires=(
            _fires(STALE, marketing_out, outage, 3, ("template_type", "WHATSAPP")),
            _fires(STALE, utility_out, outage, 3, ("template_type", "WHATSAPP")),
            _fires(SILENT, utility_stop, outage, 25.5, ("always_on", "category")),
        ),
    )


# --------------------------------------------------------------------------------------------
# The same rules at 1h, 5m and 1m evaluation intervals (62 hours: at 1m, promtool evaluates
# every rule 3,720 times, which is most of the suite's promtool time, so the four-week scenarios
# above run at 1h only; every alert of the case fires by 61 h, the last one a new campaign's
# drop on its third day, which the others come before)

# First fire times in hours from t=0 of the short case, per evaluation interval (seconds), as
# `--probe` measures them; tests/test_campaign_scenarios.py checks that they agree.
SHORT_FIRE_AT: dict[int, dict[str, float]] = {
    3600: {
        f"q_broken/{READ_DROP}": 38,
        f"q_broken_alone/{READ_DROP}": 38,
        f"q_new_drop/{READ_DROP}": 61,
        f"q_undelivered/{DELIVERY_DROP}": 41,
        f"q_outage/{STALE}": 39,
    },
    300: {
        f"q_broken/{READ_DROP}": 37 + 5 / 60,
        f"q_broken_alone/{READ_DROP}": 37 + 20 / 60,
        f"q_new_drop/{READ_DROP}": 60.5,
        f"q_undelivered/{DELIVERY_DROP}": 40 + 55 / 60,
        f"q_outage/{STALE}": 37.25,
    },
    60: {
        f"q_broken/{READ_DROP}": 37 + 5 / 60,
        f"q_broken_alone/{READ_DROP}": 37 + 24 / 60,
        f"q_new_drop/{READ_DROP}": 60.5,
        f"q_undelivered/{DELIVERY_DROP}": 40 + 55 / 60,
        f"q_outage/{STALE}": 37 + 11 / 60,
    },
}


def short_case(step_s: int) -> Case:
    """62 hours from Thursday: a new campaign whose reads drop on its third day (judged against
    its own first days), one broken from its first send among peers and one alone, a delivery
    drop and an outage on Friday, and healthy new campaigns whose first send is Friday 20:00 to
    an audience that sleeps from 23:00 (issue 27's summer_promo), alone (typical and
    twice-as-slow audiences) and among peers, quiet through the night and the next morning."""
    days = 3
    fire_at = SHORT_FIRE_AT[step_s]
    drop = 2 * H  # Saturday
    friday = H
    new = Unit(
        "q_new_drop",
        account="q_new_drop",
        windows=daily(0, days, 10, 2, 20000),
        read_rates=(Rate(0, 0.6), Rate(drop, 0.25)),
    )
    broken = Unit(
        "q_broken",
        account="q_peers",
        windows=daily(1, days, 10, 2, 20000),
        read_rates=(Rate(0, 0.25),),
    )
    alone = Unit(
        "q_broken_alone",
        account="q_broken_alone",
        windows=daily(1, days, 10, 2, 20000),
        read_rates=(Rate(0, 0.25),),
    )
    undelivered = Unit(
        "q_undelivered",
        account="q_undelivered",
        windows=daily(0, days, 7, 14, 5000),
        delivery_rates=(Rate(0, 0.95), Rate(friday + 7, 0.5)),
    )
    outage_h = friday + 12
    outage = Unit(
        "q_outage",
        account="q_outage",
        windows=daily(0, days, 7, 14, 5000),
        read_rates=(Rate(0, 0.7),),
        frozen_from_h=outage_h,
    )
    promos = tuple(
        Unit(
            f"q_promo_{tag}",
            account=f"q_promo_{tag}",
            shape=shape,
            windows=daily(1, days, 20, 2, 20000),
            read_rates=(Rate(0, rate),),
            night_reads=0.1,
        )
        for shape, tag, rate in ((TYPICAL, "typical", 0.45), (SLOW, "slow", 0.55))
    )
    promo_peers = Unit(
        "q_promo_peers",
        account="q_peers",
        windows=daily(1, days, 20, 2, 20000),
        read_rates=(Rate(0, 0.45),),
        night_reads=0.1,
    )

    def fires(alert: str, unit: Unit, since_h: float, *extra: tuple[str, str]) -> Fires:
        at = fire_at.get(f"{unit.template_code}/{alert}", since_h)
        return Fires(alert, unit, at, since_h, 3 if alert == STALE else 12, tuple(extra))

    return Case(
        f"issue 27: the rules at a {dur(step_s / 3600)} evaluation interval",
        (new, broken, alone, undelivered, outage, *promos, promo_peers, *_peers("q_peers", days)),
        days=days,
        hours=62,
        step_s=step_s,
        sample_s=max(step_s, POLL_S),
        fires=(
            fires(READ_DROP, new, drop + 10, ("baseline", "own")),
            fires(READ_DROP, broken, H + 10, ("baseline", "peers")),
            fires(READ_DROP, alone, H + 10, ("baseline", "floor")),
            fires(DELIVERY_DROP, undelivered, friday + 7),
            fires(STALE, outage, outage_h, ("template_type", "WHATSAPP")),
        ),
        quiet_rows=(("q_promo_typical", "a healthy new campaign's first day, Friday 20:00"),),
    )


SHORT_CASES = {
    "campaign_short_1h_test.yml": 3600,
    "campaign_short_5m_test.yml": 300,
    "campaign_short_1m_test.yml": 60,
}

CASES: dict[str, Callable[[], Case]] = {
    "campaign_drops_test.yml": drops_case,
    "campaign_healthy_test.yml": healthy_case,
    "campaign_silence_test.yml": silence_case,
    "campaign_stale_test.yml": stale_case,
    **{name: (lambda s=step: short_case(s)) for name, step in SHORT_CASES.items()},
}


# --------------------------------------------------------------------------------------------
# promtool test files


def dur(hours: float) -> str:
    """A promtool duration for `hours` (whole minutes)."""
    minutes = round(hours * 60)
    days, rest = divmod(minutes, 24 * 60)
    out = f"{days}d" if days else ""
    if rest // 60:
        out += f"{rest // 60}h"
    if rest % 60:
        out += f"{rest % 60}m"
    return out or "0s"


def _labels_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _selector(alert: str, code: str) -> str:
    return f'ALERTS{{alertname="{alert}",alertstate="firing",template_code="{code}"}}'


def promql_checks(case: Case) -> list[dict[str, Any]]:
    step_h = case.step_s / 3600
    out: list[dict[str, Any]] = []
    for fire in case.fires:
        sel = _selector(fire.alert, fire.unit.template_code)
        firing = [{"labels": _labels_text(fire.labels()), "value": 1}]
        out.append(
            {
                "expr": f"count_over_time({sel}[{dur(fire.since_h)}])",
                "eval_time": dur(fire.since_h),
                "exp_samples": [],
            }
        )
        out.append({"expr": sel, "eval_time": dur(fire.at_h - step_h), "exp_samples": []})
        out.append({"expr": sel, "eval_time": dur(fire.at_h), "exp_samples": firing})
        for at in fire.still_at_h:
            out.append({"expr": sel, "eval_time": dur(at), "exp_samples": firing})
        for at in fire.resolved_at_h:
            out.append({"expr": sel, "eval_time": dur(at), "exp_samples": []})
    # no other template fires a template alert, ever
    end = dur(case.end_h)
    codes = "|".join(
        sorted({f.unit.template_code for f in case.fires if re.fullmatch(case.quiet, f.alert)})
    )
    others = f',template_code!~"{codes}"' if codes else ""
    out.append(
        {
            "expr": (
                f'count_over_time(ALERTS{{alertname=~"{case.quiet}",alertstate="firing"{others}}}'
                f"[{end}])"
            ),
            "eval_time": end,
            "exp_samples": [],
        }
    )
    return out


def test_case(case: Case) -> dict[str, Any]:
    series: list[dict[str, str]] = []
    for unit in case.units:
        series += input_series(unit, simulate(unit, case.days, case.input_s), case.sent_only)
    return {
        "name": case.name,
        "interval": dur(case.input_s / 3600),
        "input_series": series,
        "promql_expr_test": promql_checks(case),
    }


def document(
    case: Case, rule_files: Sequence[str] = ("../recording.yml", "../alerts.yml")
) -> dict[str, Any]:
    return {
        "rule_files": list(rule_files),
        "evaluation_interval": dur(case.step_s / 3600),
        "group_eval_order": GROUP_ORDER,
        "tests": [test_case(case)],
    }


HEADER = """\
# Generated by tests/kit/campaign_scenarios.py from tests/kit/trafficmodel.py: edit those,
# then run `python3 -m tests.kit.campaign_scenarios`.
# Run with: promtool test rules prometheus/tests/*.yml
"""


def render(name: str) -> str:
    return HEADER + yaml.safe_dump(document(CASES[name]()), sort_keys=False, width=100)


# --------------------------------------------------------------------------------------------
# --probe: the fire times promtool measures


def probe(rules: Sequence[Path], names: Sequence[str]) -> list[dict[str, Any]]:
    """Per template and template alert: first and last firing eval (hours), hours firing."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise SystemExit("promtool is not installed (Debian package `prometheus`)")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, rule in enumerate(rules):
            files.append(f"rules{i}.yml")
            shutil.copy(rule, Path(tmp) / files[-1])
        groups = [g["name"] for r in rules for g in yaml.safe_load(r.read_text())["groups"]]
        for name in names:
            case = CASES[name]()
            doc = document(case, files)
            ordered = [g for g in GROUP_ORDER if g in groups]
            if len(ordered) != len(groups):  # other rules: recording groups first, file order
                alerting = ("cams-templates", "cams-exporter")
                ordered = sorted(groups, key=lambda g: g.startswith(alerting))
            doc["group_eval_order"] = ordered
            step = dur(case.step_s / 3600)
            sel = 'ALERTS{alertname=~"CamsTemplate.*",alertstate="firing"}'
            # in spans of 1,440 steps at most (promtool refuses a subquery of 5,760 at 1m)
            span_s, end_s = case.step_s * 1440, int(case.end_h * 3600)
            doc["tests"][0]["promql_expr_test"] = [
                {
                    "expr": f"{fn}_over_time(timestamp({sel})[{span_s - 1}s:{step}])",
                    "eval_time": dur(min(at_s, end_s) / 3600),
                    "exp_samples": [{"labels": '{probe="x"}', "value": -1}],
                }
                for at_s in range(span_s, end_s + span_s, span_s)
                for fn in ("min", "max", "count")
            ]
            path = Path(tmp) / "probe_test.yml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            proc = subprocess.run(
                [promtool, "test", "rules", str(path)],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            rows += _parse_probe(case, proc.stdout + proc.stderr)
    return rows


def _parse_probe(case: Case, text: str) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for fn, body in re.findall(r'expr: "(\w+)_over_time.*?got: (.*?)\n', text, re.S):
        for labels, value in re.findall(r"(\{[^}]*\}) ([-+0-9.eE]+)", body):
            alert = re.search(r'alertname="(\w+)"', labels)
            code = re.search(r'template_code="(\w+)"', labels)
            if alert and code:
                key = (alert.group(1), code.group(1))
                row = rows.setdefault(key, {"case": case.name, "alert": key[0], "template": key[1]})
                combine = {"min": min, "max": max, "count": lambda a, b: a + b}[fn]
                row[fn] = combine(row[fn], float(value)) if fn in row else float(value)
    for row in rows.values():
        row["first_h"] = row["min"] / 3600
        row["last_h"] = row["max"] / 3600
        row["firing_h"] = row["count"] * case.step_s / 3600
    return sorted(rows.values(), key=lambda r: (r["template"], r["alert"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    parser.add_argument("--probe", action="store_true", help="print promtool's fire times")
    parser.add_argument("--rules", nargs="+", type=Path, help="rule files for --probe")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="these files only")
    args = parser.parse_args(argv)
    names = args.only or sorted(CASES)
    if args.probe:
        rules = args.rules or [PROM / "recording.yml", PROM / "alerts.yml"]
        for row in probe(rules, names):
            print(
                f"{row['template']:24s} {row['alert']:30s} first {row['first_h']:7.2f} h  "
                f"last {row['last_h']:7.2f} h  firing {row['firing_h']:6.1f} h"
            )
        return 0
    stale = []
    for name in names:
        path = PROM / "tests" / name
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date: " + ", ".join(stale) + " (run python3 -m tests.kit.campaign_scenarios)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
