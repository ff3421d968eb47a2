"""``python -m portledger`` runs the ``portledger`` command."""

from portledger.cli import main

main()
