"""A small synchronous client for the admin API; httpx errors become `ttsgw.ops.errors`.

`transport` is the test seam: unit tests pass an `httpx.MockTransport`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from ttsgw.ops.errors import ApiError, TransportError, UnreachableError

API = "/api/v1"
READ_TIMEOUT_S = 30.0
# A waited write may take its whole timeout_s on the server; give the answer time to come back.
WAIT_MARGIN_S = 10.0


class AdminClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        author: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"accept": "application/json", "user-agent": "ttsgw-cli"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if author:
            headers["x-author"] = author
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- models and backends ----------------------------------------------------

    def list_models(self) -> dict[str, Any]:
        return self._call("GET", "/models")

    def get_model(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{_seg(name)}")

    def set_splits(
        self, name: str, splits: list[dict[str, Any]], *, wait_s: float | None = None
    ) -> dict[str, Any]:
        return self._write("PUT", f"/models/{_seg(name)}/splits", {"splits": splits}, wait_s)

    def list_backends(self) -> dict[str, Any]:
        return self._call("GET", "/backends")

    def get_backend(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/backends/{_seg(name)}")

    # --- revisions ----------------------------------------------------------------

    def list_revisions(self, *, limit: int = 50, before: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self._call("GET", "/revisions", params=params)

    def get_revision(self, number: int) -> dict[str, Any]:
        return self._call("GET", f"/revisions/{number}")

    def diff_revision(self, number: int, *, against: int | None = None) -> dict[str, Any]:
        params = {"against": against} if against is not None else None
        return self._call("GET", f"/revisions/{number}/diff", params=params)

    def restore_revision(self, number: int, *, wait_s: float | None = None) -> dict[str, Any]:
        return self._write("POST", f"/revisions/{number}/restore", None, wait_s)

    # --- fleet, cache, priority classes ------------------------------------------

    def fleet(self) -> dict[str, Any]:
        return self._call("GET", "/fleet")

    def cache_stats(self) -> dict[str, Any]:
        return self._call("GET", "/cache")

    def cache_purge(self, *, model: str | None = None) -> dict[str, Any]:
        return self._call("DELETE", "/cache", params={"model": model} if model else None)

    def queue_status(self, *, model: str | None = None) -> dict[str, Any]:
        return self._call("GET", "/queue", params={"model": model} if model else None)

    def list_priority_classes(self) -> dict[str, Any]:
        return self._call("GET", "/priority-classes")

    def add_key(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/priority-classes/{_seg(name)}/keys")

    # --- rollouts -------------------------------------------------------------------

    def start_rollout(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/rollouts", json_body=spec)

    def list_rollouts(
        self, *, model: str | None = None, status: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if model is not None:
            params["model"] = model
        if status is not None:
            params["status"] = status
        return self._call("GET", "/rollouts", params=params)

    def get_rollout(self, rollout_id: int, *, events: int | None = None) -> dict[str, Any]:
        params = {"events": events} if events is not None else None
        return self._call("GET", f"/rollouts/{rollout_id}", params=params)

    def rollout_events(self, rollout_id: int, *, after: int | None = None) -> dict[str, Any]:
        params = {"after": after} if after is not None else None
        return self._call("GET", f"/rollouts/{rollout_id}/events", params=params)

    def rollout_action(self, rollout_id: int, action: str) -> dict[str, Any]:
        """pause | resume | promote | abort."""
        return self._call("POST", f"/rollouts/{rollout_id}/{_seg(action)}")

    # --- plumbing -------------------------------------------------------------------

    def _write(self, method: str, path: str, body: Any, wait_s: float | None) -> dict[str, Any]:
        if wait_s is None:
            return self._call(method, path, json_body=body)
        return self._call(
            method,
            path,
            json_body=body,
            params={"wait": "acked", "timeout_s": wait_s},
            timeout_s=wait_s + WAIT_MARGIN_S,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        try:
            response = self._http.request(
                method, API + path, params=params, json=json_body, **extra
            )
        except httpx.ConnectError as exc:
            raise UnreachableError(self.base_url, _reason(exc)) from exc
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"the control plane at {self.base_url} did not answer in time ({_reason(exc)})"
            ) from exc
        except httpx.HTTPError as exc:  # protocol errors, a bad URL, ...
            raise TransportError(
                f"cannot talk to the control plane at {self.base_url}: {_reason(exc)}"
            ) from exc
        if response.is_error:
            raise _api_error(response)
        try:
            data = response.json()
        except json.JSONDecodeError as exc:
            raise TransportError(
                f"{method} {path} answered {response.status_code} with a body that is not JSON"
            ) from exc
        if not isinstance(data, dict):
            raise TransportError(f"{method} {path} answered JSON that is not an object")
        return data


def _seg(name: str) -> str:
    # A name is one path segment, even if someone types "a/b" or "..".
    return quote(name, safe="")


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text


def _api_error(response: httpx.Response) -> ApiError:
    """The API's `{"error": {code, message, field}}`, or what a non-API server said."""
    try:
        error = response.json().get("error")
    except (json.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        # Something else answered at that URL (a proxy, a different server).
        text = " ".join(response.text.split())[:200] or response.reason_phrase
        return ApiError(response.status_code, response.reason_phrase.lower(), text)
    message = str(error.get("message") or response.reason_phrase)
    details = error.get("details") or []
    others = [f"{d.get('field')}: {d.get('message')}" for d in details[1:] if isinstance(d, dict)]
    if others:
        message += "; also " + "; ".join(others)
    return ApiError(
        response.status_code,
        str(error.get("code") or response.reason_phrase.lower()),
        message,
        error.get("field"),
    )
