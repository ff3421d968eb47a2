"""gateway.writepath."""
