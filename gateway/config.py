"""The gateway's configuration: one frozen dataclass, read from a JSON file or built in code.

Everything the gateway opens lives under :attr:`GatewayConfig.data_dir`: its SQLite databases
(accounts, outbox, read model), its encrypted keystore and its log. The chain is reached only
through the JSON-RPC URLs of :attr:`GatewayConfig.node_urls` (several, for failover).
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar


class ConfigError(ValueError):
    """The configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class GatewayConfig:
    """How one gateway runs."""

    data_dir: Path
    """Folder of the gateway's databases and keystore (created if missing)."""
    node_urls: tuple[str, ...] = ()
    """JSON-RPC HTTP endpoints of PortLedger nodes, tried in order with failover."""
    chain_id: int = 0
    """Chain id the signed transactions carry; 0 = ask the first node that answers."""
    keystore_passphrase: str = ""
    """Passphrase of the encrypted keystore; ``PORTLEDGER_KEYSTORE_PASSPHRASE`` overrides."""
    host: str = "127.0.0.1"
    """Listen address."""
    port: int = 8080
    """Listen port."""
    public_url: str = ""
    """Base URL users reach the gateway at (OpenID Connect redirects, links in mails)."""
    cookie_secure: bool = True
    """Send session cookies with ``Secure`` (turn off only for plain-HTTP loopback demos)."""
    max_body_bytes: int = 1 << 20
    """Largest request body of an ordinary request."""
    max_bulk_body_bytes: int = 16 << 20
    """Largest body of a bulk upload."""
    batch_max_events: int = 500
    """Most cargo events one ``record()`` transaction carries."""
    batch_window_ms: int = 100
    """How long the batcher waits for more events before it sends a partial batch."""
    max_in_flight_txs: int = 8
    """Transactions an organisation may have on their way at once (sent, not yet final)."""
    outbox_max_per_org: int = 10_000
    """Most operations of one organisation in the outbox not yet final or failed; an upload
    that would go over is refused 429 ``outbox-full`` with ``Retry-After`` (docs/limits.md)."""
    outbox_max_total: int = 20_000
    """Most operations of all organisations in the outbox not yet final or failed (as above)."""
    outbox_max_wait_seconds: float = 10.0
    """Most seconds of work in the outbox at the rate it drains (as above): bounds how long
    the backlog an overload leaves takes to clear."""
    outbox_wait_floor: int = 200
    """The time bound never refuses below this many operations in the outbox: at a slow
    drain rate (a loaded chain) ten seconds of work is a handful of operations, fewer than a
    finality latency of seconds keeps on their way at the normal rate."""
    telemetry_window_seconds: float = 10.0
    """Seconds between two anchorings of telemetry readings (a Merkle root per owner batch)."""
    telemetry_batch_max: int = 4096
    """Most readings one anchored telemetry batch holds."""
    rate_limit_per_key: float = 200.0
    """Sustained requests per second per API key or session (token bucket)."""
    rate_limit_per_address: float = 100.0
    """Sustained requests per second per client address for unauthenticated requests."""
    rate_limit_burst: int = 400
    """Bucket size of both rate limits."""
    login_attempts: int = 5
    """Failed logins per account and address before the login is throttled."""
    login_lockout_seconds: int = 300
    """How long a throttled login stays throttled."""
    oidc_providers: tuple[dict[str, Any], ...] = ()
    """External identity providers: ``{"name", "issuer", "client_id", "client_secret"}``."""
    indexer_poll_ms: int = 200
    """How often the indexer asks the node for new finalized blocks."""
    webhook_max_attempts: int = 8
    """Delivery attempts of one subscription callback before it is given up (and shown)."""
    background_tasks: bool = True
    """Run the submitter, indexer and webhook deliveries in this process. Extra API worker
    processes sharing the port (``portledger gateway serve --workers N``) set it False: the
    background work must run in exactly one process."""
    log_json: bool = True
    """Structured (JSON lines) logs."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Settings of optional modules, by module name."""

    def __post_init__(self) -> None:
        window, batch = self.telemetry_window_seconds, self.telemetry_batch_max
        if isinstance(window, bool) or not isinstance(window, int | float) or not (
                0 < window <= 86_400):
            raise ConfigError("telemetry_window_seconds is a number of seconds, more than 0 and"
                              " at most 86400")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1 << 20:
            raise ConfigError("telemetry_batch_max is an integer from 1 to 1048576")
        for name in ("outbox_max_per_org", "outbox_max_total"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} is an integer of at least 1, not {value!r}")
        floor = self.outbox_wait_floor
        if isinstance(floor, bool) or not isinstance(floor, int) or floor < 0:
            raise ConfigError(f"outbox_wait_floor is an integer of at least 0, not {floor!r}")
        wait = self.outbox_max_wait_seconds
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait <= 3600:
            raise ConfigError("outbox_max_wait_seconds is a number of seconds, more than 0 and at"
                              " most 3600")

    @property
    def passphrase(self) -> str:
        """The keystore passphrase, the environment winning over the file."""
        return os.environ.get("PORTLEDGER_KEYSTORE_PASSPHRASE", self.keystore_passphrase)

    def path(self, name: str) -> Path:
        """A file under :attr:`data_dir`."""
        return self.data_dir / name

    @classmethod
    def load(cls, file: str | Path) -> GatewayConfig:
        """Read a configuration file (JSON, keys as the field names)."""
        try:
            raw = json.loads(Path(file).read_text())
        except FileNotFoundError:
            raise ConfigError(f"no configuration file at {file}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}: not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: expected a JSON object")
        return cls.from_dict(raw, base=Path(file).parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, base: Path | None = None) -> GatewayConfig:
        """Build from a mapping; relative ``data_dir`` is taken from ``base``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        if "data_dir" not in raw:
            raise ConfigError("configuration needs data_dir")
        values = dict(raw)
        data_dir = Path(values["data_dir"])
        if base is not None and not data_dir.is_absolute():
            data_dir = base / data_dir
        values["data_dir"] = data_dir
        for name in ("node_urls", "oidc_providers"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what :meth:`load` reads)."""
        out = asdict(self)
        out["data_dir"] = str(self.data_dir)
        out["node_urls"] = list(self.node_urls)
        out["oidc_providers"] = list(self.oidc_providers)
        return out


_Settings = TypeVar("_Settings")

_SCALARS: dict[Any, tuple[type, ...]] = {bool: (bool,), int: (int,), float: (int, float),
                                         str: (str,)}


def settings_from(cls: type[_Settings], raw: Any, where: str) -> _Settings:
    """A feature's settings dataclass ``cls`` from the JSON object ``raw`` found at ``where``.

    Every key must name a field; ``bool``, ``int``, ``float`` and ``str`` fields must hold a
    value of that type (an ``int`` is a ``float``, a ``bool`` is not a number); fields left out
    keep their defaults. A feature's own range checks belong in its ``__post_init__`` and raise
    :class:`ConfigError` too. Errors name ``where`` (e.g. ``extra["tracking"]``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown {where} keys: {', '.join(unknown)}")
    for name, value in raw.items():
        allowed = _SCALARS.get(hints.get(name))
        if allowed is None:
            continue
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise ConfigError(f"{where}.{name} must be a {hints[name].__name__}, not {value!r}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


