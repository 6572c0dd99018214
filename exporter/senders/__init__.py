"""Sender health: phone numbers, their quality and messaging limits, and can-send status.

From `QueryChatappPhoneNumbers` (the numbers of each space), `GetChatappPhoneNumberMetric`
(per-number daily counts) and `GetWhatsappHealthStatus` (whether the WABA, each number and each
template-language can send). One job per module:
- `model`: what the API returns, as frozen values, and the known values of its enums;
- `answers`: the three answers parsed into those values;
- `numbers`: the phone numbers of an account, re-listed every interval;
- `health`: rounds of GetWhatsappHealthStatus calls, spread over their interval;
- `poller`: one account's sender-health threads and the part of the snapshot they build;
- `view`: the frozen part of the `Snapshot` that scrapes and pages read;
- `collector`: that part as metric families;
- `page`: that part as a section of the status page;
- `plan`: how many calls per hour each action costs with a given config.

Nothing is imported here, so that the client can use `model` and `answers` without a cycle.
"""
