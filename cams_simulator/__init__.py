"""A CAMS API simulator: a real HTTP server that answers like Alibaba Cloud ChatApp Message Service.

It serves `ListChatappTemplate` and `GetChatappTemplateMetric`, and for sender health
`QueryChatappPhoneNumbers`, `GetChatappPhoneNumberMetric` and `GetWhatsappHealthStatus`, as
RPC-style `POST /` calls with the parameters in the query string, and checks requests the way
the real gateway does: V3 (`ACS3-HMAC-SHA256`) and V1 (HMAC-SHA1) signatures, the 15-minute
timestamp window, nonce reuse, and a per-second flow control per access key and action. Error
answers carry Alibaba's JSON error body; faults can be injected with seeded probabilities. Run
alone with `cams-exporter simulate`; the demo and the tests embed it.

The package, one job per module:
- `options`: the options and fault spec (frozen values; action names from `exporter.cams.actions`);
- `data`: templates and their counts per bucket, computed on demand from hashes;
- `api`: the actions' parameters and answers over that data;
- `senders`: the sender-health actions: phone numbers whose rating and tier move over time,
  their daily counts, and can-send status of the WABA, numbers and templates;
- `auth`: signatures, the timestamp window, nonces;
- `traffic`: the clock, flow control and request stats;
- `faults`: injected faults;
- `wire`: requests, replies and Alibaba's error bodies;
- `server`: `Simulator`, tying them together behind an HTTP server;
- `cli`: `cams-exporter simulate`.
"""

from cams_simulator.cli import main
from cams_simulator.data import build_templates
from cams_simulator.options import (
    ACTIONS,
    GRANULARITIES,
    MAX_PAGE_SIZE,
    SENDER_ACTIONS,
    SHAPES,
    FaultSpec,
    SimulatorOptions,
    parse_faults,
)
from cams_simulator.server import Simulator

__all__ = [
    "ACTIONS",
    "GRANULARITIES",
    "MAX_PAGE_SIZE",
    "SENDER_ACTIONS",
    "SHAPES",
    "FaultSpec",
    "Simulator",
    "SimulatorOptions",
    "build_templates",
    "main",
    "parse_faults",
]
