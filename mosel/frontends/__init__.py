"""Fronts that speak other inference protocols and serve them through MOSEL's selection service.

- `kserve_grpc`: the KServe v2 / Triton gRPC protocol (`inference.GRPCInferenceService`);
- `kserve_http`: the same protocol over HTTP/REST (`/v2/...`, JSON and binary tensors);
- `core`: what both share (model views, the SLO from request parameters, one call = one job,
  statistics); `conversions`: datatypes, tensors and parameters, free of any wire stub;
- `backend`: the selection service they call, in-process (a `SelectionServicer`) or remote
  (a mosel.v1 stub), with the same behaviour;
- `python -m mosel.frontends`: a stand-alone gateway in front of a running selection service.

Nothing here is imported by this package's __init__: `kserve_grpc` loads the generated
`inference` messages into the process's protobuf pool, which clashes with any other copy of
them (tritonclient's), so only the processes that serve gRPC import it.
"""
