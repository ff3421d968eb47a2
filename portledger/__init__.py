"""The ``portledger`` command: one entry point composing every package's commands."""
