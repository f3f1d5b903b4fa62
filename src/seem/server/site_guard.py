"""Cross-site protection for ``seem serve``: refuse cross-origin state changes, harden every response.

A web page on another site can make a browser send requests to a local server (a form post or a
``fetch`` in ``no-cors`` mode): the page cannot read the answer, but the server would do the work (decode
an image, run the model). Browsers send an ``Origin`` header with every cross-origin ``POST`` / ``PUT`` /
``PATCH`` / ``DELETE``, so those are refused (403) unless the origin is this server itself (the ``Host`` the
request was sent to) or one the operator allowed. Clients that are not browsers (curl, Python) send no
``Origin`` and are not affected. This is the origin check of OWASP's CSRF cheat sheet ("verifying origin
with standard headers").

Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (no clickjacking through
a frame) and ``Referrer-Policy: no-referrer``; HTML responses (the page) get a Content-Security-Policy that
allows only this server's own scripts, styles and connections (images also from ``blob:``, which the page
uses for the chosen file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer")]


def _origin_key(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case with default ports dropped; None for ``null`` or junk."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


class SiteGuard:
    """ASGI middleware: 403 for cross-origin state-changing requests, security headers on every response.

    Args:
        app: the ASGI app to wrap.
        allowed_origins: extra origins (``"https://annotate.example.org"``) whose pages may call the API,
            e.g. a front end served elsewhere; this server's own origin is always allowed.
    """

    def __init__(self, app, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {k for k in (_origin_key(o) for o in allowed_origins) if k}

    def _same_origin(self, scope, origin: str) -> bool:
        key = _origin_key(origin)
        if key is None:
            return False
        if key in self.allowed:
            return True
        host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1").strip().lower()
        scheme = scope.get("scheme", "http")
        return bool(host) and key == _origin_key(f"{scheme}://{host}")

    async def _refuse(self, send, origin: str) -> None:
        body = json.dumps({"detail": f"cross-origin request refused: Origin {origin[:200]!r} is not this server; "
                           "start `seem serve` with --allow-origin for a front end on another origin"}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *_ALWAYS]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = dict(scope.get("headers") or ()).get(b"origin")
        if scope.get("method", "GET").upper() in STATE_CHANGING and origin is not None:
            text = origin.decode("latin-1")
            if not self._same_origin(scope, text):
                await self._refuse(send, text)
                return

        async def send_hardened(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _ALWAYS if k not in names]
                content_type = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html") and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_hardened)
