"""A fault-injecting HTTP proxy in front of an S3 endpoint (the loopback moto server), for tests.

A real socket server on 127.0.0.1: the code under test talks to it as its S3 endpoint
(`KTX_S3_ENDPOINT_URL`), and it passes every request through to the real endpoint unless the
test scheduled a fault for it:

    with faulty_s3_proxy(moto_endpoint) as proxy:
        proxy.inject(Fault("error", status=503, code="SlowDown", method="PUT", times=2))
        proxy.inject(Fault("delay", seconds=3, method="GET"))              # a slow response
        proxy.inject(Fault("cut", after_bytes=100, method="PUT"))          # an upload cut mid-body
        ... run the code against proxy.url ...
        proxy.seen   # every request: method, path, what was done to it, botocore's attempt number

Faults are matched in the order they were injected; each applies to `times` requests (None:
every matching request) and is then used up. "error" answers with an S3 error document
without bothering the endpoint; "delay" waits, then passes the request through; "cut" sends
the request line, headers and the first `after_bytes` of the body to the endpoint, then drops
both connections: the endpoint sees a truncated upload, the client a connection closed before
any response.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ACTIONS = ("error", "delay", "cut")
# Hop-by-hop headers: about one connection, never forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect",
               "proxy-connection"}


@dataclass
class Fault:
    action: str  # "error" | "delay" | "cut"
    method: str | None = None  # match: HTTP method, any if None
    path: str | None = None  # match: regular expression searched in the path and query
    times: int | None = 1  # requests it applies to; None: all of them
    status: int = 503  # error: HTTP status and S3 error code
    code: str = "SlowDown"
    seconds: float = 0.0  # delay
    after_bytes: int = 0  # cut: body bytes that reach the endpoint

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"Fault action {self.action!r} is not one of {ACTIONS}")

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not self.path or re.search(self.path, path) is not None

    def describe(self) -> str:
        if self.action == "error":
            return f"error {self.status} {self.code}"
        if self.action == "delay":
            return f"delay {self.seconds}s"
        return f"cut after {self.after_bytes} bytes"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    action: str  # "pass" or Fault.describe()
    attempt: str  # botocore's `amz-sdk-request` header ("attempt=2; max=8"), "" if absent
    body_bytes: int


class FaultyS3Proxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-s3-proxy", daemon=True)

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """No more faults: everything passes through (what was seen is kept)."""
        with self._lock:
            self._faults.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if (not method or s.method == method)
                    and (not path or re.search(path, s.path))]

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _error_document(status: int, code: str, path: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>injected by the test's fault proxy (HTTP {status})</Message>"
        f"<Resource>{path}</Resource><RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>"
    ).encode()


def _handler_for(proxy: FaultyS3Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

        def log_message(self, format: str, *args) -> None:  # quiet: the test reads proxy.seen
            pass

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raw = bytearray()  # forwarded as sent: the chunk framing is the body's own
                while True:
                    line = self.rfile.readline()
                    raw += line
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while True:  # trailers, up to the blank line
                            trailer = self.rfile.readline()
                            raw += trailer
                            if trailer in (b"\r\n", b"\n", b""):
                                return bytes(raw)
                    raw += self.rfile.read(size + 2)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _forward_headers(self, conn: http.client.HTTPConnection) -> None:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP or name.lower() == "transfer-encoding":
                    conn.putheader(name, value)
            conn.endheaders()

        def _proxy(self) -> None:
            body = self._read_body()
            fault = proxy._take(self.command, self.path)
            proxy._record(Seen(self.command, self.path, fault.describe() if fault else "pass",
                               self.headers.get("amz-sdk-request", ""), len(body)))
            if fault is not None and fault.action == "error":
                self._send_error(fault)
                return
            if fault is not None and fault.action == "delay":
                time.sleep(fault.seconds)
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                self._forward_headers(conn)
                if fault is not None and fault.action == "cut":
                    conn.send(body[: fault.after_bytes])
                    self._drop_client()
                    return
                conn.send(body)
                response = conn.getresponse()
                payload = response.read()
            finally:
                conn.close()
            try:
                self.send_response_only(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and (name.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (a delayed request)

        def _send_error(self, fault: Fault) -> None:
            document = _error_document(fault.status, fault.code, self.path)
            self.send_response_only(fault.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("x-amz-request-id", uuid.uuid4().hex[:16])
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(document)

        def _drop_client(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

    return Handler


@contextmanager
def faulty_s3_proxy(upstream: str) -> Iterator[FaultyS3Proxy]:
    """A FaultyS3Proxy on a free loopback port in front of `upstream`; yields it, started."""
    proxy = FaultyS3Proxy(upstream)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
