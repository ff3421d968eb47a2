"""Under construction (see docs/gateway.md); its owner replaces this file."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Nothing yet."""
