"""Tracing shared by every deployable: OTel setup for emitters and the tail-sampling span relay.

See docs/tracing.md for how a trace crosses Envoy, the gateway filter and the workers, and
how the relay keeps every error and every slow request whatever the sampling ratio.
"""
