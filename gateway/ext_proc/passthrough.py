"""Everything the filter has no business with: strip the client's x-tts-* headers, let it through.

Also what voices and the voice registry get before the first gateway config: failing
open there matches what Envoy does when the filter is down (``failure_mode_allow``).
"""

from __future__ import annotations

from envoy.service.ext_proc.v3.external_processor_pb2 import HttpHeaders, ProcessingResponse

from gateway.ext_proc.admission import Admission
from gateway.ext_proc.headers import mutation
from gateway.ext_proc.processor import BaseProcessor, Outcome, RequestHead
from gateway.ext_proc.responses import continue_request_headers
from ttsgw_contract.gateway_config import GatewayConfig
from ttsgw_contract.modes import PASSTHROUGH_MODE


class PassthroughProcessor(BaseProcessor):
    def __init__(
        self, head: RequestHead, config: GatewayConfig | None, admission: Admission
    ) -> None:
        super().__init__(head, config)
        self._admission = admission

    async def request_headers(self, message: HttpHeaders) -> ProcessingResponse:
        # Every API call is admitted (401, 429), even one Envoy answers itself.
        self.admit(self._admission, stamp=False)
        self.decide(Outcome.PASSTHROUGH)
        # Envoy 1.40 has already matched a route with the client's headers when it asks
        # us (seen in tests/e2e/test_filter_envoy.py); a removal counts only with a clear.
        return continue_request_headers(
            mutation(remove=self.head.reserved),
            clear_route_cache=bool(self.head.reserved),
            mode_override=PASSTHROUGH_MODE,
        )
