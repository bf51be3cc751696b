"""Generated gRPC stubs of protos/mosel/protocol/v1 (see mosel.protocol.generate); never edit."""
