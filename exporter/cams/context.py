"""What every poller of one account shares: the account, the poll settings, its client, a clock.

`AccountPoller` builds its `Discovery` and `Grouping` (and the scheduler the account's
`NumberCounters`) from one `AccountContext`, so the four are handed down as one value instead of
being threaded through each constructor one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.cams.client import CamsClient
from exporter.config import Account, PollConfig


@dataclass(frozen=True, slots=True)
class AccountContext:
    """One account as its pollers see it: the account, the poll settings, the account's client
    (with its rate limiters) and the wall clock they all read."""

    account: Account
    poll: PollConfig
    client: CamsClient
    clock: Callable[[], float] = time.time
