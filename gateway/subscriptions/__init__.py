"""DCSA event subscriptions: the push half of Track & Trace 2.2, with signed, retried callbacks.

The design (how an event reaches a subscriber, the queue, retries, secrets, callback checks,
settings) is in ``docs/subscriptions.md``.

Modules, bottom to top:

``model``
    Settings (``config.extra["subscriptions"]``), ``Subscription``, ``Delivery``,
    and the pure checks: secrets, signatures, callback URLs, backoff.
``resolver``
    Callback host names resolve to public addresses only (when given and at each connection).
``store``
    ``SubscriptionStore``: subscriptions and their delivery queue in ``subscriptions.db``.
``delivery``
    ``DeliveryWorker``: sends due callbacks, signed, with retries.
``service``
    ``Subscriptions``: the indexer listener that queues events, and its lifecycle.
``api``
    ``/v2/event-subscriptions`` (DCSA) and ``/v1/subscriptions/{id}/deliveries``, with their
    OpenAPI; ``setup(app)``.
"""
