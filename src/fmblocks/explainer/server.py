"""The explainer's web server: the bundled page plus a small JSON API, on the loopback interface only.

    GET  /                 the page (static/index.html, app.js, style.css; no external assets)
    GET  /api/info         {"model": config dict, "vocab_size", "default_text"}
    POST /api/analyze      {"text", "temperature", "top_k", "top_p"}        -> analysis.analyze(...)
    POST /api/generate     {"text", "max_new_tokens", "temperature", "top_k", "top_p", "seed"}
                                                                           -> analysis.continue_text(...)
Bad requests get HTTP 400 with {"error": message}. The server refuses to bind anything but a loopback
address (127.0.0.0/8, ::1, localhost): it serves a model to the person at this machine, nobody else.
"""

import ipaddress
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from torch import nn

from fmblocks.errors import ConfigError, FmblocksError
from fmblocks.explainer.analysis import analyze, continue_text
from fmblocks.tokenizers.base import Tokenizer

STATIC_FILES = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
MAX_BODY = 100_000


def check_loopback(host: str) -> None:
    """ConfigError unless `host` is localhost or a loopback address."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"the explainer binds to loopback only (127.0.0.1, ::1, localhost), not {host!r}")


def sampling_options(body: dict[str, Any]) -> dict[str, Any]:
    """temperature / top_k / top_p from a request body (absent, null or 0 top_k/top_p = off)."""
    top_k = body.get("top_k") or None
    top_p = body.get("top_p") or None
    return {
        "temperature": float(body.get("temperature", 1.0)),
        "top_k": int(top_k) if top_k is not None else None,
        "top_p": float(top_p) if top_p is not None else None,
    }


class Explainer:
    """A model and its tokenizer behind the API; one lock, since torch modules are not re-entrant."""

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, *, default_text: str = "") -> None:
        self.model, self.tokenizer, self.default_text = model.eval(), tokenizer, default_text
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        return {"model": self.model.config.to_dict(), "vocab_size": self.tokenizer.vocab_size,
                "default_text": self.default_text}

    def analyze(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return analyze(self.model, self.tokenizer, str(body.get("text", "")), **sampling_options(body))

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        limit = self.model.config.max_len - 1
        new = int(body.get("max_new_tokens", 40))
        if not 1 <= new <= limit:
            raise ConfigError(f"max_new_tokens must lie in 1..{limit}, got {new}")
        with self.lock:
            return continue_text(self.model, self.tokenizer, str(body.get("text", "")), max_new_tokens=new,
                                 seed=int(body.get("seed", 0)), **sampling_options(body))


def make_handler(explainer: Explainer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `explainer`."""
    routes = {"/api/analyze": explainer.analyze, "/api/generate": explainer.generate}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep the terminal for the progress and the URL
            pass

        def send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: HTTPStatus, payload: Any) -> None:
            self.send(status, json.dumps(payload).encode("utf-8"), "application/json")

        def do_GET(self) -> None:
            if self.path == "/api/info":
                self.send_json(HTTPStatus.OK, explainer.info())
            elif self.path in STATIC_FILES:
                name = STATIC_FILES[self.path]
                data = (resources.files("fmblocks.explainer") / "static" / name).read_bytes()
                self.send(HTTPStatus.OK, data, CONTENT_TYPES[name[name.rindex("."):]])
            else:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

        def do_POST(self) -> None:
            route = routes.get(self.path)
            if route is None:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"request over {MAX_BODY} bytes"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                self.send_json(HTTPStatus.OK, route(body))
            except (FmblocksError, ValueError, TypeError) as err:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(err)})

    return Handler


def make_server(explainer: Explainer, *, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server for `explainer` bound to host:port (port 0 picks a free one); call serve_forever()."""
    check_loopback(host)
    return ThreadingHTTPServer((host, port), make_handler(explainer))
