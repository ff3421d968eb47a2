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
"""
