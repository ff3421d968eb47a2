"""Feeds: every format a port's systems already send, into the canonical model.

Each adapter (``gateway/feeds/<format>.py``) is a pure function
``parse(data, *, received_at) -> ParseResult`` (:mod:`gateway.feeds.model`) that never raises:
what it cannot read becomes a typed :class:`~gateway.feeds.model.FeedError` in the result.
:mod:`gateway.feeds.formats` names them all and detects a file's format.
"""
