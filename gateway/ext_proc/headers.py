"""Reading Envoy's header maps and building header mutations for ext_proc responses."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue, HeaderValueOption
from envoy.service.ext_proc.v3.external_processor_pb2 import HeaderMutation

from ttsgw_contract.headers import RESERVED_PREFIX


def header_dict(headers: HeaderMap) -> dict[str, str]:
    """Lower-cased name → value; the last value wins for a repeated header.

    Envoy 1.40 sends values in ``raw_value`` (bytes) and leaves ``value`` empty; older
    versions did the opposite, so read both.
    """
    result: dict[str, str] = {}
    for header in headers.headers:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        result[header.key.lower()] = value
    return result


def reserved_headers(names: Iterable[str]) -> list[str]:
    return sorted({n for n in names if n.lower().startswith(RESERVED_PREFIX)})


def set_header(name: str, value: str) -> HeaderValueOption:
    # raw_value, the field Envoy 1.40 itself fills; overwrite, so a client's copy that
    # slipped past the strip can never survive next to ours.
    return HeaderValueOption(
        header=HeaderValue(key=name, raw_value=value.encode()),
        append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def mutation(
    *, set_headers: dict[str, str] | None = None, remove: Iterable[str] = ()
) -> HeaderMutation | None:
    """A HeaderMutation, or None when there is nothing to change."""
    sets = [set_header(k, v) for k, v in (set_headers or {}).items()]
    removes = [r for r in remove if not set_headers or r not in set_headers]
    if not sets and not removes:
        return None
    return HeaderMutation(set_headers=sets, remove_headers=removes)
