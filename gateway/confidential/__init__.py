"""gateway.confidential."""
