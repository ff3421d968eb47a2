"""gateway.web."""
