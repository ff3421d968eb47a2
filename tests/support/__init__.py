"""Helpers the tests share (fixtures, fake peers, harnesses): no test module imports another."""
