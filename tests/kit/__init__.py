"""The shared test kit of `tests/` and `bench/` (bench imports `tests.kit...`).

- `waits`: `wait_until(predicate, timeout, what)` and `wait_http`: no sleep stands for a condition;
- `procs`: child processes on 127.0.0.1:0 with the bound port read back from their log, log
  capture, wait-for-a-line, bounded stop (the exporter, the simulator, Prometheus);
- `sim`: simulators in process and as a child;
- `oracle`: the truth as Alibaba's official SDK reads it;
- `configs`: exporter configs (`Account`, `config_text`, `write_config`, `parsed`);
- `series`: a scrape as samples, counters against the oracle (`exact_problems`, `assert_exact`);
- `inproc`: `PolledExporter`, the exporter and its web server in the test's process, polled by hand;
- `logs`: the in-process exporter's log lines, captured;
- `collectors`: reference collectors built with client_python's classes;
- `rules`: the shipped recording rules' groups and intervals, and reads that would miss values;
- `web`: web server test helpers (handlers, raw HTTP, a test PKI);
- `trafficmodel`: one unit's counters as the exporter moves them (late reads, polls, outages);
- `campaign_scenarios`: the promtool tests of prometheus/tests/campaign_*_test.yml, written from
  the traffic model (`python3 -m tests.kit.campaign_scenarios`).
"""
