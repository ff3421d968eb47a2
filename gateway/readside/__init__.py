"""gateway.readside."""
