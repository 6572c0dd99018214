"""cams-exporter: a Prometheus exporter for Alibaba Cloud CAMS template metrics."""

__version__ = "0.1.0"
