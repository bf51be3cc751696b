"""Generated gRPC stubs of protos/mosel/protocol/kserve (see mosel.protocol.generate); never edit."""
