"""Checks a model a client named against the current gateway-config."""

from __future__ import annotations

from gateway.errors import ModelNotFoundError
from ttsgw_contract.gateway_config import GatewayConfig

# Past this many the message points at /v1/models instead of listing them all.
_LIST_AT_MOST = 20


def require_known_model(config: GatewayConfig, name: str) -> str:
    if name in config.models:
        return name
    raise unknown_model(name, config.known_models())


def unknown_model(name: str, known: list[str]) -> ModelNotFoundError:
    """The 404 for a model that is not configured, naming the ones that are."""
    if not known:
        hint = "No models are configured."
    elif len(known) <= _LIST_AT_MOST:
        hint = "Known models: " + ", ".join(known) + "."
    else:
        hint = "See GET /v1/models for the list."
    return ModelNotFoundError(f"The model '{name}' does not exist. {hint}", param="model")
