"""The ops CLI's errors; each carries the exit code it ends the command with.

    OpsError                 exit 1
    ├── UsageError           exit 2: bad arguments, nothing was sent
    ├── ApiError             exit 1: the admin API answered with an error (status, code)
    ├── UnreachableError     exit 1: nothing listens at the admin URL
    ├── TransportError       exit 1: the connection broke or timed out
    └── NotConvergedError    exit 1: a write with --wait was stored, but not every Envoy ACKed it

Foreign errors (httpx) are translated in `client`; `runner` turns these into stderr.
"""

from __future__ import annotations


class OpsError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(OpsError):
    exit_code = 2

    def __init__(self, message: str, usage: str = "", prog: str = "ttsgw") -> None:
        super().__init__(message)
        self.usage = usage
        self.prog = prog


class ApiError(OpsError):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class UnreachableError(OpsError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the control plane is not reachable at {url} ({reason}); "
            "start it with `make up` (or `ttsgw up`), or point --admin-url / "
            "TTSGW_ADMIN_URL at a running one"
        )
        self.url = url


class TransportError(OpsError):
    pass


class NotConvergedError(OpsError):
    pass
