"""Running engine coroutines from click commands: uvloop when present, Ctrl-C as a stop event."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

T = TypeVar("T")


class Interrupts:
    """Until ``arm()`` Ctrl-C aborts as usual; after it, the first Ctrl-C sets ``stop`` so in-flight
    work finishes and state is saved, and a second one aborts."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()

    def arm(self) -> None:
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.stop.set()
            click.echo(
                "\nInterrupt received: finishing what is running, then saving state. Ctrl-C again to abort.",
                err=True,
            )

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, interrupted)


def run(factory: Callable[[Interrupts], Awaitable[T]]) -> T:
    async def main() -> T:
        interrupts = Interrupts()
        try:
            return await factory(interrupts)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
