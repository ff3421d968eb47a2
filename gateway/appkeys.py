"""Every typed application key of the gateway, in one place.

A feature puts its resources on the application under these keys (``app[OUTBOX]``) in its
``setup``/``cleanup_ctx`` and reads them in its handlers. The types are imported for the type
checker only, so this module imports nothing of the gateway at run time and any module may
import it without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp import ClientSession
    from prometheus_client import CollectorRegistry

    from gateway.accounts.store import Accounts
    from gateway.alerts.api import AlertService
    from gateway.confidential.keystore import Keystore
    from gateway.config import GatewayConfig
    from gateway.declarations.service import DeclarationService
    from gateway.feeds.ais_stream import AisStream
    from gateway.nodeclient import NodeClient
    from gateway.proofs_api.store import ProofRequestStore
    from gateway.readside.indexer import Indexer
    from gateway.readside.readmodel import ReadModel
    from gateway.subscriptions.service import Subscriptions
    from gateway.telemetry.anchoring import Anchorer
    from gateway.telemetry.store import TelemetryStore
    from gateway.tracking.dcsa import CursorCodec
    from gateway.tracking.service import DeclarationKeys, Tracking
    from gateway.writepath.outbox import Outbox
    from gateway.writepath.submitter import Submitter

#: The gateway's configuration.
CONFIG: web.AppKey[GatewayConfig] = web.AppKey('config')
#: Largest body of an ordinary request, in bytes.
BODY_LIMIT: web.AppKey[int] = web.AppKey('body_limit')
#: The Prometheus registry of ``/metrics``.
METRICS: web.AppKey[CollectorRegistry] = web.AppKey('metrics')
#: Readiness checks of ``/readyz`` by name.
READINESS: web.AppKey[dict[str, Any]] = web.AppKey('readiness')
#: The OpenAPI operations each feature added.
OPENAPI_PARTS: web.AppKey[list[dict[str, Any]]] = web.AppKey('openapi_parts')
#: The JSON-RPC client of the configured nodes.
NODE: web.AppKey[NodeClient] = web.AppKey('node')
#: The hosted organisations' keys, encrypted at rest.
KEYSTORE: web.AppKey[Keystore] = web.AppKey('keystore')
#: The accounts database.
ACCOUNTS: web.AppKey[Accounts] = web.AppKey('accounts')
#: Configured external identity providers by name.
OIDC_PROVIDERS: web.AppKey[dict[str, Any]] = web.AppKey('oidc_providers')
#: HTTP client that reaches the identity providers.
OIDC_HTTP: web.AppKey[ClientSession] = web.AppKey('oidc_http')
#: The durable outbox.
OUTBOX: web.AppKey[Outbox] = web.AppKey('outbox')
#: The submitter (in the process that runs background tasks).
SUBMITTER: web.AppKey[Submitter] = web.AppKey('submitter')
#: The read model.
READ_MODEL: web.AppKey[ReadModel] = web.AppKey('read_model')
#: The indexer (absent when no node is configured).
INDEXER: web.AppKey[Indexer] = web.AppKey('indexer')
#: The telemetry store (readings, vessels, anchor batches).
TELEMETRY: web.AppKey[TelemetryStore] = web.AppKey('telemetry')
#: The telemetry anchoring task (in the process that runs background tasks).
ANCHORER: web.AppKey[Anchorer] = web.AppKey('anchorer')
#: The tracking service.
TRACKING: web.AppKey[Tracking] = web.AppKey('tracking')
#: The DCSA cursor codec (downloads and subscriptions).
DCSA_CURSORS: web.AppKey[CursorCodec] = web.AppKey('dcsa_cursors')
#: The DCSA subscription service.
SUBSCRIPTIONS: web.AppKey[Subscriptions] = web.AppKey('subscriptions')
#: The proof-request store.
PROOF_REQUESTS: web.AppKey[ProofRequestStore] = web.AppKey('proof_requests')
#: The AIS network feeds the gateway runs (``extra.feeds.ais_streams``).
AIS_STREAMS: web.AppKey[list[AisStream]] = web.AppKey('ais_streams')
#: The alert service (store, engine, webhooks, mailer).
ALERTS: web.AppKey[AlertService] = web.AppKey('alerts')
#: The declarations service (drafts, the submission outbox and its worker).
DECLARATIONS: web.AppKey[DeclarationService] = web.AppKey('declarations')
#: The declarations' tracking hook, registered by the declarations feature: (caller, official
#: number) → the declaration's key in ``Declarations.vy`` and the alias its customs events are
#: published under, if the caller may read it, else None.
DECLARATION_KEYS: web.AppKey[DeclarationKeys] = web.AppKey('declaration_keys')

#: The pages' answer to a page address that does not exist (set by the pages' shell): a browser
#: asking for HTML gets a page in its language, not the API's JSON error.
HTML_NOT_FOUND: web.AppKey[Any] = web.AppKey('html_not_found')
