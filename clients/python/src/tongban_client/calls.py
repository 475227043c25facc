"""What every section of the client shares: one call's deadline, its typed errors, its retries.

Invariants:
- Every call has a deadline: the caller's `timeout`, else the config's (streams excepted:
  a watch lasts as long as the caller lets it).
- `grpc.aio.AioRpcError` is translated here (`errors.from_rpc_error`) and nowhere else.
- A unary call is retried as `retry` says; the request object sent is the same every time.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from tongban_client.config import ClientConfig
from tongban_client.errors import from_rpc_error
from tongban_client.retry import call_with_retries

R = TypeVar("R")


class Calls:
    """Runs the calls of one client."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        """The client's configuration."""

    async def unary(
        self,
        what: str,
        method: Callable[..., Awaitable[R]],
        request: Message,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> R:
        """The response of `method(request)`, `what` naming it; `request_id` is carried by
        the error raised, for a submission."""
        deadline = self.config.timeout if timeout is None else timeout

        async def attempt() -> R:
            try:
                return await method(request, timeout=deadline)
            except grpc.aio.AioRpcError as error:
                raise from_rpc_error(error, request_id=request_id) from error

        return await call_with_retries(self.config.retry, what, attempt)

    async def stream(
        self,
        method: Callable[..., Any],
        request: Message,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """The responses of the server stream `method(request)`, not retried (the caller
        knows where it stands); the call is cancelled when the generator is closed early."""
        call = method(request, timeout=timeout)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from error
        finally:
            call.cancel()
