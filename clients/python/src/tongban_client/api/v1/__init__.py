"""Generated from proto/gateway/api/v1 (proto package `gateway.api.v1`). Do not edit: run
`make client`."""
