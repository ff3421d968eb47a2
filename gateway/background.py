"""Background tasks' end: one way to stop what a module started.

A module's cleanup context cancels the tasks it created and waits for each to end; an error a
task raises while it ends is its own business (each background loop logs its failures), so the
cleanup goes on to close the stores after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any


async def cancelled(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task (None: none was started) and wait until each has ended."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
