"""Exact counters, no HTTP: from checked API rows to cumulative, never-decreasing counts.

Reads go through a `Fetch` callable handed in from above, so nothing here opens a connection.
- `checks`: an answer's rows checked against the query and the buckets already stored;
- `strategies`: `Counting`, the per-bucket and aggregate ways to read a group of units;
- `state`: `UnitState` (buckets, settled total, held revisions, settlement checks);
- `store`: `CounterStore`, every unit's state, and the state file;
- `readwindow`: the read window's resets, settled changes and incomplete reads, logged once;
- `anomalies`: answers not applied: counted, logged once, kept for the status page.
"""
