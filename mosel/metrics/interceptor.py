"""A gRPC server interceptor that counts every call by method and final status code, times
it and tracks calls in flight — for any servicer, with no code in the servicers."""

from __future__ import annotations

import time

import grpc

from mosel.metrics.families import ServiceMetrics


def _code_of(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code()  # set by abort / set_code; None when the handler just returned
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: ServiceMetrics):
        self.metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        m = self.metrics

        def finish(context, started: float, failed: bool) -> None:
            m.rpc_in_flight.labels(m.service).dec()
            m.rpc_seconds.labels(m.service, method).observe(time.perf_counter() - started)
            m.rpc_requests.labels(m.service, method, _code_of(context, failed)).inc()

        def unary_response(behavior):
            def wrapped(request_or_iterator, context):
                m.rpc_in_flight.labels(m.service).inc()
                started, failed = time.perf_counter(), True
                try:
                    result = behavior(request_or_iterator, context)
                    failed = False
                    return result
                finally:
                    finish(context, started, failed)
            return wrapped

        def stream_response(behavior):
            def wrapped(request_or_iterator, context):
                m.rpc_in_flight.labels(m.service).inc()
                started, failed = time.perf_counter(), True
                try:
                    yield from behavior(request_or_iterator, context)
                    failed = False
                finally:  # also when the client goes away (GeneratorExit)
                    finish(context, started, failed)
            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary),
                                                       handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream),
                                                        handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary),
                                                        handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream),
                                                     handler.request_deserializer, handler.response_serializer)


def interceptors_for(metrics: ServiceMetrics | None) -> list[grpc.ServerInterceptor]:
    return [MetricsInterceptor(metrics)] if metrics is not None else []
