"""A real OpenAI-compatible HTTP server for tests: ``POST /v1/chat/completions`` on 127.0.0.1.

    with OpenAIStub(responder=lambda messages: "[[8]]", fail_first=1, fail_status=429) as stub:
        OpenAIChat(stub.url, "judge").chat(...)
        assert len(stub.requests) == ...

It listens on a free port in a daemon thread (``ThreadingHTTPServer``: one thread per request, so
concurrent clients overlap as with a real server) and answers in OpenAI's response format. Another process
can use it too (a CLI run in a subprocess): pass it ``stub.url``.

With :func:`responder_from_backend` it serves a real model, e.g. :class:`~posttrain.chat_backends.LocalChat`
over the tiny HF model: an in-process OpenAI-compatible server serving a small HF model.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/v1/chat/completions"


class StubHTTPError(Exception):
    """Raised by a responder to answer one request with an HTTP error (OpenAI's error body)."""

    def __init__(self, status: int, message: str = "stub error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def echo(messages: list[dict]) -> str:
    """The default reply: the last user message, so each reply shows which request it answers."""
    return f"echo: {messages[-1]['content']}"


def responder_from_backend(chat_backend) -> Callable:
    """A responder that asks ``chat_backend`` (with the request's temperature and ``max_tokens``), one
    request at a time: a local model is neither thread-safe nor faster when called from several threads."""
    lock = threading.Lock()

    def respond(messages: list[dict], *, request: dict) -> str:
        with lock:
            (reply,) = chat_backend.chat(
                [messages],
                temperature=request.get("temperature", 1.0),
                max_new_tokens=request.get("max_tokens") or 1024,
            )
        return reply

    return respond


class OpenAIStub:
    """The server, started and stopped as a context manager. All arguments are keywords:

    - ``responder(messages) -> str``: the reply text (default :func:`echo`). A responder that takes a
      keyword ``request`` also gets the whole JSON body; one that raises :class:`StubHTTPError` answers
      that request with the error.
    - ``fail_first``: the first N requests (in arrival order) get ``fail_status`` (default 500) with
      ``fail_body`` (default OpenAI's error JSON; e.g. ``fail_status=200, fail_body="not json"`` for a
      malformed reply) and, when ``retry_after`` is set, a ``Retry-After`` header of that many seconds.
    - ``delay``: seconds to wait before answering, a number or ``delay(n)`` of the 0-based request number
      (``lambda n: 5.0 if n == 0 else 0.0`` makes only the first request slow).
    - ``require_key``: answer 401 unless ``Authorization: Bearer <require_key>``.
    - ``model``: answer 404 (model not found) to requests for another model; default any model.
    - ``echo_auth_status``: answer every request with this status and an error message that quotes the
      request's ``Authorization`` header (a server that echoes the API key back).

    Attributes: ``url`` (``http://127.0.0.1:PORT/v1``), ``requests`` (one ``{"path", "headers", "body"}``
    dict per request, in arrival order; ``body`` is the parsed JSON or None), ``max_in_flight`` (the most
    requests answered at once).
    """

    def __init__(
        self,
        *,
        responder: Callable[..., str] | None = None,
        fail_first: int = 0,
        fail_status: int = 500,
        fail_body: str | None = None,
        retry_after: float | None = None,
        delay: float | Callable[[int], float] = 0.0,
        require_key: str | None = None,
        model: str | None = None,
        echo_auth_status: int | None = None,
    ):
        self.responder = responder or echo
        self.fail_first, self.fail_status, self.fail_body = fail_first, fail_status, fail_body
        self.retry_after, self.delay = retry_after, delay
        self.require_key, self.model = require_key, model
        self.echo_auth_status = echo_auth_status
        self._wants_request = "request" in inspect.signature(self.responder).parameters
        self.requests: list[dict] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> OpenAIStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                stub._handle(self)

            def log_message(self, *args):  # no access log on stderr
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # a request still sleeping in ``delay`` does not block the exit
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        # a short poll: ``shutdown`` waits for the loop to notice
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # -------------------------------------------------------------------------------------- serving

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            n = len(self.requests)
            self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            wait = self.delay(n) if callable(self.delay) else self.delay
            if wait:
                time.sleep(wait)
            status, payload, headers = self._answer(n, handler, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        finally:
            # counted out before the reply is written: once the client has the reply its thread may send
            # the next request, which a loaded machine can start handling before this thread runs again
            with self._lock:
                self._in_flight -= 1
        try:
            handler.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            pass

    def _answer(self, n: int, handler, body) -> tuple[int, dict | bytes, dict[str, str]]:
        if handler.path.rstrip("/") != PATH:
            return _error(404, f"no route {handler.path}")
        if self.echo_auth_status is not None:  # a careless server: its error quotes the request's key
            received = handler.headers.get("Authorization")
            return _error(self.echo_auth_status, f"rejected request with Authorization: {received}")
        if (
            self.require_key is not None
            and handler.headers.get("Authorization") != f"Bearer {self.require_key}"
        ):
            return _error(401, "Incorrect API key provided")
        if n < self.fail_first:
            headers = {"Retry-After": f"{self.retry_after:g}"} if self.retry_after is not None else {}
            if self.fail_body is not None:
                return self.fail_status, self.fail_body.encode(), headers
            status, payload, _ = _error(self.fail_status, f"stub failure {n + 1} of {self.fail_first}")
            return status, payload, headers
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "the body must be JSON with a 'messages' list")
        if self.model is not None and body.get("model") != self.model:
            return _error(404, f"The model '{body.get('model')}' does not exist")
        try:
            if self._wants_request:
                text = self.responder(body["messages"], request=body)
            else:
                text = self.responder(body["messages"])
        except StubHTTPError as exc:
            status, payload, _ = _error(exc.status, exc.message)
            return status, payload, exc.headers
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        reply = {
            "id": f"chatcmpl-stub-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            # word counts stand in for token counts
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_words + len(text.split()),
            },
        }
        return 200, reply, {}


def _error(status: int, message: str) -> tuple[int, dict, dict[str, str]]:
    return status, {"error": {"message": message, "type": "stub_error", "code": status}}, {}
