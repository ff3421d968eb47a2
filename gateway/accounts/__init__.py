"""Accounts: organisations, users, sessions, API keys, external identities and throttling.

Who may act, and for whom (the whole story is :mod:`gateway.accounts.model`'s docstring).

==================  ================================================================================
``model``           pure: Organisation, User, ApiKey, Session, OidcLogin; roles, statuses, lifetimes;
                    argon2id hashing, API-key format, throttling rule, membership calldata
``database``        the SQLite file: schema, transactions, credential generation, audit trail
``organisations``   organisations: registration, verification decisions, chain membership
``store``           ``Accounts``: users, passwords and throttling, sessions, API keys, identities
``keycache``        each process's cache of verified API keys (dropped on a new generation)
``auth``            the authentication middleware, session cookie, CSRF and origin checks
``api``             request schemas, HTTP handlers with their OpenAPI operations, ``setup``
``jose``            pure: base64url, JWKs, JWS (ES256/RS256), ID-token checks
``oidc``            OpenID Connect: identity providers and the login flow's routes
==================  ================================================================================
"""
