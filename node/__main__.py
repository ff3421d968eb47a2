"""``python -m node`` runs the ``portledger`` command."""

from node.cli import main

main()
