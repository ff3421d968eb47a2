"""Alerts: warn before it costs money — vessel delay, reefer excursion, storage meter, customs hold.

The design, each rule's definition and defaults, the tariff format and the day-counting
convention are in ``docs/alerts.md``. Modules, bottom to top (all pure):

- :mod:`~gateway.alerts.model` — :class:`~gateway.alerts.model.Alert` (one episode: kind,
  subject, stable key, open/resolved, figures, sources), ``Transition``, ``readable_by``;
- :mod:`~gateway.alerts.calendar` — local days, rest days, Hong Kong public holidays
  (``data/hk_public_holidays.json``);
- :mod:`~gateway.alerts.tariff` — storage tariffs in HK$ (validation, terminal and carrier
  overrides) and the storage meter (last free day, accrued, per day), money in cents;
- :mod:`~gateway.alerts.facts` — the per-subject facts the rules read, from canonical events
  and telemetry readings;
- :mod:`~gateway.alerts.rules` — the rules, their settings, ``evaluate`` (episodes and
  transitions against the previous states) and the clock pass ``due``;
- :mod:`~gateway.alerts.cli` — ``portledger alerts evaluate``, the dry run over a file.

In the gateway, on top of them:

- :mod:`~gateway.alerts.store` — ``alerts.db``: episodes per organisation, transitions, follows,
  read marks, preferences, settings, published tariffs, the mail queue, progress marks;
- :mod:`~gateway.alerts.engine` — the incremental engine: per organisation, over what it may
  read (indexer listener, telemetry poll, clock pass); tariff choice; the storage meter view;
- :mod:`~gateway.alerts.preferences` — per-user delivery preferences (pure);
- :mod:`~gateway.alerts.delivery` — summaries, alert webhooks over the subscription machinery,
  the dispatcher;
- :mod:`~gateway.alerts.mail` — SMTP settings, messages and the mailer;
- :mod:`~gateway.alerts.api` — the HTTP API and the service's lifecycle (``setup``).
"""
