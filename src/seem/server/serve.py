"""Run the API under uvicorn (``seem serve``; the command line lives in :mod:`seem.cli.serve`).

On loopback only requests addressed to a loopback name are served; any other host gets a warning, as the
API has no authentication.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def serve(load_predictor: Callable[[], Any], *, host: str = "127.0.0.1", port: int = 7860, max_images: int = 32,
          feature_budget_mb: int = 1024, session_ttl: float = 1800.0, max_sessions: int = 256,
          model_name: str = "seem_tiny", allowed_origins: tuple[str, ...] = ()) -> int:
    """Check the server's dependencies and ``port``, then load the model (``load_predictor()``), build the app
    and serve until interrupted; returns 0. The checks come first so a bad setup fails before the slow load."""
    from seem.errors import require

    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    from seem.server import create_app

    if not 0 < port < 65536:
        from seem.errors import SeemError

        raise SeemError(f"--port {port}: expected 1..65535")
    predictor = load_predictor()
    loopback = host in ("127.0.0.1", "localhost", "::1")
    # on loopback, only requests addressed to a loopback name are served (a DNS-rebinding page cannot reach us)
    hosts = ["127.0.0.1", "localhost", "[::1]"] if loopback else None
    app = create_app(predictor, max_images=max_images, feature_budget_bytes=feature_budget_mb << 20,
                     session_ttl_s=session_ttl, max_sessions=max_sessions, model_name=model_name,
                     allowed_hosts=hosts, allowed_origins=allowed_origins)
    if not loopback:
        print(f"warning: serving on {host}: the API has no authentication", file=sys.stderr)
    print(f"SEEM API on http://{host}:{port}  (docs: /docs)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
