"""Generated gRPC code for the stub admin API. Do not edit: run `make proto`."""
