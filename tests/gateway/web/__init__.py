"""Page tests of the web app (issue 16)."""
