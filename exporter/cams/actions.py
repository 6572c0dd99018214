"""The CAMS API version and the names of the actions the exporter calls (and the simulator
plays), in one place for the client, the answer parsers, the planners and the simulator."""

from __future__ import annotations

from typing import Final

API_VERSION: Final = "2020-06-06"
LIST_ACTION: Final = "ListChatappTemplate"
METRIC_ACTION: Final = "GetChatappTemplateMetric"
PHONE_NUMBERS_ACTION: Final = "QueryChatappPhoneNumbers"
PHONE_METRIC_ACTION: Final = "GetChatappPhoneNumberMetric"
HEALTH_ACTION: Final = "GetWhatsappHealthStatus"
