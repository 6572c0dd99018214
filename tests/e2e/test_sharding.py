"""--shard INDEX/COUNT on a running exporter: replicas split an account's units between them,
each polling its own at its share of the account's qps (an in-process simulator)."""

from __future__ import annotations

from cams_simulator import SimulatorOptions
from exporter.app import Exporter
from exporter.cams.model import UnitKey
from exporter.templates.sharding import Shard
from tests.kit.configs import Account, parsed
from tests.kit.sim import running


def test_replicas_split_an_account_and_its_qps() -> None:
    options = SimulatorOptions(templates=12, static=True, list_qps_limit=50, qps_limit=1000)
    with running(options) as sim:
        poll = {"interval": "10s", "lookback": "3d", "max_range": "5d", "timeout": "5s"}
        config = parsed(Account(sim.url), poll=poll)
        seen: list[set[UnitKey]] = []
        for index in range(3):
            exporter = Exporter(config, shard=Shard(index, 3))
            try:
                poller = exporter.scheduler
                account = poller.accounts[0]
                assert account.run_cycle(poller.stop_event, 4)
                assert (
                    account.context.client._limiters["GetChatappTemplateMetric"].rate
                    == config.accounts[0].qps / 3
                )
                seen.append({u.key for u in account.discovery.units()})
                poller.publish()
                keys = {s.key for s in poller.snapshot.series}
                assert keys == {u.key for u in account.discovery.units()}
            finally:
                exporter.stop()
        assert sum(len(s) for s in seen) == 24
        assert set.union(*seen) == {
            UnitKey("main", "cams-demo", t.code, t.language, t.template_type)
            for t in sim.templates()
        }
