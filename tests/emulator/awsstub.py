"""A real HTTP server standing in for the two AWS endpoints moto cannot play in-process: the API Gateway
management API (moto's concatenates posts and never answers 410) and Lambda's Invoke (moto runs no code
without Docker). Handler tests point ``SOCKLESS_AWS__*`` at it and read what the handlers sent.

Like API Gateway, a connection must be ``open``ed before posts succeed; any other id answers 410.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@dataclass
class Invocation:
    function: str
    kind: str
    payload: Any


@dataclass
class Recorder:
    open: set[str] = field(default_factory=set)
    frames: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    deleted: list[str] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    gone_posts: list[str] = field(default_factory=list)
    # Connections that answer 410 this many times before they count as open (a welcome racing the upgrade).
    opening: dict[str, int] = field(default_factory=dict)
    # Functions whose invocations Lambda refuses (429 TooManyRequestsException: over its concurrency).
    throttled: set[str] = field(default_factory=set)
    # Connections whose next posts this many times answer 429 LimitExceededException (API Gateway throttling).
    post_throttled: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def json_frames(self, connection_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(f) for f in self.frames.get(connection_id, [])]

    def events(self, connection_id: str) -> list[str]:
        return [str(f.get("event")) for f in self.json_frames(connection_id)]

    def invoked(self, function: str) -> list[Any]:
        with self.lock:
            return [i.payload for i in self.invocations if i.function == function]


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _gone(self) -> None:
            self._reply(
                410, b'{"message":""}', {"x-amzn-ErrorType": "GoneException", "Content-Type": "application/json"}
            )

        def _connection(self) -> str | None:
            if "/@connections/" not in self.path:
                return None
            return unquote(self.path.rsplit("/@connections/", 1)[1])

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _is_open(self, connection_id: str) -> bool:
            with recorder.lock:
                left = recorder.opening.get(connection_id, 0)
                if left > 0:
                    recorder.opening[connection_id] = left - 1
                    return False
                return connection_id in recorder.open

        def do_POST(self) -> None:
            body = self._body()
            connection_id = self._connection()
            if connection_id is not None:
                with recorder.lock:
                    throttles = recorder.post_throttled.get(connection_id, 0)
                    if throttles > 0:
                        recorder.post_throttled[connection_id] = throttles - 1
                if throttles > 0:
                    error = {"x-amzn-ErrorType": "LimitExceededException", "Content-Type": "application/json"}
                    self._reply(429, b'{"message":"Rate exceeded"}', error)
                    return
                if not self._is_open(connection_id):
                    with recorder.lock:
                        recorder.gone_posts.append(connection_id)
                    self._gone()
                    return
                with recorder.lock:
                    recorder.frames[connection_id].append(body)
                self._reply(200)
                return
            if "/functions/" in self.path:
                function = unquote(self.path.split("/functions/", 1)[1].split("/", 1)[0])
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                if function in recorder.throttled:
                    body = b'{"message":"Rate Exceeded.","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}'
                    headers = {"x-amzn-ErrorType": "TooManyRequestsException", "Content-Type": "application/json"}
                    self._reply(429, body, headers)
                    return
                with recorder.lock:
                    recorder.invocations.append(Invocation(function, kind, json.loads(body or b"null")))
                self._reply(202 if kind == "Event" else 200, b"" if kind == "Event" else b"null")
                return
            self._reply(404)

        def do_GET(self) -> None:
            connection_id = self._connection()
            if connection_id is None or not self._is_open(connection_id):
                self._gone()
                return
            body = b'{"ConnectedAt":"2024-11-11T11:35:24.553Z","Identity":{"SourceIp":"203.0.113.10"}}'
            self._reply(200, body, {"Content-Type": "application/json"})

        def do_DELETE(self) -> None:
            connection_id = self._connection()
            with recorder.lock:
                if connection_id is None or connection_id not in recorder.open:
                    gone = True
                else:
                    gone = False
                    recorder.open.discard(connection_id)
                    recorder.deleted.append(connection_id)
            if gone:
                self._gone()
            else:
                self._reply(204)

    return Handler


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A webhook endpoint on a free port: records every POST; answers the scripted statuses, then 200."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.hooks.append(Hook(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def events(self) -> list[dict[str, Any]]:
        return [event for hook in self.hooks for event in json.loads(hook.body)["events"]]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class AwsStub:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.recorder))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AwsStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
