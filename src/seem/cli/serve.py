"""``seem serve``: the HTTP API and web page (:mod:`seem.server`) for the model named on the command line.

Binds to 127.0.0.1 by default (localhost only); pass ``--host 0.0.0.0`` deliberately to expose it.
The API has no authentication: do not expose it to untrusted networks.
"""

from __future__ import annotations

import argparse

from seem.cli.common import add_predictor_arguments, positive_float, positive_int, verbose_parent


def add_parser(subparsers) -> None:
    """The ``serve`` subcommand (argparse only; FastAPI is imported when it runs)."""
    p = subparsers.add_parser("serve", parents=[verbose_parent()], help="run the HTTP API and web page",
                              description="Serve SEEM over HTTP: a JSON API (OpenAPI docs at /docs) and a web page "
                              "at /. Coordinates are (x, y) pixels of the uploaded image.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, localhost only)")
    p.add_argument("--port", type=int, default=7860, help="TCP port (default: 7860)")
    add_predictor_arguments(p)
    p.add_argument("--max-images", type=positive_int, default=32, dest="max_images",
                   help="encoded images kept in memory (default: 32)")
    p.add_argument("--feature-budget-mb", type=positive_int, default=1024, dest="feature_budget_mb",
                   help="approximate memory for cached image features, MiB (default: 1024)")
    p.add_argument("--session-ttl", type=positive_float, default=1800.0, dest="session_ttl",
                   help="seconds before an idle session expires (default: 1800)")
    p.add_argument("--max-sessions", type=positive_int, default=256, dest="max_sessions",
                   help="live sessions at most (default: 256)")
    p.add_argument("--allow-origin", action="append", default=[], dest="allow_origin", metavar="ORIGIN",
                   help="a web origin (https://host[:port]) besides this server whose pages may call the API; "
                   "repeatable (default: none: browsers on other sites get 403 on POST/PUT/PATCH/DELETE)")


def run(args: argparse.Namespace) -> int:
    """Load the model, build the app and serve until interrupted."""
    from seem.cli.common import load_predictor  # looked up at call time (tests substitute it)
    from seem.server.serve import serve

    return serve(lambda: load_predictor(args), host=args.host, port=args.port, max_images=args.max_images,
                 feature_budget_mb=args.feature_budget_mb, session_ttl=args.session_ttl,
                 max_sessions=args.max_sessions, model_name=args.model or "seem_tiny",
                 allowed_origins=tuple(args.allow_origin))
