"""``seem serve``: build the predictor from the command line and run the API under uvicorn.

Binds to 127.0.0.1 by default (localhost only); pass ``--host 0.0.0.0`` deliberately to expose it.
The API has no authentication: do not expose it to untrusted networks.
"""

from __future__ import annotations

import argparse
import sys


def add_serve_parser(sub, common: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand (argparse only; nothing heavy is imported)."""
    from seem.cli import _positive_float, _positive_int, add_precision_argument, parse_device

    p = sub.add_parser("serve", parents=[common], help="run the HTTP API and web page",
                       description="Serve SEEM over HTTP: a JSON API (OpenAPI docs at /docs) and a web page at /. "
                       "Coordinates are (x, y) pixels of the uploaded image.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, localhost only)")
    p.add_argument("--port", type=int, default=7860, help="TCP port (default: 7860)")
    p.add_argument("--model", default=None, help="registry name or checkpoint path (default: the bundled model)")
    p.add_argument("--device", type=parse_device, default="auto", help="auto|cpu|cuda[:N]|mps (default: auto)")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch")
    add_precision_argument(p)
    p.add_argument("--max-images", type=_positive_int, default=32, dest="max_images",
                   help="encoded images kept in memory (default: 32)")
    p.add_argument("--feature-budget-mb", type=_positive_int, default=1024, dest="feature_budget_mb",
                   help="approximate memory for cached image features, MiB (default: 1024)")
    p.add_argument("--session-ttl", type=_positive_float, default=1800.0, dest="session_ttl",
                   help="seconds before an idle session expires (default: 1800)")
    p.add_argument("--max-sessions", type=_positive_int, default=256, dest="max_sessions",
                   help="live sessions at most (default: 256)")


def run_serve(args: argparse.Namespace) -> int:
    """Load the model, build the app and serve until interrupted."""
    from seem.errors import require

    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    from seem.cli_commands import load_predictor
    from seem.server import create_app

    if not 0 < args.port < 65536:
        from seem.errors import SeemError

        raise SeemError(f"--port {args.port}: expected 1..65535")
    predictor = load_predictor(args)
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    # on loopback, only requests addressed to a loopback name are served (a DNS-rebinding page cannot reach us)
    hosts = ["127.0.0.1", "localhost", "[::1]"] if loopback else None
    app = create_app(predictor, max_images=args.max_images, feature_budget_bytes=args.feature_budget_mb << 20,
                     session_ttl_s=args.session_ttl, max_sessions=args.max_sessions,
                     model_name=args.model or "seem_tiny", allowed_hosts=hosts)
    if not loopback:
        print(f"warning: serving on {args.host}: the API has no authentication", file=sys.stderr)
    print(f"SEEM API on http://{args.host}:{args.port}  (docs: /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
