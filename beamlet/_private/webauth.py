"""The cluster token on HTTP: how the metrics endpoints and the dashboard check
who asks (docs/security.md).

A request proves it holds the token with `Authorization: Bearer <token>` (what
Prometheus sends from `authorization: {credentials_file: ...}`); the dashboard
also takes a session cookie derived from the token (dashboard/auth.py).
Every comparison is constant-time.
"""
import hmac


def bearer_token(header) -> str:
    """The token of an `Authorization: Bearer <token>` header value, or ""."""
    if not header:
        return ""
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def same_secret(given, expected: str) -> bool:
    """Whether `given` is `expected`, compared in constant time (an empty or
    missing value never matches)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(errors="replace"), expected.encode())


def bearer_ok(header, token: str) -> bool:
    return same_secret(bearer_token(header), token)
