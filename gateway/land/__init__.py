"""The land leg: haulier jobs, drivers, the signed QR pick-up right, gate-out, receipt, custody.

The design, the token format, every refusal and the API are in ``docs/land.md``. Modules,
bottom to top:

- :mod:`~gateway.land.model` — jobs, places, drivers, the CCRN / vehicle / phone checks, the
  pick-up right (:func:`~gateway.land.model.pickup_right`, over the alert facts' holds and yard
  stays) and the custody steps (pure);
- :mod:`~gateway.land.token` — the ``PL1`` token: canonical JSON claims, Ed25519 signature, the
  public JWK, offline verification (pure);
- :mod:`~gateway.land.store` — ``land.db``: jobs, drivers and codes, used nonces, gate-outs,
  receipts;
- :mod:`~gateway.land.service` — :class:`~gateway.land.service.LandService`: reads through the
  tracking service, writes through the write path, positions through telemetry;
- :mod:`~gateway.land.api` — ``/v1/land/…`` and ``setup(app)``.
"""
