"""Sender health: phone numbers, their quality and messaging limits, and can-send status.

From `QueryChatappPhoneNumbers` (the numbers of each space), `GetChatappPhoneNumberMetric`
(per-number daily counts) and `GetWhatsappHealthStatus` (whether the WABA, each number and each
template-language can send). One job per module:
- `numbers`: the phone numbers of an account, re-listed every interval;
- `health`: rounds of GetWhatsappHealthStatus calls, spread over their interval;
- `poller`: one account's sender-health threads and the part of the snapshot they build;
- `view`: the frozen part of the `Snapshot` that scrapes and pages read;
- `plan`: how many calls per hour each action costs with a given config.

The answers' types and parsing are the API layer's (`exporter.cams.sender_model`,
`exporter.cams.sender_answers`); the families and the page section are publishing's
(`exporter.publish.sender_collector`, `exporter.publish.sender_page`).
"""
