"""The gateway's application factory.

``create_app(config)`` builds the whole service: the middleware chain (errors → observation →
authentication → rate limits) and every feature module's routes and resources, each added by
that module's ``setup(app)`` (see docs/gateway.md for the map). Resources (databases, the
keystore, the submitter and indexer tasks, HTTP client sessions) open and close in
``cleanup_ctx``, so a test's ``aiohttp_client(create_app(config))`` runs the real thing.
"""

from __future__ import annotations

from aiohttp import web

from gateway import errors, nodeclient, openapi, ops
from gateway.accounts import api as accounts
from gateway.accounts import auth, oidc
from gateway.alerts import api as alerts
from gateway.alerts import pages as alerts_pages
from gateway.appkeys import BODY_LIMIT, CONFIG
from gateway.confidential import keystore
from gateway.config import GatewayConfig
from gateway.declarations import api as declarations
from gateway.declarations import pages as declarations_pages
from gateway.feeds import api as api_feeds
from gateway.feeds import pages as feeds_pages
from gateway.intake import api as api_events
from gateway.intake import pages as intake_pages
from gateway.land import api as land
from gateway.land import driver_pages as land_pages
from gateway.land import live as land_live
from gateway.land import scan_pages as land_scan_pages
from gateway.proofs_api import api as api_proofs
from gateway.proofs_api import pages as proofs_pages
from gateway.readside import indexer
from gateway.readside import store as readmodel
from gateway.subscriptions import api as subscriptions
from gateway.telemetry import api as api_telemetry
from gateway.tracking import api as tracking
from gateway.tracking import dcsa_api as api_dcsa
from gateway.web import dashboard, pages, sharing, shipment, views
from gateway.writepath import outbox, submitter

#: Feature modules in set-up order (resources open in this order and close in reverse).
MODULES = (
    ops,
    keystore,
    nodeclient,
    accounts,
    oidc,
    readmodel,
    outbox,
    submitter,
    indexer,
    api_telemetry,
    tracking,
    api_events,
    api_dcsa,
    api_feeds,
    subscriptions,
    alerts,
    land,
    land_live,
    declarations,
    api_proofs,
    alerts_pages,
    land_pages,
    declarations_pages,
    feeds_pages,
    land_scan_pages,
    intake_pages,
    proofs_pages,
    views,
    sharing,
    pages,
    dashboard,
    shipment,
    openapi,
)


def create_app(config: GatewayConfig) -> web.Application:
    """Build the gateway application for ``config``."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(
        middlewares=[
            errors.error_middleware,
            ops.observe_middleware,
            auth.auth_middleware,
            ops.rate_limit_middleware,
        ],
        client_max_size=config.max_bulk_body_bytes,
    )
    app[CONFIG] = config
    app[BODY_LIMIT] = config.max_body_bytes
    for module in MODULES:
        module.setup(app)
    return app
