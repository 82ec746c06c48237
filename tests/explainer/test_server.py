"""The explainer server under hostile and careless requests, over raw sockets against 127.0.0.1:0 (and ::1)."""

import json
import socket
import threading
import time

import pytest

from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import CHARS_PER_TOKEN, encode_tail
from fmblocks.explainer.server import MAX_BODY, MAX_WAITING, Explainer, ExplainerServer, authority, make_server


@pytest.fixture()
def server(char_parts, serve):
    with serve(Explainer(*char_parts, default_text="abc"), idle_timeout=0.5) as server:
        yield server


def host_of(server: ExplainerServer) -> str:
    return authority(*server.server_address[:2])


def exchange(server: ExplainerServer, raw: bytes, *, timeout: float = 3.0) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` (the write side stays open) and read the answer to the server's end of the stream."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def request(server: ExplainerServer, method: str, path: str, body: bytes = b"", *, headers: dict | None = None,
            host: str | None = None, **options) -> tuple[int, dict[str, str], bytes]:
    """A request with a Host for the server, a JSON content type and the body's length unless `headers` say else."""
    fields = {"Host": host or host_of(server)}
    if method == "POST":
        fields |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
    fields |= headers or {}
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value is not None)
    return exchange(server, f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body, **options)


def strict_json(body: bytes):
    """The body as JSON, failing on NaN / Infinity (which the page's response.json() cannot read)."""
    def refuse(name):
        raise AssertionError(f"{name} in a response")
    return json.loads(body, parse_constant=refuse)


def post(server: ExplainerServer, path: str, body) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, data = request(server, "POST", path, raw)
    return status, strict_json(data)


# --- Content-Length ------------------------------------------------------------------------------


@pytest.mark.parametrize("length, status", [
    ("-1", 400), ("abc", 400), ("1e400", 400), ("", 400), ("12, 12", 400), ("\u00b2", 400),
    (None, 411), (str(MAX_BODY + 1), 413), ("9" * 5000, 413), ("0" * 300 + "9" * 30, 413),
])
def test_bad_lengths_are_answered_without_reading_the_body(server, length, status) -> None:
    start = time.perf_counter()
    code, _, body = request(server, "POST", "/api/analyze", headers={"Content-Length": length})
    assert code == status and "error" in strict_json(body)
    assert time.perf_counter() - start < 2  # answered at once, not after waiting for a body that never comes


def test_a_negative_length_with_a_big_body_is_refused(server) -> None:
    code, _, body = request(server, "POST", "/api/analyze", b"x" * 3_000_000, headers={"Content-Length": "-1"})
    assert code == 400 and "Content-Length" in strict_json(body)["error"]


def test_chunked_bodies_and_repeated_lengths_are_refused(server) -> None:
    chunked = {"Transfer-Encoding": "chunked", "Content-Length": None}
    assert request(server, "POST", "/api/analyze", b"2\r\n{}\r\n0\r\n\r\n", headers=chunked)[0] == 411
    twice = b"POST /api/analyze HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n" \
            b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}" % host_of(server).encode()
    assert exchange(server, twice)[0] == 400


# --- Host, Origin, content type --------------------------------------------------------------------


def test_only_the_bound_address_or_localhost_is_served(server) -> None:
    port = server.server_address[1]
    for host in (host_of(server), f"localhost:{port}", f"LOCALHOST:{port}"):
        assert request(server, "GET", "/api/info", host=host)[0] == 200
    for host in ("evil.example.com", f"evil.example.com:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}",
                 f"localhost.evil.example.com:{port}"):
        code, _, body = request(server, "GET", "/api/info", host=host)
        assert code == 421 and "Host" in strict_json(body)["error"]
    assert exchange(server, b"GET /api/info HTTP/1.0\r\n\r\n")[0] == 421  # no Host at all


def test_posts_need_json_and_the_pages_own_origin(server) -> None:
    body = json.dumps({"text": "abc"}).encode()
    own = f"http://{host_of(server)}"
    assert request(server, "POST", "/api/analyze", body, headers={"Origin": own})[0] == 200
    for origin in ("http://evil.example.com", "null", own + ".evil.example.com", f"https://{host_of(server)}"):
        assert request(server, "POST", "/api/analyze", body, headers={"Origin": origin})[0] == 403
    assert request(server, "GET", "/api/info", headers={"Origin": "http://evil.example.com"})[0] == 403
    for path in ("/api/inspect", "/api/tokenize"):  # the detail routes sit behind the same checks
        assert request(server, "POST", path, body, headers={"Origin": own})[0] == 200
        assert request(server, "POST", path, body, headers={"Origin": "http://evil.example.com"})[0] == 403
        assert request(server, "POST", path, body, headers={"Content-Type": "text/plain"})[0] == 415
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
        code, _, answer = request(server, "POST", "/api/analyze", body, headers={"Content-Type": content_type})
        assert code == 415 and "application/json" in strict_json(answer)["error"]
    assert request(server, "POST", "/api/analyze", body,
                   headers={"Content-Type": "application/json; charset=utf-8"})[0] == 200


# --- fields --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, raw, field", [
    ("/api/analyze", b'{"text": "abc", "temperature": NaN}', "NaN"),
    ("/api/analyze", b'{"text": "abc", "temperature": Infinity}', "Infinity"),
    ("/api/analyze", b'{"text": "abc", "temperature": 1e400}', "temperature"),
    ("/api/analyze", b'{"text": "abc", "top_k": 1e400}', "top_k"),
    ("/api/analyze", b'{"text": "abc", "top_k": 2.5}', "top_k"),
    ("/api/analyze", b'{"text": "abc", "top_k": true}', "top_k"),
    ("/api/analyze", b'{"text": "abc", "top_p": -1e400}', "top_p"),
    ("/api/analyze", b'{"text": "abc", "top_p": 2}', "top_p"),
    ("/api/analyze", b'{"text": 5}', "text"),
    ("/api/analyze", b'{"text": ""}', "no tokens"),
    ("/api/analyze", b'[1, 2]', "object"),
    ("/api/analyze", b'[' * 50_000, "nests"),
    ("/api/analyze", b'{"text": "\xff"}', "utf-8"),
    ("/api/generate", b'{"text": "abc", "max_new_tokens": 1e400}', "max_new_tokens"),
    ("/api/generate", b'{"text": "abc", "max_new_tokens": 2.5}', "max_new_tokens"),
    ("/api/generate", b'{"text": "abc", "max_new_tokens": 10000000000000000000000}', "max_new_tokens"),
    ("/api/generate", b'{"text": "abc", "max_new_tokens": 0}', "max_new_tokens"),
    ("/api/generate", b'{"text": "abc", "seed": 1e400}', "seed"),
    ("/api/generate", b'{"text": "abc", "seed": 100000000000000000000000000000}', "seed"),
    ("/api/generate", b'{"text": "abc", "seed": -1}', "seed"),
    ("/api/generate", b'{"text": "abc", "temperature": NaN}', "NaN"),
    ("/api/inspect", b'{"text": "abc", "layer": 99}', "layer"),
    ("/api/inspect", b'{"text": "abc", "head": 1e400}', "head"),
    ("/api/inspect", b'{"text": "abc", "token": -1}', "token"),
    ("/api/inspect", b'{"text": 5}', "text"),
    ("/api/inspect", b'{"text": ""}', "no tokens"),
    ("/api/tokenize", b'{"text": "abc", "tokenizer": "nope"}', "known: model"),
    ("/api/tokenize", b'{"text": "abc", "tokenizer": 3}', "unknown tokenizer"),
    ("/api/tokenize", b'{"text": ["abc"]}', "text"),
    ("/api/tokenize", b'{"text": "hello", "tokenizer": "dna-3mer"}', "DNA may contain only"),
])
def test_bad_fields_are_400_with_a_message(server, path, raw, field) -> None:
    status, body = post(server, path, raw)
    assert status == 400 and field in body["error"]


@pytest.mark.parametrize("options", [{"temperature": 1e-45}, {"top_p": 1e-300}, {"temperature": 5e-324},
                                     {"top_k": 10**30}, {"temperature": 0, "top_k": 1, "top_p": 1}])
def test_extreme_but_valid_options_are_answered_with_finite_numbers(server, options) -> None:
    status, data = post(server, "/api/analyze", {"text": "abc", **options})
    assert status == 200 and sum(n["p_sampled"] for n in data["next"]) <= 1 + 1e-6
    status, data = post(server, "/api/generate", {"text": "abc", "max_new_tokens": 3, **options})
    assert status == 200 and len(data["ids"]) == 3


def test_a_non_finite_result_is_a_500_not_nan_in_the_json(char_parts, serve) -> None:
    explainer = Explainer(*char_parts)
    explainer.analyze = lambda body: {"p": float("nan")}
    with serve(explainer) as server:
        status, body = post(server, "/api/analyze", {"text": "abc"})
    assert status == 500 and "NaN" in body["error"]


# --- bounded work, truncation --------------------------------------------------------------------


def test_truncation_is_reported_with_where_the_analysed_text_starts(server) -> None:
    text = "the start. " + "abc " * 50  # 211 characters, one token each; the context holds 24
    status, data = post(server, "/api/analyze", {"text": text})
    assert status == 200 and len(data["ids"]) == 24
    assert data["truncated"]["start"] == len(text) - 24 and "character 187" in data["truncated"]["message"]
    status, data = post(server, "/api/generate", {"text": text, "max_new_tokens": 4})
    assert status == 200 and data["truncated"]["start"] == len(text) - 20
    assert post(server, "/api/analyze", {"text": "short"})[1]["truncated"] is None


def test_truncation_with_a_lossy_tokenizer_still_says_so(parts) -> None:
    model, tokenizer = parts
    ids, note = encode_tail(tokenizer, "Word " * 40, 24)
    assert len(ids) == 24 and note["start"] is None and "last 24 tokens" in note["message"]


def test_only_a_bounded_tail_of_a_long_text_is_tokenized(char_parts) -> None:
    _, tokenizer = char_parts
    seen = []

    class Recording(type(tokenizer)):
        def encode(self, text):
            seen.append(len(text))
            return super().encode(text)

    recording = Recording.from_dict(tokenizer.to_dict(), {})
    ids, note = encode_tail(recording, "a" * 100_000, 24)
    assert seen == [CHARS_PER_TOKEN * 24] and len(ids) == 24 and note["start"] == 100_000 - 24


def test_a_maximal_request_is_answered_quickly(server) -> None:
    text = "abc " * (MAX_BODY // 4 - 10)  # just under the body limit
    start = time.perf_counter()
    status, data = post(server, "/api/analyze", {"text": text})
    assert status == 200 and data["truncated"] is not None
    assert time.perf_counter() - start < 1.0


# --- concurrency, queue, timeouts ------------------------------------------------------------------


def test_two_hundred_simultaneous_requests_are_all_answered(server) -> None:
    n = 200
    gate, results = threading.Barrier(n), [None] * n
    body = json.dumps({"text": "abc abc"}).encode()

    def one(i: int) -> None:
        gate.wait()
        try:
            path = "/api/analyze" if i % 2 else "/api/info"
            results[i] = request(server, "POST" if i % 2 else "GET", path, body if i % 2 else b"", timeout=30)[0]
        except OSError as err:
            results[i] = repr(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) <= {200, 503}, [r for r in results if r not in (200, 503)][:5]
    assert results.count(200) >= n // 2  # every info request, and the analyses the queue took


def test_a_full_queue_is_answered_503(char_parts, serve) -> None:
    explainer = Explainer(*char_parts)
    for _ in range(MAX_WAITING):
        explainer.waiting.acquire()
    with serve(explainer) as server:
        status, headers, body = request(server, "POST", "/api/analyze", b'{"text": "abc"}')
        assert status == 503 and headers["Retry-After"] == "1" and "busy" in strict_json(body)["error"]
        assert request(server, "GET", "/api/info")[0] == 200  # the page and info need no model
    explainer.waiting.release()
    assert explainer.analyze({"text": "abc"})["ids"]


def test_idle_connections_are_closed(server) -> None:
    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        start = time.perf_counter()
        assert sock.recv(1) == b""  # the server hung up on the silent client
        assert time.perf_counter() - start < 3
    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        sock.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50\r\n\r\n{" % host_of(server).encode())  # a body that stops coming
        assert sock.recv(65536) == b""


# --- addresses -----------------------------------------------------------------------------------


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback_is_served(char_parts, serve) -> None:
    with serve(Explainer(*char_parts), host="::1") as server:
        port = server.server_address[1]
        assert server.url == f"http://[::1]:{port}/"
        assert request(server, "GET", "/api/info")[0] == 200
        assert request(server, "GET", "/api/info", host=f"localhost:{port}")[0] == 200
        assert request(server, "GET", "/api/info", host=f"127.0.0.1:{port}")[0] == 421


def test_bind_errors_are_config_errors(char_parts) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.1", "example.com"):
        with pytest.raises(ConfigError, match="loopback"):
            ExplainerServer(host, 0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: .*another port"):
            make_server(Explainer(*char_parts), port=port)


def test_cli_port_in_use_is_one_line_and_exit_code_2(capsys) -> None:
    from fmblocks.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explain", "--port", str(port), "--checkpoint", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err
