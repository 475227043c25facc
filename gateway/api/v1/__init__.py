"""Generated gRPC code for the public API. Do not edit: run `make proto`."""
