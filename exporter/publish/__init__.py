"""Publishing: what polling learned, frozen and rendered once, ready for any number of scrapes.

- `scheduler`: a thread per account running its cycles, state saves, and each publish;
- `snapshot`: the frozen `Snapshot` every scrape and page reads;
- `exposition`, `render`: the snapshot as /metrics bytes (text and OpenMetrics, plain and
  gzip), rendered by client_python once per publish and kept;
- `collector`, `sender_collector`, `process_metrics`: the template, status, sender-health and
  process families; `memory`: the GC settings that keep a publish from pausing scrapes;
- `pages`, `sender_page`, `markup`: the status page as HTML.
The HTTP server (`exporter.web`) is handed these as plain handlers and knows nothing of them.
"""
