"""The wire: generated gRPC stubs (`v1/`, from protos/mosel/protocol/v1), the tensor codec
(`tensors`) and conversions between store records and library objects (`records`)."""
