"""Southbound routing: the one client to the provinces, and how a call to one is retried.

`policy` decides (pure), `budget` and `breaker` keep per-province state, `delivery` runs the
retry loop of one call, `client` is the grpc.aio edge.
"""
