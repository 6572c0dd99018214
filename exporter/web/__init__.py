"""The HTTP surface, one module per job (import from the modules themselves).

It knows nothing of CAMS: it serves the `routes.Handlers` it is given (the bytes of /metrics, a
ready check, the HTML of `/`, a reload), and imports nothing of the exporter outside `web/`, so
it could be published on its own as a small exporter-toolkit for Python.

- `server`: `WebServer`, the server as the rest of the exporter sees it;
- `connections`: the event loop: accepting, connection cap, deadlines, TLS handshakes;
- `protocol`: HTTP/1.x request heads and response heads on the wire;
- `listen`: `--web.listen-address` and the listening socket;
- `routes`: requests to responses (`App`, `Handlers`, `Payload`);
- `negotiation`: /metrics format (text 0.0.4 or OpenMetrics 1.0.0) and gzip;
- `config`: the exporter-toolkit web config file format (`WebConfig`, `load_web_config`);
- `live`: the web settings in force, reloaded when the web config file changes;
- `tls`: `tls_server_config` as an `ssl.SSLContext` (the standard `ssl` module only);
- `auth`: basic auth with cached verdicts; `requestlimit`: the config's `rate_limit`.
"""
