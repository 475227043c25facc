"""Generated gRPC code of the public API. Do not edit: run `make client`."""
