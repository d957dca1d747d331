"""A real HTTP server on a free local port for webhook tests: `answer(path, headers, body)` returns the
status of each POST. Threaded, so a slow answer does not hold up the others; `close()` refuses later
connections at once (a leftover delivery of another test must not hang)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from standardwebhooks import Webhook, WebhookVerificationError


def verify_standard(secrets: list[str] | str, headers, body: bytes) -> dict | None:
    """What a receiver does with the official `standardwebhooks` package (issue 13.1): the parsed body when one
    of the receiver's secrets verifies the delivery (timestamp within 5 minutes of the wall clock), else None."""
    wanted = {k.lower(): v for k, v in dict(headers.items()).items()}
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        try:
            return Webhook(secret).verify(body, wanted)
        except WebhookVerificationError:
            continue
    return None


class LocalReceiver:
    def __init__(self, answer: Callable[[str, object, bytes], int], path: str = "/hook"):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = answer(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RawReceiver:
    """A TCP server on 127.0.0.1 for receivers that misbehave at the byte level: after reading each request,
    `respond(conn, closed)` writes whatever it likes (`closed` is set once the test is over)."""

    def __init__(self, respond: Callable, path: str = "/hook"):
        import socket

        self.respond, self.closed = respond, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests += 1
                self.respond(conn, self.closed)
            except OSError:
                pass

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
