"""The read side: the chain's state indexed for the gateway's queries.

- :mod:`~gateway.readside.readmodel` — the ``ReadModel`` interface, its records (``Member``,
  ``IndexedEvent``, ``Grant``, ``House``, ``Declaration``, ``Anchor``, ``AccessEntry``...) and
  the changes one block range writes;
- :mod:`~gateway.readside.journal` — the change journal: which subject keys the writes after a
  generation touched;
- :mod:`~gateway.readside.store` — ``SqliteReadModel``, the embedded implementation, and
  ``setup`` (``app[READ_MODEL]``);
- :mod:`~gateway.readside.indexer` — follows finalized blocks into the read model; ``rebuild``.
"""
