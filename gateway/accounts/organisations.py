"""The organisations of the accounts database: registration, verification, chain membership.

An organisation registers itself (``pending``); a platform operator verifies it (``active``:
its keys are created and a Consortium ``ADD_MEMBER`` proposal is queued by
:mod:`gateway.accounts.api`) or rejects it; an active one may be ``suspended`` and re-activated.
Once the consortium has executed the proposal the indexer calls
:meth:`Organisations.link_chain_members`, which records the member's Consortium id
(``chain_org``), matching by signing account.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from contracts import roles_mask
from gateway.accounts.database import AccountsDatabase
from gateway.accounts.model import ORG_STATUSES, Organisation
from gateway.errors import Conflict, NotFound


class Organisations(AccountsDatabase):
    """The organisations of the accounts database (the rest is
    :class:`gateway.accounts.store.Accounts`)."""

    @staticmethod
    def _organisation(row: sqlite3.Row) -> Organisation:
        return Organisation(
            id=row["id"],
            name=row["name"],
            roles=tuple(json.loads(row["roles"])),
            status=row["status"],
            chain_org=row["chain_org"],
            details=json.loads(row["details"]),
            account=row["account"],
            operator=bool(row["operator"]),
        )

    def organisation(self, org_id: int) -> Organisation:
        """One organisation.

        Raises
        ------
        NotFound
            No such organisation.
        """
        row = self._db.execute("SELECT * FROM organisations WHERE id = ?", (org_id,)).fetchone()
        if row is None:
            raise NotFound(f"no organisation {org_id}", code="no-such-organisation")
        return self._organisation(row)

    def by_chain_org(self, chain_org: int) -> Organisation | None:
        """The organisation with Consortium id ``chain_org``, or None."""
        row = self._db.execute(
            "SELECT * FROM organisations WHERE chain_org = ?", (chain_org,)
        ).fetchone()
        return None if row is None else self._organisation(row)

    def organisations(self, status: str | None = None) -> list[Organisation]:
        """All organisations (of one status), oldest first."""
        if status is None:
            rows = self._db.execute("SELECT * FROM organisations ORDER BY id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM organisations WHERE status = ? ORDER BY id", (status,)
            ).fetchall()
        return [self._organisation(r) for r in rows]

    def create_organisation(
        self,
        name: str,
        roles: Iterable[str],
        details: dict[str, Any] | None = None,
        status: str = "pending",
        *,
        chain_org: int | None = None,
        account: str | None = None,
        operator: bool = False,
        actor: str = "system",
    ) -> Organisation:
        """Add an organisation.

        Parameters
        ----------
        name : str
            Its name.
        roles : iterable of str
            Role names of :data:`contracts.ROLES`.
        details : dict, optional
            Company details (``registrationNumber``, ``country``, ``address``,
            ``contactEmail``); the pair (country, registration number) is unique.
        status : str
            Initial status; ``active`` for the devnet's genesis members.
        chain_org : int, optional
            Its Consortium id when it is already a member (genesis).
        account : str, optional
            Its signing account's address.
        operator : bool
            The platform operator's organisation.
        actor : str
            Who does this (audit trail).

        Raises
        ------
        ValueError
            Unknown role or status.
        Conflict
            The registration number or the chain organisation is taken.
        """
        roles = tuple(roles)
        roles_mask(list(roles))  # ValueError for an unknown role
        if status not in ORG_STATUSES:
            raise ValueError(f"unknown organisation status {status!r}")
        details = dict(details or {})
        registration = None
        if details.get("registrationNumber"):
            registration = (
                f"{str(details.get('country', '')).upper()}:"
                f"{str(details['registrationNumber']).strip().upper()}"
            )
        try:
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO organisations (name, roles, details, status, chain_org, account,"
                    " operator, registration, created) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        name,
                        json.dumps(list(roles)),
                        json.dumps(details, sort_keys=True),
                        status,
                        chain_org,
                        account,
                        int(operator),
                        registration,
                        self.clock(),
                    ),
                )
                org_id = int(cur.lastrowid or 0)
                self.audit(
                    "organisation.create",
                    org_id=org_id,
                    actor=actor,
                    target=f"organisation:{org_id}",
                    name=name,
                    status=status,
                )
        except sqlite3.IntegrityError as exc:
            if "registration" in str(exc):
                raise Conflict(
                    "an organisation with this registration number is already registered",
                    code="organisation-exists",
                ) from None
            raise Conflict(f"chain organisation {chain_org} is already linked") from None
        return self.organisation(org_id)

    def set_chain_org(self, org_id: int, chain_org: int) -> Organisation:
        """Record an organisation's Consortium id (it became a member on chain)."""
        with self._tx():
            done = self._db.execute(
                "UPDATE organisations SET chain_org = ? WHERE id = ?", (chain_org, org_id)
            ).rowcount
            if not done:
                raise NotFound(f"no organisation {org_id}", code="no-such-organisation")
            self.audit(
                "organisation.chain-linked",
                org_id=org_id,
                actor="indexer",
                target=f"organisation:{org_id}",
                chain_org=chain_org,
            )
        return self.organisation(org_id)

    def set_account(self, org_id: int, account: str) -> None:
        """Record an organisation's signing account (its keys were created or imported)."""
        self._db.execute("UPDATE organisations SET account = ? WHERE id = ?", (account, org_id))

    def link_chain_members(
        self, members: Iterable[tuple[int, Iterable[str]]]
    ) -> list[Organisation]:
        """Give Consortium ids to organisations whose signing account became a member.

        Parameters
        ----------
        members : iterable of (int, iterable of str)
            Chain members as the indexer's read model knows them: (Consortium organisation id,
            its signing account addresses).

        Returns
        -------
        list of Organisation
            The organisations newly linked.
        """
        waiting = {
            row["account"].lower(): row["id"]
            for row in self._db.execute(
                "SELECT id, account FROM organisations"
                " WHERE chain_org IS NULL AND account IS NOT NULL"
            )
        }
        linked = []
        for chain_org, accounts in members:
            for account in accounts:
                org_id = waiting.pop(str(account).lower(), None)
                if org_id is not None and self.by_chain_org(chain_org) is None:
                    linked.append(self.set_chain_org(org_id, chain_org))
                    break
        return linked

    def decide(
        self, org_id: int, status: str, *, actor_user: int | None, note: str = ""
    ) -> Organisation:
        """Move a pending organisation to ``active`` or ``rejected`` (or suspend an active one).

        Raises
        ------
        Conflict
            The organisation is not in a state that allows this move.
        """
        allowed = {"active": ("pending", "suspended"), "rejected": ("pending",),
                   "suspended": ("active",)}
        if status not in allowed:
            raise ValueError(f"cannot decide {status!r}")
        with self._tx():
            org = self.organisation(org_id)
            if org.status not in allowed[status]:
                raise Conflict(
                    f"organisation {org_id} is {org.status}; it cannot become {status}",
                    code="organisation-state",
                )
            self._db.execute(
                "UPDATE organisations SET status = ?, decided_at = ?, decided_by = ?,"
                " decision_note = ? WHERE id = ?",
                (status, self.clock(), actor_user, note, org_id),
            )
            self.audit(
                f"organisation.{status}",
                org_id=org_id,
                actor=f"user:{actor_user}",
                target=f"organisation:{org_id}",
                note=note,
            )
        return self.organisation(org_id)

    def operator_organisation(self) -> Organisation | None:
        """The platform operator's organisation, or None before bootstrap."""
        row = self._db.execute(
            "SELECT * FROM organisations WHERE operator = 1 ORDER BY id LIMIT 1"
        ).fetchone()
        return None if row is None else self._organisation(row)
