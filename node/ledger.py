"""The node's one handle on its chain: :class:`Ledger` (queries, block building, block import).

Blocks are built by :meth:`Ledger.propose` (execute once, seal, persist) and imported by
:meth:`Ledger.import_block` (validate seal and header, execute, compare every root, persist);
each persists in one atomic, synced LevelDB batch (:meth:`node.db.LevelDB.block_write`). A
consensus engine drives both; the dev-mode producer is the simplest such engine. The rules the
blocks follow (headers, QBFT seals, the zero-fee VM, receipts) are :mod:`node.chain`.

Building goes through the same steps as py-evm's ``VM.import_block`` (block preprocessing
system calls, transactions, postprocessing, finalisation) — never ``MiningChain.mine_all``,
which skips the pre/post-block system calls and produces blocks that fail import.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import rlp
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ReceiptAPI,
    SignedTransactionAPI,
)
from eth.chains.base import Chain
from eth.consensus.context import ConsensusContext
from eth.db.atomic import AtomicDB
from eth.exceptions import HeaderNotFound
from eth.rlp.accounts import Account
from eth.typing import AccountState
from eth.vm.spoof import SpoofTransaction
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from eth_typing import BlockNumber, Hash32
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_canonical_address
from eth_utils.exceptions import ValidationError
from trie.hexary import HexaryTrie

from consensus import extradata
from node.chain import (
    ChainError,
    InvalidBlock,
    PortLedgerVM,
    QbftChainDB,
)
from node.db import SCHEMA_PREFIX, LevelDB, NodeKeys
from node.genesis import BFT_MIX_HASH, UPGRADE_ADVICE, Genesis

#: The chain format of the blocks in a data directory (decimal ASCII,
#: :data:`consensus.extradata.CHAIN_FORMAT_VERSION` when it was initialised); directories of
#: chain format v1 predate the key.
CHAIN_FORMAT_KEY = SCHEMA_PREFIX + b"chain-format"

#: Marks "not in the parent's writes" (None and b"" are values a write can have).
_ABSENT = object()

_IS_MEMBER_ACCOUNT = function_signature_to_4byte_selector("isMemberAccount(address)")


class ChainFormatMismatch(ChainError):
    """The data directory holds a chain of another chain format (the message says what to do)."""
_GET_VALIDATORS = function_signature_to_4byte_selector("getValidators()")


@dataclass(frozen=True)
class BlockResult:
    """A block that was built or imported, with its receipts."""

    #: The sealed block as persisted.
    block: BlockAPI
    #: Receipts, in transaction order.
    receipts: tuple[ReceiptAPI, ...]
    #: Transactions left out by the builder because they were invalid at this state.
    rejected: tuple[tuple[SignedTransactionAPI, str], ...] = ()
    #: Valid transactions left out for lack of room or time; they stay pending.
    deferred: tuple[SignedTransactionAPI, ...] = ()
    #: Seconds spent executing the block here (0: committed from another node's execution).
    execute_seconds: float = 0.0
    #: Seconds spent writing it to LevelDB (0 until committed).
    commit_seconds: float = 0.0


@dataclass(frozen=True)
class Executed:
    """A block executed but not yet committed: its result and the state it wrote."""

    #: The block as executed (extraData as given: unsealed for a proposal) and its receipts.
    result: BlockResult
    #: Trie nodes (state, transactions, receipts) the execution wrote, for :meth:`Ledger.commit`.
    writes: dict[bytes, Any] = field(repr=False, compare=False)

    @property
    def block(self) -> BlockAPI:
        return self.result.block


def check_chain_format(db: LevelDB) -> None:
    """Refuse (:class:`ChainFormatMismatch`) a database whose blocks are not in this node's
    chain format: one stamped with another version, or one from before the stamp (v1)."""
    try:
        found = int(db[CHAIN_FORMAT_KEY])
    except KeyError:
        found = 1
    if found != extradata.CHAIN_FORMAT_VERSION:
        raise ChainFormatMismatch(
            f"the data directory holds a chain in chain format v{found}"
            + (" (QBFT extraData with a 4-byte round)" if found == 1 else "")
            + f", this node reads chain format v{extradata.CHAIN_FORMAT_VERSION} (Besu QBFT's "
            f"extraData: the round as a canonical RLP scalar); {UPGRADE_ADVICE}"
        )


class Ledger:
    """One node's chain on LevelDB: queries, block building and block import.

    Parameters
    ----------
    db:
        The node's LevelDB.
    genesis:
        The network's genesis; the data directory is initialised with it on first open and
        must match it afterwards.
    """

    def __init__(self, db: LevelDB, genesis: Genesis) -> None:
        self.db = db
        self.genesis = genesis
        db.check_schema()
        chain_class = Chain.configure(
            __name__="PortLedgerChain",
            vm_configuration=((0, PortLedgerVM),),
            chain_id=genesis.chain_id,
            consensus_context_class=ConsensusContext,
            chaindb_class=QbftChainDB,
        )
        self.chaindb = QbftChainDB(db)
        consortium = genesis.portledger.get("contracts", {}).get("Consortium", {})
        self.consortium = (
            to_canonical_address(consortium["address"]) if consortium.get("address") else None
        )
        #: Consortium version (:meth:`consortium_version`) -> the validator set decided there.
        self._validators_cache: dict[bytes, tuple[bytes, ...]] = {}
        #: (Consortium version, address) -> member account? (the builder, the importer and the
        #: pool ask per sender)
        self._member_cache: dict[tuple[bytes, bytes], bool] = {}
        #: State root -> Consortium version there.
        self._version_cache: dict[bytes, bytes] = {}
        self._genesis_accounts = frozenset(
            to_canonical_address(account)
            for member in genesis.portledger.get("members", [])
            for account in member.get("accounts", [])
        )
        # Genesis.state() has AccountState's shape (address -> balance, nonce, code, storage);
        # node.genesis types it as plain dicts.
        expected_genesis = chain_class.from_genesis(
            AtomicDB(), genesis.header_params(), cast(AccountState, genesis.state())
        ).get_canonical_head()
        try:
            stored_genesis = db[NodeKeys.genesis_hash]
        except KeyError:
            with db.block_write():
                chain = chain_class.from_genesis(
                    db, genesis.header_params(), cast(AccountState, genesis.state())
                )
                db[NodeKeys.genesis_hash] = chain.get_canonical_block_header_by_number(
                    BlockNumber(0)
                ).hash
                db[CHAIN_FORMAT_KEY] = str(extradata.CHAIN_FORMAT_VERSION).encode()
            self.chain = chain
        else:
            check_chain_format(db)
            if stored_genesis != expected_genesis.hash:
                raise ChainError(
                    f"data directory was initialised with genesis 0x{stored_genesis.hex()}, "
                    f"the genesis file gives 0x{expected_genesis.hash.hex()}"
                )
            self.chain = chain_class(db)

    # -- queries -------------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self.genesis.chain_id

    def head(self) -> BlockHeaderAPI:
        return self.chaindb.get_canonical_head()

    def genesis_header(self) -> BlockHeaderAPI:
        return self.chaindb.get_canonical_block_header_by_number(BlockNumber(0))

    def header_by_number(self, number: int) -> BlockHeaderAPI:
        return self.chaindb.get_canonical_block_header_by_number(BlockNumber(number))

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI:
        return self.chaindb.get_block_header_by_hash(Hash32(block_hash))

    def block_by_header(self, header: BlockHeaderAPI) -> BlockAPI:
        return self.chain.get_vm(header).get_block_class().from_header(header, self.chaindb)

    def receipts(self, header: BlockHeaderAPI) -> tuple[ReceiptAPI, ...]:
        vm_class = self.chain.get_vm_class(header)
        receipt_builder = vm_class.get_receipt_builder()
        return tuple(self.chaindb.get_receipts(header, receipt_builder))

    def vm_at(self, header: BlockHeaderAPI) -> PortLedgerVM:
        """The VM on ``header``: its state is ``header``'s state root (a block's post-state,
        for calls and reads; for an unsealed template, its parent's, to build on)."""
        # py-evm types get_vm as VirtualMachineAPI; our vm_configuration has only PortLedgerVM.
        return self.chain.get_vm(header)  # type: ignore[return-value]

    def state_at(self, header: BlockHeaderAPI) -> Any:
        return self.vm_at(header).state

    # -- calls and permissioning -----------------------------------------------------------
    def call_state(self, header: BlockHeaderAPI) -> tuple[Any, Any]:
        """(vm, costless state) on ``header``'s post-state for calls, as ``in_costless_state``
        builds it (zero base fee, the block's hashes); reusable across calls (see call)."""
        vm = self.vm_at(header)
        child = vm.generate_block_from_parent_header_and_coinbase(header, header.coinbase)
        state = vm.build_state(
            vm.chaindb.db,
            child.header.copy(base_fee_per_gas=0),
            vm.chain_context,
            # py-evm types previous_hashes Optional; it is always a generator (never None).
            itertools.chain((header.hash,), vm.previous_hashes or ()),
        )
        return vm, state

    @staticmethod
    def _spoof(vm: Any, state: Any, call: dict[str, Any], gas_limit: int) -> SpoofTransaction:
        sender = call.get("from") or b"\x00" * 20
        unsigned = vm.create_unsigned_transaction(
            nonce=state.get_nonce(sender),
            gas_price=0,
            gas=call.get("gas") or gas_limit,
            to=call.get("to") or b"",
            value=call.get("value", 0),
            data=call.get("data", b""),
        )
        return SpoofTransaction(unsigned, from_=sender)

    def call(
        self, call: dict[str, Any], header: BlockHeaderAPI, *, on: tuple[Any, Any] | None = None
    ) -> bytes:
        """Execute a call on ``header``'s post-state without a transaction (eth_call).

        ``on`` is a (vm, state) from :meth:`call_state` to reuse (its caches survive from call
        to call; every call's changes are reverted). Raises py-evm's ``Revert`` (with the
        revert data) or another ``VMError``.
        """
        vm, state = on if on is not None else self.call_state(header)
        snapshot = state.snapshot()
        try:
            spoofed = self._spoof(vm, state, call, header.gas_limit)
            computation = state.costless_execute_transaction(spoofed)
        finally:
            state.revert(snapshot)
        computation.raise_if_error()
        return bytes(computation.output)

    def estimate_gas(self, call: dict[str, Any], header: BlockHeaderAPI) -> int:
        vm = self.vm_at(header)
        spoofed = self._spoof(vm, vm.state, call, header.gas_limit)
        # py-evm types estimate_gas for a SignedTransactionAPI, yet its estimator
        # (eth.estimators.gas) asks for a SpoofTransaction for an unsigned call and casts it.
        return int(self.chain.estimate_gas(spoofed, header))  # type: ignore[arg-type]

    def is_member_account(self, address: bytes, header: BlockHeaderAPI) -> bool:
        """Account permissioning, a chain rule: may ``address`` send transactions in the
        child of ``header``? Asks the Consortium contract at that state; a network without a
        Consortium falls back to the accounts its genesis lists."""
        if self.consortium is None:
            return address in self._genesis_accounts
        key = (self.consortium_version(header), address)
        cached = self._member_cache.get(key)
        if cached is None:
            output = self.call(
                {"to": self.consortium, "data": _IS_MEMBER_ACCOUNT + address.rjust(32, b"\x00")},
                header,
            )
            cached = int.from_bytes(output[-32:] or b"\x00", "big") == 1
            if len(self._member_cache) > 4096:
                self._member_cache.clear()
            self._member_cache[key] = cached
        return cached

    def decode_transaction(self, raw: bytes) -> SignedTransactionAPI:
        """Decode a raw (legacy or EIP-2718 typed) signed transaction."""
        builder = self.chain.get_vm_class_for_block_number(
            BlockNumber(self.head().block_number + 1)
        )
        return builder.get_transaction_builder().decode(raw)

    def validators_at(self, header: BlockHeaderAPI) -> tuple[bytes, ...]:
        """The validator set that must seal the child of ``header``: the list in its
        extraData (sorted addresses)."""
        return extradata.decode(header.extra_data).validators

    def decided_validators(self, header: BlockHeaderAPI) -> tuple[bytes, ...]:
        """The validator set decided on chain at ``header``'s post-state (sorted):
        ``Consortium.getValidators()``, so a governance vote executed in block N changes the
        list in header N and the sealers of N + 1. Without a Consortium: the genesis set."""
        version = self.consortium_version(header)
        cached = self._validators_cache.get(version)
        if cached is not None:
            return cached
        if self.consortium is None:
            found = extradata.decode(self.genesis_header().extra_data).validators
        else:
            output = self.call({"to": self.consortium, "data": _GET_VALIDATORS}, header)
            count = int.from_bytes(output[32:64], "big")
            found = tuple(output[64 + 32 * i + 12 : 64 + 32 * (i + 1)] for i in range(count))
        validators = tuple(sorted(found))
        if len(self._validators_cache) > 64:
            self._validators_cache.clear()
        self._validators_cache[version] = validators
        return validators

    def consortium_version(self, header: BlockHeaderAPI) -> bytes:
        """The Consortium account's storage root and code hash at ``header``'s post-state
        (empty without a Consortium, or where it has no account).

        ``isMemberAccount`` and ``getValidators`` are views that read only the Consortium's
        own storage, so their answers are a function of this and their arguments: caching
        them by it instead of by state root keeps them from one block to the next as long as
        no governance transaction touched the Consortium. Before, every block's new state root
        made every sender's member check (in the builder, in every validator's execution and in
        the pool's admission at the new head) and the validator-set read a fresh EVM call on a
        freshly built costless state — a quarter of a validator's block-execution time in the
        py-spy profile of a saturated devnet (issue 17). Reading the account is a few trie
        node reads (from the state as this thread sees it, like the call's)."""
        if self.consortium is None:
            return b""
        cached = self._version_cache.get(header.state_root)
        if cached is None:
            raw = HexaryTrie(self.db, header.state_root).get(keccak(self.consortium))
            if raw:
                account = rlp.decode(raw, sedes=Account)
                cached = account.storage_root + account.code_hash
            else:
                cached = b""
            if len(self._version_cache) > 64:
                self._version_cache.clear()
            self._version_cache[header.state_root] = cached
        return cached

    # -- building ------------------------------------------------------------------------
    def unsealed_header(
        self,
        parent: BlockHeaderAPI,
        *,
        timestamp: int,
        proposer: bytes,
        round_: int = 0,
        vanity: bytes = b"portledger".ljust(32, b"\x00"),
    ) -> BlockHeaderAPI:
        extra = extradata.ExtraData(vanity, self.validators_at(parent), None, round_, ())
        return self.chain.create_header_from_parent(
            parent,
            timestamp=timestamp,
            coinbase=proposer,
            extra_data=extra.encode(),
            mix_hash=BFT_MIX_HASH,
        )

    def execute(
        self,
        template: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        *,
        deadline: float | None = None,
    ) -> BlockResult:
        """Execute ``transactions`` on ``template``'s parent; return the unsealed block.

        Transactions invalid at that state (bad nonce, non-member sender) are left out and
        reported in ``rejected``; those that no longer fit (block gas limit, or ``deadline``,
        a ``time.monotonic()`` instant after which no further transaction starts, though the
        first always does) are left out
        as ``deferred``, and so is every later transaction of a sender that had one left out,
        so that a gap never turns the sender's next nonces invalid. Writes state nodes into the
        current block write, so call it inside :meth:`node.db.LevelDB.block_write`.
        """
        started = time.monotonic()
        vm = self.vm_at(template)
        block = vm.get_block_class()(template, transactions=[], uncles=[], withdrawals=[])
        vm._block = block
        header = template.copy(gas_used=0)
        vm.block_preprocessing(block)
        included: list[SignedTransactionAPI] = []
        receipts: list[ReceiptAPI] = []
        rejected: list[tuple[SignedTransactionAPI, str]] = []
        deferred: list[SignedTransactionAPI] = []
        held_back: set[bytes] = set()
        parent = self.header_by_hash(template.parent_hash)
        permitted: dict[bytes, bool] = {}
        for tx in transactions:
            sender = tx.sender
            late = deadline is not None and included and time.monotonic() > deadline
            if sender in held_back or late:
                deferred.append(tx)
                continue
            if sender not in permitted:
                permitted[sender] = self.is_member_account(sender, parent)
            if not permitted[sender]:
                rejected.append((tx, f"sender 0x{sender.hex()} is not a member's account"))
                held_back.add(sender)
                continue
            if tx.gas > header.gas_limit - header.gas_used:
                deferred.append(tx)
                held_back.add(sender)
                continue
            try:
                # py-evm validates a transaction (nonce, gas, balance, signature) before it
                # touches the state, so a refusal leaves nothing to undo.
                receipt, _computation = vm.apply_transaction(header, tx)
            except ValidationError as exc:
                rejected.append((tx, str(exc)))
                held_back.add(sender)
                continue
            header = vm.add_receipt_to_header(header, receipt)
            included.append(tx)
            receipts.append(receipt)
        # No withdrawals (no beacon chain); py-evm treats () as it treated None.
        filled = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), header, included, receipts, withdrawals=()
        )
        processed = vm.block_postprocessing(filled)
        packed = vm.pack_block(processed)
        final = vm.finalize_block(packed).block
        # The header lists the validator set decided at this block's post-state.
        extra = extradata.decode(final.header.extra_data)
        decided = self.decided_validators(final.header)
        if extra.validators != decided:
            stamped = extradata.ExtraData(
                extra.vanity, decided, extra.vote, extra.round, extra.seals
            )
            final = final.copy(header=final.header.copy(extra_data=stamped.encode()))
        return BlockResult(
            final, tuple(receipts), tuple(rejected), tuple(deferred),
            execute_seconds=time.monotonic() - started,
        )  # fmt: skip

    def build(
        self,
        transactions: Sequence[SignedTransactionAPI],
        *,
        proposer: bytes,
        timestamp: int,
        round_: int = 0,
        deadline: float | None = None,
        on: Executed | None = None,
    ) -> Executed:
        """Build an unsealed block on the head: the proposer's half of a round.

        Nothing is written: the execution's trie nodes stay in :attr:`Executed.writes` until
        :meth:`commit` persists the block with its seals.

        ``on``: build speculatively on a block executed here but not committed yet (the head's
        child, e.g. the proposal of the current height) instead of on the head — pipelining,
        see :meth:`_staged_on`. The result commits only once ``on``'s block is the head
        (:meth:`commit` refuses it otherwise: the block extends that hash, nothing else).
        """
        parent = self.head() if on is None else on.block.header
        template = self.unsealed_header(
            parent,
            timestamp=max(timestamp, parent.timestamp + self.genesis.qbft.timestamp_step),
            proposer=proposer,
            round_=round_,
        )
        with self._staged_on(on) as writes:
            result = self.execute(template, transactions, deadline=deadline)
        return Executed(result, writes)

    @contextmanager
    def _staged_on(self, parent: Executed | None) -> Iterator[dict[bytes, Any]]:
        """:meth:`node.db.LevelDB.staged`, seeing ``parent``'s uncommitted execution too.

        The staged writes start as a copy of ``parent``'s writes plus its (unsealed) header
        under its hash — its block hash is the sealed block's too (round 0, no seals), so the
        child's parent link, ``BLOCKHASH`` and every state read resolve as if ``parent`` were
        committed. What the child execution did not write itself is taken out afterwards (by
        identity: the parent's objects), so the yielded dict ends as the child's own writes
        and committing it can never overwrite the parent's sealed header.
        """
        if parent is None:
            with self.db.staged() as writes:
                yield writes
            return
        header = parent.block.header
        if header.parent_hash != self.head().hash:
            raise InvalidBlock(
                f"block #{header.block_number} 0x{header.hash.hex()}: not the head's child, "
                "nothing can be built on it"
            )
        base = dict(parent.writes)
        base[header.hash] = rlp.encode(header)
        own: dict[bytes, Any] = {}
        with self.db.staged() as writes:
            writes.update(base)
            try:
                yield own
            finally:
                own.update((k, v) for k, v in writes.items() if base.get(k, _ABSENT) is not v)

    def execute_block(
        self, block: BlockAPI, *, sealed: bool, on: Executed | None = None
    ) -> Executed:
        """Validate ``block`` as the head's child and execute it; write nothing.

        ``sealed=False`` is a proposal (seals not checked yet); ``sealed=True`` also checks a
        quorum of commit seals. Raises :class:`InvalidBlock` naming the first failed check.
        ``on``: a block executed here, not committed yet (the head's child); a ``block`` whose
        parent it is executes on it (pipelining, as in :meth:`build`) and commits only after it.
        """
        if on is not None and block.header.parent_hash == on.block.hash:
            parent = on.block.header
        else:
            on = None
            try:
                parent = self.header_by_hash(block.header.parent_hash)
            except HeaderNotFound as exc:
                raise InvalidBlock(f"block #{block.number}: parent not known") from exc
            if parent.hash != self.head().hash:
                raise InvalidBlock(f"block #{block.number}: does not extend the head")
        self._validate_header(block.header, parent, sealed=sealed)
        template = self.chain.create_header_from_parent(
            parent,
            timestamp=block.header.timestamp,
            coinbase=block.header.coinbase,
            extra_data=block.header.extra_data,
        ).copy(
            mix_hash=block.header.mix_hash,
            parent_beacon_block_root=block.header.parent_beacon_block_root,
        )
        with self._staged_on(on) as writes:
            result = self.execute(template, block.transactions)
        if result.rejected:
            tx, reason = result.rejected[0]
            raise InvalidBlock(
                f"block #{block.number}: transaction 0x{tx.hash.hex()} is invalid: {reason}"
            )
        if result.deferred:
            raise InvalidBlock(
                f"block #{block.number}: transaction 0x{result.deferred[0].hash.hex()} "
                "exceeds the block gas limit"
            )
        mismatch = compare_headers(result.block.header, block.header)
        if mismatch:
            raise InvalidBlock(f"block #{block.number}: {mismatch}")
        decided = self.validators_at(result.block.header)
        if self.validators_at(block.header) != decided:
            raise InvalidBlock(
                f"block #{block.number}: validator list differs from the set decided at its "
                f"post-state ({len(decided)} validators)"
            )
        return Executed(
            BlockResult(block, result.receipts, execute_seconds=result.execute_seconds), writes
        )

    def commit(
        self, executed: Executed, *, seals: Sequence[bytes], round_: int | None = None
    ) -> BlockResult:
        """Persist an executed block with its commit seals (and round) in one synced batch.

        The execution is not repeated: its writes are committed with the sealed header. Raises
        :class:`InvalidBlock` if the seals do not prove the block or the head moved.
        """
        header = executed.block.header
        extra = extradata.decode(header.extra_data)
        if round_ is not None and round_ != extra.round:
            extra = extradata.ExtraData(extra.vanity, extra.validators, extra.vote, round_, ())
        sealed_header = header.copy(extra_data=extra.with_seals(seals).encode())
        sealed = executed.block.copy(header=sealed_header)
        if sealed_header.parent_hash != self.head().hash:
            raise InvalidBlock(f"block #{sealed.number}: does not extend the head")
        parent = self.header_by_hash(sealed_header.parent_hash)
        self._validate_header(sealed_header, parent, sealed=True)
        started = time.monotonic()
        with self.db.block_write():
            self.db.apply(executed.writes)
            self.chaindb.persist_block(sealed)
        return dataclasses.replace(
            executed.result, block=sealed, commit_seconds=time.monotonic() - started
        )

    def propose(
        self,
        transactions: Sequence[SignedTransactionAPI],
        signer: PrivateKey,
        *,
        timestamp: int | None = None,
        build_seconds: float | None = None,
    ) -> BlockResult:
        """Dev mode (single validator): build, seal with ``signer`` and persist a block.

        ``build_seconds`` bounds the time spent executing transactions (Besu likewise gives
        block building a share of the block period); what does not fit is ``deferred``.
        """
        deadline = None if build_seconds is None else time.monotonic() + build_seconds
        executed = self.build(
            transactions,
            proposer=signer.public_key.to_canonical_address(),
            timestamp=int(time.time()) if timestamp is None else timestamp,
            deadline=deadline,
        )
        digest = extradata.commit_digest(executed.block.header)
        return self.commit(executed, seals=[extradata.sign_seal(digest, signer)])

    def _validate_header(
        self, header: BlockHeaderAPI, parent: BlockHeaderAPI, *, sealed: bool
    ) -> None:
        vm = self.chain.get_vm(header)
        try:
            vm.validate_header(header, parent)
            extradata.decode(header.extra_data)
        except (ValidationError, extradata.InvalidExtraData) as exc:
            raise InvalidBlock(f"block #{header.block_number}: {exc}") from exc
        step = self.genesis.qbft.timestamp_step
        if header.timestamp < parent.timestamp + step:
            raise InvalidBlock(
                f"block #{header.block_number}: timestamp {header.timestamp} is less than "
                f"{step}s after its parent's {parent.timestamp}"
            )
        if sealed:
            try:
                vm.validate_seal(header)
                vm.validate_seal_extension(header, ())
            except ValidationError as exc:
                raise InvalidBlock(str(exc)) from exc

    # -- importing -----------------------------------------------------------------------
    def import_block(self, block: BlockAPI) -> BlockResult:
        """Validate and execute a sealed block from elsewhere; persist it atomically.

        Raises :class:`InvalidBlock` naming the first check that failed.
        """
        executed = self.execute_block(block, sealed=True)
        started = time.monotonic()
        with self.db.block_write():
            self.db.apply(executed.writes)
            self.chaindb.persist_block(block)
        return dataclasses.replace(executed.result, commit_seconds=time.monotonic() - started)


#: Header fields an importer re-derives and compares, in the order reported.
ROOT_FIELDS = (
    "state_root",
    "transaction_root",
    "receipt_root",
    "bloom",
    "gas_used",
    "requests_hash",
    "withdrawals_root",
    "excess_blob_gas",
    "blob_gas_used",
)


def compare_headers(derived: BlockHeaderAPI, claimed: BlockHeaderAPI) -> str | None:
    """Name the first derived field that differs from the claimed header, or ``None``."""
    for name in ROOT_FIELDS:
        mine, theirs = getattr(derived, name), getattr(claimed, name)
        if mine != theirs:

            def show(v: Any) -> str:
                return "0x" + v.hex() if isinstance(v, bytes) else str(v)

            return f"{name} mismatch: header says {show(theirs)}, execution gives {show(mine)}"
    return None
