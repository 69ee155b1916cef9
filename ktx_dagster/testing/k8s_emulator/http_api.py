"""The REST layer: Kubernetes API paths and verbs over HTTP, watches and logs."""

from __future__ import annotations

import copy
import http.server
import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from ktx_dagster.testing.k8s_emulator.objects import ApiError, RESOURCES, _SUBRESOURCES, _now
from ktx_dagster.testing.k8s_emulator.selectors import match_field_selector, match_label_selector

if TYPE_CHECKING:
    from ktx_dagster.testing.k8s_emulator.emulator import KubeEmulator


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a watch closed, a step process killed) is normal traffic for
        # an API server, not a traceback on stderr; anything else is still printed.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def _parse_path(path: str) -> tuple[str, str | None, str | None, str | None] | None:
    """-> (plural, namespace, name, subresource) or None if not a resource path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        gv, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in RESOURCES and RESOURCES[rest[2]][2]:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    if plural not in RESOURCES or RESOURCES[plural][0] != gv:
        raise ApiError(404, f"the server could not find the requested resource ({gv}/{plural})")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and (plural, sub) not in _SUBRESOURCES:
        raise ApiError(404, f"the server could not find the requested resource ({plural}/{sub})")
    return plural, namespace, name, sub


def _make_handler(emu: KubeEmulator):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ktx-kube-emulator/1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        # -- responses
        def _send_json(self, code: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_text(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _start_chunked(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _end_chunked(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                return yaml.safe_load(raw)

        # -- dispatch
        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            emu.requests.append((method, self.path))
            try:
                if method == "GET" and split.path in ("/version", "/version/"):
                    return self._send_json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-ktx-emulator",
                                                 "gitCommit": "", "gitTreeState": "clean", "buildDate": _now(),
                                                 "goVersion": "", "compiler": "gc", "platform": "linux/amd64"})
                if method == "GET" and split.path in ("/api", "/api/"):
                    return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"]})
                if method == "GET" and split.path in ("/apis", "/apis/"):
                    groups = sorted({gv for gv, _k, _n in RESOURCES.values() if "/" in gv})
                    return self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                        {"name": g.split("/")[0], "versions": [{"groupVersion": g, "version": g.split("/")[1]}],
                         "preferredVersion": {"groupVersion": g, "version": g.split("/")[1]}} for g in groups]})
                parsed = _parse_path(split.path)
                if parsed is None:
                    raise ApiError(404, f"the server could not find the requested resource {split.path}")
                plural, ns, name, sub = parsed
                if name is None:
                    return self._collection(method, plural, ns, query)
                if sub == "log":
                    return self._log(ns, name, query)
                return self._object(method, plural, ns, name, sub, query)
            except ApiError as exc:
                self._send_json(exc.code, exc.status())
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # pragma: no cover - emulator bug
                self._send_json(500, ApiError(500, f"emulator error: {exc!r}").status())

        do_GET = lambda self: self._handle("GET")  # noqa: E731
        do_POST = lambda self: self._handle("POST")  # noqa: E731
        do_PUT = lambda self: self._handle("PUT")  # noqa: E731
        do_PATCH = lambda self: self._handle("PATCH")  # noqa: E731
        do_DELETE = lambda self: self._handle("DELETE")  # noqa: E731

        def _collection(self, method: str, plural: str, ns: str | None, query: Mapping[str, str]) -> None:
            gv, kind, namespaced = RESOURCES[plural]
            ls, fs = query.get("labelSelector"), query.get("fieldSelector")
            if method == "GET" and query.get("watch") in ("true", "1", "True"):
                return self._watch(plural, ns, query)
            if method == "GET":
                with emu._lock:
                    items = [copy.deepcopy(o) for o in emu._select(plural, ns, ls, fs)]
                    rv = str(emu._last_rv)
                return self._send_json(200, {"apiVersion": gv, "kind": f"{kind}List", "metadata": {"resourceVersion": rv}, "items": items})
            if method == "POST":
                body = self._body()
                if not isinstance(body, Mapping):
                    raise ApiError(400, "request body must be a JSON object")
                if query.get("dryRun"):
                    return self._send_json(201, body)
                return self._send_json(201, emu.create(plural, ns, body))
            if method == "DELETE":
                body = self._body() or {}
                with emu._lock:
                    victims = [o["metadata"]["name"] for o in emu._select(plural, ns, ls, fs)]
                deleted = []
                for n in victims:
                    try:
                        deleted.append(emu.delete(plural, ns, n, body.get("propagationPolicy") or query.get("propagationPolicy")))
                    except ApiError:
                        pass
                return self._send_json(200, {"apiVersion": gv, "kind": f"{kind}List", "metadata": {}, "items": deleted})
            raise ApiError(405, f"method {method} not allowed on a collection")

        def _object(self, method: str, plural: str, ns: str | None, name: str, sub: str | None, query: Mapping[str, str]) -> None:
            gv, kind, namespaced = RESOURCES[plural]
            if not namespaced:
                ns = None
            if method == "GET":
                obj = emu.get(plural, ns, name)
                if obj is None:
                    raise ApiError(404, f'{plural}{"." + gv.split("/")[0] if "/" in gv else ""} "{name}" not found')
                return self._send_json(200, obj)
            if method == "POST" and plural == "pods" and sub == "eviction":
                # policy/v1 Eviction: what `kubectl drain` sends; the grace period may come with it.
                body = self._body() or {}
                grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
                emu.disrupt(ns or "default", name, grace=grace)
                return self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                             "status": "Success", "code": 201})
            if method == "PUT":
                return self._send_json(200, emu.replace(plural, ns, name, self._body() or {}, sub))
            if method == "PATCH":
                return self._send_json(200, emu.patch(plural, ns, name, self._body(), self.headers.get("Content-Type", ""), sub))
            if method == "DELETE":
                body = self._body() or {}
                obj = emu.delete(plural, ns, name, body.get("propagationPolicy") or query.get("propagationPolicy"))
                return self._send_json(200, obj)
            raise ApiError(405, f"method {method} not allowed")

        def _log(self, ns: str | None, name: str, query: Mapping[str, str]) -> None:
            pod = emu.get("pods", ns, name)
            if pod is None:
                raise ApiError(404, f'pods "{name}" not found')
            container = query.get("container")
            names = [c["name"] for c in pod["spec"].get("containers") or []]
            if container and container not in names and container not in [c["name"] for c in pod["spec"].get("initContainers") or []]:
                raise ApiError(400, f"container {container} is not valid for pod {name}")
            rt = emu._runtimes.get((ns, name))
            if rt is None or not rt.started:
                cname = container or names[0]
                raise ApiError(400, f'container "{cname}" in pod "{name}" is waiting to start: ContainerCreating')
            timestamps = query.get("timestamps") in ("true", "1", "True")
            tail = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None

            def render(lines: list[tuple[str, str]]) -> str:
                return "".join((f"{ts} {line}" if timestamps else line) for ts, line in lines)

            with rt.cond:
                lines = list(rt.lines)
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            if query.get("follow") in ("true", "1", "True"):
                self._start_chunked("text/plain")
                sent = len(rt.lines)
                if lines:
                    self._chunk(render(lines).encode())
                while True:
                    with rt.cond:
                        if len(rt.lines) == sent and not rt.finished:
                            rt.cond.wait(timeout=0.5)
                        new = rt.lines[sent:]
                        sent = len(rt.lines)
                        done = rt.finished and not new
                    if new:
                        self._chunk(render(new).encode())
                    if done or emu._stopping.is_set():
                        break
                return self._end_chunked()
            text = render(lines)
            if limit is not None:
                text = text.encode()[:limit].decode("utf-8", errors="ignore")
            return self._send_text(200, text)

        def _watch(self, plural: str, ns: str | None, query: Mapping[str, str]) -> None:
            ls, fs = query.get("labelSelector"), query.get("fieldSelector")
            timeout = float(query.get("timeoutSeconds") or 1800)
            deadline = time.monotonic() + timeout
            rv_param = query.get("resourceVersion")

            def matches(p: str, obj: Mapping[str, Any]) -> bool:
                return (
                    p == plural
                    and (ns is None or obj["metadata"].get("namespace") == ns)
                    and (not ls or match_label_selector(obj["metadata"].get("labels"), ls))
                    and (not fs or match_field_selector(obj, fs))
                )

            with emu._lock:
                if rv_param not in (None, "", "0"):
                    since = int(rv_param)
                    oldest = emu._history[0][0] if emu._history else emu._last_rv + 1
                    if since < oldest - 1 and since < emu._last_rv:
                        initial = None
                        expired = True
                    else:
                        initial, expired = [], False
                else:
                    since = emu._last_rv
                    initial = [("ADDED", copy.deepcopy(o)) for o in emu._select(plural, ns, ls, fs)]
                    expired = False
            self._start_chunked("application/json")
            if expired:
                self._chunk((json.dumps({"type": "ERROR", "object": ApiError(410, "too old resource version").status()}) + "\n").encode())
                return self._end_chunked()
            for etype, obj in initial or []:
                self._chunk((json.dumps({"type": etype, "object": obj}) + "\n").encode())
            cursor = since
            while not emu._stopping.is_set() and time.monotonic() < deadline:
                with emu._lock:
                    pending = [(rv, p, t, o) for (rv, p, t, o) in emu._history if rv > cursor]
                    if not pending:
                        emu._changed.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                        continue
                    cursor = pending[-1][0]
                for _rv, p, etype, obj in pending:
                    if matches(p, obj):
                        self._chunk((json.dumps({"type": etype, "object": obj}) + "\n").encode())
            self._end_chunked()

    return Handler
