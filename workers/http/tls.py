"""A destination's TLS options (SPEC 4 ``tls``), as the transport applies them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TlsOptions"]


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Verify the receiver's certificate (against ``ca_bundle`` if set); present a client cert."""

    verify: bool = True
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
