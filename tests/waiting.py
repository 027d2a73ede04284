"""Waiting in tests: for conditions, never for time.

A test waits until what it needs is true and asserts on what the wait saw (``until`` returns
the condition's value), or waits for the whole condition. The budgets are liveness bounds, never
the synchronisation: they are generous for a machine busy with other work, and
``TEST_TIMEOUT_FACTOR`` (a number, default 1) stretches every one of them — and the per-test
timeout — for a slower or busier machine still.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_FACTOR_VARIABLE = "TEST_TIMEOUT_FACTOR"


def _timeout_factor() -> float:
    text = os.environ.get(TIMEOUT_FACTOR_VARIABLE, "1")
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"{TIMEOUT_FACTOR_VARIABLE}={text!r} is not a number") from None
    if not factor > 0:
        raise ValueError(f"{TIMEOUT_FACTOR_VARIABLE}={text!r} must be above 0")
    return factor


TIMEOUT_FACTOR = _timeout_factor()


def patience(seconds: float) -> float:
    """A liveness bound of ``seconds`` on an ordinary busy machine, stretched by the factor."""
    return seconds * TIMEOUT_FACTOR


async def until(
    condition: Callable[[], T | Awaitable[T]],
    *,
    within: float = 30.0,
    what: str = "the condition",
    every: float = 0.02,
) -> T:
    """Poll ``condition`` (a function, or a coroutine function) until it returns something
    true, and return that: the state the wait saw, for the asserts that follow."""
    deadline = time.monotonic() + patience(within)
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {patience(within):g} s: {what} (last: {value!r})")
        await asyncio.sleep(every)


def wait_until(
    condition: Callable[[], T],
    *,
    within: float = 30.0,
    what: str = "the condition",
    every: float = 0.05,
) -> T:
    """``until`` for synchronous tests (subprocesses, threads)."""
    deadline = time.monotonic() + patience(within)
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {patience(within):g} s: {what} (last: {value!r})")
        time.sleep(every)
