"""Callback host names that must resolve to public addresses only (server-side request forgery).

A callback's name is checked when it is given (:func:`check_callback_resolves_public`) and
again at every connection (:class:`PublicResolver`), so DNS rebinding cannot steer a delivery
inwards. The form of the URL and IP literals are :func:`gateway.subscriptions.model.check_callback_url`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gateway.subscriptions.model import CallbackRefused, is_public_address


async def check_callback_resolves_public(url: str, *, timeout: float = 3.0) -> None:
    """Refuse a callback whose host name resolves to a non-public address now.

    A name that does not resolve (yet) is accepted: delivery checks again at every
    connection, through :class:`PublicResolver`.
    """
    parsed = URL(url)
    host = parsed.host or ""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        return  # literals were checked by check_callback_url
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, parsed.port or 443, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError):
        return
    private = sorted({str(info[4][0]) for info in infos if not is_public_address(str(info[4][0]))})
    if private:
        raise CallbackRefused(
            f"callbackUrl host {host} resolves to the non-public address {private[0]}",
            code="callback-not-public",
        )


class PublicResolver(AbstractResolver):
    """A resolver that drops non-global addresses, so a callback can't be steered inwards."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public_address(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to non-public addresses; refused")
        return public

    async def close(self) -> None:
        await self._inner.close()
