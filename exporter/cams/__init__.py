"""The CAMS API layer: everything that talks to Alibaba Cloud ChatApp Message Service.

Below it only `exporter.config`; above it counting, polling and publishing. One job per module:
- `actions`: the action names and their documented per-account limits;
- `model`: the API's values as frozen types (`MetricRow`, `Template`, `UnitKey`, ...);
- `sender_model`: the sender-health answers as frozen types, and their known enum values;
- `signing`: V3 (ACS3-HMAC-SHA256) and V1 (HMAC-SHA1) request signatures;
- `transport`: HTTP through requests and urllib3's public APIs, proxies and CA bundle included;
- `ratelimit`: one pacing limiter per account and action, AIMD when throttled;
- `retry`: the retry policy wrapped around each call; `errors`: `CamsError` and its classes;
- `client`: `CamsClient`, the signed actions; `paging`: ListChatappTemplate's passes;
- `answers`: answers parsed into values (a malformed answer raises `AnomalousAnswer`);
- `sender_answers`: the three sender-health answers parsed;
- `instruments`: the live self-metrics every call and poll reports into;
- `context`: `AccountContext`, one account's settings, client and clock as its pollers share them.
"""
