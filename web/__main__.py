"""``python -m web``: serve the upload page locally (the function must already be running).

    python -m web [--host 127.0.0.1] [--port 8000] [--function-url http://127.0.0.1:8080/]
    python -m web --render-index     # regenerate web/static/index.html from the template
"""

from __future__ import annotations

import argparse
import os

from .app import DEFAULT_FUNCTION_URL, create_app, write_static_index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web", description="Serve the skinscan upload page.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--function-url", default=os.environ.get("SKINSCAN_FUNCTION_URL", DEFAULT_FUNCTION_URL))
    parser.add_argument("--render-index", action="store_true",
                        help="write static/index.html (the static-host copy of the page) and exit")
    args = parser.parse_args(argv)
    if args.render_index:
        print(f"wrote {write_static_index()}")
        return 0
    from werkzeug.serving import run_simple

    print(f"upload page: http://{args.host}:{args.port}/  (function: {args.function_url})")
    run_simple(args.host, args.port, create_app(args.function_url), threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
