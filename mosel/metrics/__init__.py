"""Prometheus metrics of every service: what each service counts (`families`), the gRPC
interceptor that counts every call by method and status code (`interceptor`) and the
HTTP endpoint Prometheus scrapes (`endpoint`). Names and meanings: docs/operations.md
("Metrics")."""
