"""Generated gRPC stubs of package mosel.v1 (see mosel.protogen)."""
