"""`cams-exporter backfill`: the history the API still holds, as an OpenMetrics file of the
exporter's own counters, for `promtool tsdb create-blocks-from openmetrics`.

- `history`: one unit's checked rows -> its counters at each bucket end since the origin, and
  what of them the API can no longer vouch for (no HTTP);
- `reader`: one unit's rows over origin..until, read and checked as the poller reads them;
- `openmetrics`: the file, one family after the other, written through temporary files so
  that memory stays bounded whatever the number of units;
- `command`: the command: config, origins, discovery, reads in parallel, progress, exit code.
"""
