"""The KServe v2 protocol over HTTP/REST, served by MOSEL (stdlib ThreadingHTTPServer).

(Longer than ~400 lines: one request handler with its routes, body decoding — JSON, Triton's
binary extension, gzip/deflate — and error mapping, which only this front uses.)

    front = start_http(selection_servicer_or_stub_or_core, host="127.0.0.1", port=8000)
    ...
    front.stop()

Endpoints (a model path may name a version: /v2/models/{model}/versions/1/...):
    GET  /v2/health/live, /v2/health/ready          200 when live / ready (else 503)
    GET  /v2                                        server metadata (extensions)
    GET  /v2/models/{model}                         model metadata
    GET  /v2/models/{model}/ready                   200 when ready (404 unknown, 503 not ready)
    GET  /v2/models/{model}/config                  Triton model configuration (JSON)
    GET  /v2/models/{model}/stats, /v2/models/stats Triton statistics
    POST /v2/models/{model}/infer                   one job; JSON tensors, or Triton's binary
                                                    tensor data extension
An inference body is {"id", "parameters", "inputs": [{"name", "datatype", "shape", "data"}],
"outputs": [{"name", "parameters": {"binary_data": bool}}]}; `data` is flat or nested
row-major. With the binary extension the JSON is followed by the raw bytes of the inputs
that say "parameters": {"binary_data_size": N}, and the request carries the header
Inference-Header-Content-Length (the JSON's length). Outputs come back as JSON `data`, or
as binary when asked ("binary_data" per output, or "binary_data_output" for all).

Errors: {"error": message} with the HTTP status of the gRPC code mosel.v1 would send
(INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503,
DEADLINE_EXCEEDED 504, ...).
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import grpc

from mosel.errors import InvalidArgument, MoselError, check_length, status_of
from mosel.frontends import conversions as conv
from mosel.frontends.core import KServeCore

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
IDLE_TIMEOUT_S = 60.0

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class HTTPError(MoselError):
    """A refusal of the HTTP layer itself (unknown path, wrong method, body too large)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def http_status(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, HTTPError):
        return exc.status, exc.message
    code, message = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.error("HTTP request failed", exc_info=exc)
    return HTTP_STATUS.get(code, 500), message


# ---- inference bodies ------------------------------------------------------------------------
def _object(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def parse_infer_body(body: bytes, header_length: int | None):
    """(id, parameters, inputs, requested outputs as [(name, binary or None)]) of an inference body."""
    if header_length is None:
        header_length = len(body)
    if not 0 <= header_length <= len(body):
        raise InvalidArgument(HEADER_LENGTH, f"{header_length} is outside the body of {len(body)} bytes")
    try:
        doc = json.loads(body[:header_length])
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument("body", f"not valid JSON: {exc}") from None
    doc = _object(doc, "body")
    request_id = doc.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument("id", "must be a string")
    params = _object(doc.get("parameters"), "parameters")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidArgument("inputs", "must be a list of tensors")
    binary = memoryview(body)[header_length:]
    offset = 0
    inputs = []
    for i, t in enumerate(raw_inputs):
        t = _object(t, f"inputs[{i}]")
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"inputs[{i}].name", "missing")
        check_length(name, f"inputs[{i}].name")  # echoed in every refusal below
        field = f"inputs[{name}]"
        datatype = t.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidArgument(f"{field}.datatype", "missing")
        conv.check_datatype(datatype, f"{field}.datatype")
        shape = t.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidArgument(f"{field}.shape", "must be a list of integers")
        shape = conv.check_shape(shape, f"{field}.shape")
        size = _object(t.get("parameters"), f"{field}.parameters").get("binary_data_size")
        if size is not None:
            if "data" in t:
                raise InvalidArgument(f"{field}.data", "given together with binary_data_size")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidArgument(f"{field}.parameters[binary_data_size]", "must be a byte count >= 0")
            if offset + size > len(binary):
                raise InvalidArgument(f"{field}.parameters[binary_data_size]",
                                      f"{size} bytes at offset {offset} run past the {len(binary)} binary bytes")
            chunk = binary[offset:offset + size]
            offset += size
            conv.check_raw_size(datatype, shape, chunk, f"{field}.parameters[binary_data_size]")
            inputs.append(conv.InputTensor(name, datatype, shape, raw=chunk, data_field=f"{field} binary data"))
        elif "data" in t:
            inputs.append(conv.InputTensor(name, datatype, shape,
                                           array=conv.array_from_json(datatype, shape, t["data"], f"{field}.data")))
        else:
            raise InvalidArgument(f"{field}.data", "missing (give data, or binary_data_size and the bytes)")
    if offset != len(binary):
        raise InvalidArgument("body", f"{len(binary) - offset} binary bytes after the JSON are claimed by no input")
    outputs = []
    raw_outputs = doc.get("outputs", [])
    if not isinstance(raw_outputs, list):
        raise InvalidArgument("outputs", "must be a list")
    for i, o in enumerate(raw_outputs):
        o = _object(o, f"outputs[{i}]")
        name = o.get("name")
        if not isinstance(name, str):
            raise InvalidArgument(f"outputs[{i}].name", "missing")
        check_length(name, f"outputs[{i}].name")
        oparams = _object(o.get("parameters"), f"outputs[{name}].parameters")
        if "classification" in oparams:
            raise InvalidArgument(f"outputs[{name}].parameters[classification]", "not supported")
        wants_binary = oparams.get("binary_data")
        if wants_binary is not None and not isinstance(wants_binary, bool):
            raise InvalidArgument(f"outputs[{name}].parameters[binary_data]", "must be true or false")
        outputs.append((name, wants_binary))
    return request_id, params, inputs, outputs


def infer_response_body(outcome, requested, binary_default: bool) -> tuple[bytes, int | None]:
    """(body, JSON length when binary output follows it, else None)."""
    binary_of = {name: flag for name, flag in requested}
    doc = {"model_name": outcome.model, "model_version": "1", "outputs": [], "parameters": outcome.parameters}
    if outcome.id:
        doc["id"] = outcome.id
    chunks = []
    for out in outcome.outputs:
        entry = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        flag = binary_of.get(out.name)
        if flag if flag is not None else binary_default:
            raw = out.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = out.array.reshape(-1).tolist()
        doc["outputs"].append(entry)
    head = json.dumps(doc).encode()
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


# ---- server ----------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, front: "KServeHTTPServer"):
        self.front = front
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mosel-kserve"
    timeout = IDLE_TIMEOUT_S

    def setup(self):
        super().setup()
        # headers and body leave in two writes; with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms on Linux) on a kept-alive connection (docs/results.md, bench fronts)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.front._opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.front._closed(self.connection)

    def log_message(self, fmt, *args):  # the access log goes to debug, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ---- plumbing -----------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        front = self.server.front
        front._begin()
        body = None
        try:
            try:
                body = self._read_body()
                status, payload, headers = front.route(method, self.path, self.headers, body)
            except (ConnectionError, socket.timeout):
                raise
            except Exception as exc:  # noqa: BLE001 - every error is a JSON answer
                code, message = http_status(exc)
                status, payload, headers = code, json.dumps({"error": message}).encode(), {}
                if body is None:
                    self.close_connection = True  # the body was not read: the connection is out of step
            self._send(status, payload, headers)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        finally:
            if front.stopping:
                self.close_connection = True
            front._end()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HTTPError(411, "chunked request bodies are not supported: send Content-Length")
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise HTTPError(400, f"Content-Length {length!r} is not a number") from None
        if n < 0:
            raise HTTPError(400, "negative Content-Length")
        if n > self.server.front.max_body_bytes:
            raise HTTPError(413, f"body of {n} bytes exceeds the limit of {self.server.front.max_body_bytes}")
        body = self.rfile.read(n)
        if len(body) != n:
            raise ConnectionError("client closed the connection mid-body")
        return body

    def _send(self, status: int, payload: bytes, headers: dict) -> None:
        self.send_response(status)
        content_type = headers.pop("Content-Type", "application/json")
        if payload or status != 200:
            self.send_header("Content-Type", content_type)
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


class KServeHTTPServer:
    """The HTTP front; `start()` binds and serves from a thread, `stop()` drains and closes."""

    def __init__(self, core: KServeCore, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.core = core
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.stopping = False
        self._inflight = 0
        self._connections: set[socket.socket] = set()
        self._cond = threading.Condition()
        self._httpd = _Server((host, port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "KServeHTTPServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="kserve-http", daemon=True)
        self._thread.start()
        log.info("KServe v2 HTTP front on %s", self.url)
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish (up to grace_s), close every connection."""
        if self.stopping:
            return
        self.stopping = True
        self._httpd.shutdown()
        self._httpd.server_close()
        deadline = time.monotonic() + grace_s
        with self._cond:
            while self._inflight and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            idle = list(self._connections)
        for conn in idle:  # idle keep-alive connections: wake their threads so they end
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- bookkeeping (called by handlers) -------------------------------------------------------
    def _begin(self) -> None:
        with self._cond:
            self._inflight += 1

    def _end(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def _opened(self, conn) -> None:
        with self._cond:
            self._connections.add(conn)

    def _closed(self, conn) -> None:
        with self._cond:
            self._connections.discard(conn)

    # ---- routes ---------------------------------------------------------------------------------
    def route(self, method: str, path: str, headers, body: bytes) -> tuple[int, bytes, dict]:
        parts = [unquote(p) for p in urlsplit(path).path.split("/") if p]
        if not parts or parts[0] != "v2":
            raise HTTPError(404, f"unknown path {path!r}; the KServe v2 API lives under /v2")
        rest = parts[1:]
        if self.stopping and rest != ["health", "live"]:
            raise HTTPError(503, "the server is shutting down")
        if not rest:
            return self._get(method, lambda: _json(self.core.server_metadata()))
        if rest[0] == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
            def health():
                ok = self.core.live() if rest[1] == "live" else self.core.ready()
                if not ok:
                    raise HTTPError(503, f"server not {rest[1]}")
                return 200, b"", {}
            return self._get(method, health)
        if rest[0] != "models" or len(rest) < 2:
            raise HTTPError(404, f"unknown path {path!r}")
        if rest[1:] == ["stats"]:
            return self._get(method, lambda: _json(self.core.statistics()))
        model, tail = rest[1], rest[2:]
        version = ""
        if tail[:1] == ["versions"]:
            if len(tail) < 2:
                raise HTTPError(404, f"unknown path {path!r}: a version is missing after /versions")
            version, tail = tail[1], tail[2:]
        action = tail[0] if len(tail) == 1 else ("" if not tail else None)
        if action == "":
            return self._get(method, lambda: _json(self.core.model_metadata(model, version)))
        if action == "ready":
            return self._get(method, lambda: self._model_ready(model, version))
        if action == "config":
            return self._get(method, lambda: _json(self.core.model_config(model, version)))
        if action == "stats":
            return self._get(method, lambda: _json(self.core.statistics(model, version)))
        if action == "infer":
            if method != "POST":
                raise HTTPError(405, f"{method} not allowed on {path}: use POST")
            return self._infer(model, version, headers, body)
        raise HTTPError(404, f"unknown path {path!r}")

    @staticmethod
    def _get(method: str, fn: Callable[[], tuple[int, bytes, dict]]):
        if method != "GET":
            raise HTTPError(405, f"{method} not allowed here: use GET")
        return fn()

    def _model_ready(self, model: str, version: str):
        self.core.view(model, version)  # NotFound -> 404
        if not self.core.model_ready(model, version):
            raise HTTPError(503, f"model {model!r} is not ready")
        return 200, b"", {}

    def _infer(self, model: str, version: str, headers, body: bytes):
        t0 = time.perf_counter_ns()
        self.core.view(model, version)  # an unknown model (or no backend) answers as such, whatever the body
        encoding = (headers.get("Content-Encoding") or "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                raise HTTPError(415, f"Content-Encoding {encoding!r} not supported (gzip, deflate)")
        except (OSError, zlib.error, EOFError) as exc:
            raise InvalidArgument("body", f"cannot decompress ({encoding}): {exc}") from None
        if len(body) > self.max_body_bytes:
            raise HTTPError(413, f"decompressed body exceeds the limit of {self.max_body_bytes} bytes")
        header_length = headers.get(HEADER_LENGTH)
        if header_length is not None:
            try:
                header_length = int(header_length)
            except ValueError:
                raise InvalidArgument(HEADER_LENGTH, f"{header_length!r} is not a number") from None
        request_id, params, inputs, outputs = parse_infer_body(body, header_length)
        binary_default = params.get("binary_data_output", False)
        if not isinstance(binary_default, bool):
            raise InvalidArgument("parameters[binary_data_output]", "must be true or false")
        outcome = self.core.infer(model, version, request_id, inputs, params, [n for n, _ in outputs],
                                  decode_ns=time.perf_counter_ns() - t0)
        payload, json_length = infer_response_body(outcome, outputs, binary_default)
        if json_length is None:
            return 200, payload, {}
        return 200, payload, {"Content-Type": "application/octet-stream", HEADER_LENGTH: json_length}


def _json(doc) -> tuple[int, bytes, dict]:
    return 200, json.dumps(doc).encode(), {}


def start_http(target, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, ready: Callable[[], bool] | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> KServeHTTPServer:
    """Serve KServe v2 over HTTP on host:port (0 = any free port) from a background thread.

    `target`: a KServeCore (share the gRPC front's: `kserve_servicer.core`), anything with a
    `.core` (a KServeServicer), or what KServeCore accepts (a SelectionServicer, a mosel.v1
    stub, a Backend). Stop it with `.stop()`."""
    core = target if isinstance(target, KServeCore) else getattr(target, "core", None)
    if not isinstance(core, KServeCore):
        core = KServeCore(target, ready=ready)
    return KServeHTTPServer(core, host, port, max_body_bytes).start()

