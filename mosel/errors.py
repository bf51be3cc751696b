"""Errors with a gRPC status, and the one place that maps exceptions to status codes.

Library code raises these (or plain ValueError/KeyError/TimeoutError, mapped below);
servicers wrap their methods with `grpc_errors`, so no stack trace ever reaches the
wire and every refusal carries the code of the table in docs/architecture.md ("Errors").
"""

from __future__ import annotations

import functools
import inspect
import logging

import grpc

log = logging.getLogger(__name__)

# Longest id or name (request/job/item/stream message ids, model, modality, input and output
# names) any service accepts, in characters. Longer strings are refused, never echoed:
# an error message or a reply repeating a 60 MB id would cost what the limit saves.
MAX_STRING_CHARS = 256


class MoselError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(MoselError):
    """Malformed input; the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def check_length(value: str, field: str, limit: int = MAX_STRING_CHARS) -> str:
    """`value`, or InvalidArgument naming `field` if it is longer than `limit` characters."""
    if len(value) > limit:
        raise InvalidArgument(field, f"{len(value)} characters exceed the limit of {limit}")
    return value


class NotFound(MoselError):
    code = grpc.StatusCode.NOT_FOUND


class DeadlineExceeded(MoselError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(MoselError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(MoselError):
    code = grpc.StatusCode.UNAVAILABLE


class InvalidInput(ValueError):
    """Input that does not match a model pack's spec (raised by pack code, which need not know
    gRPC; served as INVALID_ARGUMENT). `field` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """(status code, message) for any exception raised while serving."""
    if isinstance(exc, MoselError):
        return exc.code, exc.message
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        # A downstream call failed: pass deadline/availability through, hide the rest.
        code = exc.code()
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.RESOURCE_EXHAUSTED):
            return code, f"downstream: {exc.details()}"
        return grpc.StatusCode.UNAVAILABLE, f"downstream call failed ({code.name}): {exc.details()}"
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "deadline exceeded"
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see server log"


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str):
    code, message = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("%s failed", method)
    else:
        log.debug("%s refused: %s %s", method, code.name, message)
    context.abort(code, message)


def grpc_errors(method):
    """Decorator for servicer methods (unary or server-streaming) mapping exceptions to status.

    Servicers must raise instead of calling context.abort themselves."""

    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream_wrapper(self, request, context):
            try:
                yield from method(self, request, context)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                _abort(context, exc, method.__qualname__)

        return stream_wrapper

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc, method.__qualname__)

    return wrapper

