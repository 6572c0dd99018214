"""`cams-exporter backfill`: the history the API still holds, as an OpenMetrics file of the
exporter's own counters, for `promtool tsdb create-blocks-from openmetrics`.

- `history`: one unit's checked rows -> its counters at each bucket end since the origin, and
  what of them the API can no longer vouch for (no HTTP);
- `reader`: one unit's rows over origin..until, read and checked as the poller reads them;
- `origins`: where each counter starts (and ends), from the config and the state file, which
  is read and never written;
- `openmetrics`: the file, one family after the other, written through temporary files so
  that memory stays bounded whatever the number of units;
- `accounts`: one account's units and numbers, read a few at a time, in order, into the file;
- `command`: the command: config, state and flags checked, accounts in turn, exit code.
"""
