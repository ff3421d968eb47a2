"""gateway.events."""
