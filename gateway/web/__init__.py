"""The gateway's web pages.

- ``pages``: server-rendered page shells (sign in, register, track, who saw my data, API keys,
  operator), their security headers and the static files.
- ``static/``: the one stylesheet and the one script the pages load.
"""
