"""The gateway's web app on the shell of :mod:`gateway.ui`.

- ``pages``: landing, sign in, register, track, who saw my data, API keys, operator.
- ``views``: the container view (storage meter, reefer chart with excursions, alerts) and the
  vessel view (ETA history with sources, arrivals, alerts).
"""
