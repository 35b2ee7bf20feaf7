"""A faulty HTTP proxy in front of the live server, for outage tests (stdlib + httpx).

It forwards requests, or answers 503 for a while, or drops the response of a request it
did forward (the server committed, the client never heard), and it can be stopped and
started again on the same port like a restarting server. One request per connection.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.procs import free_port

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultyProxy:
    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.unavailable_until = 0.0  # answer 503 before this time.monotonic()
        self.posts_unavailable = False  # answer 503 to every POST
        self.drop_responses = 0  # forward the next N requests but close without answering
        self.forwarded = 0
        self.refused = 0
        self._http = httpx.Client(base_url=upstream, timeout=60)
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> FaultyProxy:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail_for(self, seconds: float) -> None:
        self.unavailable_until = time.monotonic() + seconds

    def close(self) -> None:
        self.stop()
        self._http.close()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes] | None:
        """(status, headers, body) to send back, or None to hang up without answering."""
        if time.monotonic() < self.unavailable_until or (method == "POST" and self.posts_unavailable):
            with self._lock:
                self.refused += 1
            return 503, {"Content-Type": "application/json"}, b'{"detail": "unavailable (test proxy)"}'
        response = self._http.request(method, path, headers=headers, content=body)
        with self._lock:
            self.forwarded += 1
            if self.drop_responses > 0:
                self.drop_responses -= 1
                return None
        out = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
        return response.status_code, out, response.content


def _handler(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            reply = proxy.answer(self.command, self.path, headers, body)
            if reply is None:
                self.close_connection = True
                return
            status, out, content = reply
            self.send_response(status)
            for key, value in out.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _any  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    return Handler
