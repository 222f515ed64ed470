"""``skinscan serve``: the whole stack on one machine, for trying it out.

The function, the upload page and (when ``TELEGRAM_BOT_TOKEN`` is set) the
bot run in one process; the page and the bot still reach the function over
HTTP, exactly as they do when deployed.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING

from ..logs import configure_logging
from ..service import get_classifier
from ..store import ModelUnavailable, model_uri

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler


def function_source() -> str:
    """``functions/main.py`` wherever the ``functions`` package is installed (a checkout or a wheel)."""
    spec = importlib.util.find_spec("functions.main")
    if spec is None or not spec.origin:
        raise RuntimeError("the functions package is not installed (pip install 'skinscan[serve]')")
    return spec.origin


def access_log_handler() -> type[WSGIRequestHandler]:
    """Werkzeug's request handler, logging each request without its query string.

    A raw-body classify request carries the checklist answers there (``POST /?changed_size=yes``),
    and symptom answers must never reach a log; method, path and status are what an access log needs.
    """
    from urllib.parse import urlsplit

    from werkzeug.serving import WSGIRequestHandler

    class PathOnly(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            path = urlsplit(getattr(self, "path", "") or "").path or "?"
            line = f"{getattr(self, 'command', '-')} {path} {getattr(self, 'request_version', '-')}"
            self.log("info", '"%s" %s %s', line.translate(self._control_char_table), code, size)

    return PathOnly


def _serve_in_thread(app: WSGIApplication, host: str, port: int, name: str) -> BaseWSGIServer:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True, request_handler=access_log_handler())
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def serve(host: str = "127.0.0.1", function_port: int = 8080, web_port: int = 8000) -> int:
    import functions_framework

    from web.app import create_app as create_web_app

    configure_logging()
    try:
        classifier = get_classifier()  # load before announcing, so the first request is fast
        print(f"model {classifier.manifest['version']} ({classifier.model_info.backend}) from {model_uri()}")
    except ModelUnavailable as error:
        print(f"warning: model unavailable ({error}); the function will answer 503 until it loads")

    function_app = functions_framework.create_app("classify", function_source())
    function_url = f"http://{host}:{function_port}/"
    servers = [_serve_in_thread(function_app, host, function_port, "function")]
    print(f"classify function: {function_url}   (curl -F image=@photo.jpg {function_url})")
    servers.append(_serve_in_thread(create_web_app(function_url), host, web_port, "web"))
    print(f"upload page:       http://{host}:{web_port}/")

    token = os.environ.get("TELEGRAM_BOT_TOKEN")
    try:
        if token:
            from bot.app import run_polling

            print("telegram bot:      polling (TELEGRAM_BOT_TOKEN is set)")
            run_polling(token, function_url)
        else:
            print("telegram bot:      off (set TELEGRAM_BOT_TOKEN to start it)")
            print("press Ctrl+C to stop")
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.shutdown()
    return 0
