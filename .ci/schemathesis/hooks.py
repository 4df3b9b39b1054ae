"""Schemathesis hooks for tiergate: a policy upload's body is raw bytes."""

import schemathesis


@schemathesis.serializer("application/wasm")
def wasm(ctx, value):
    """Sends what was generated as the body's bytes, as a client would."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value).encode("utf-8")
