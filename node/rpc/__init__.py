"""Ethereum JSON-RPC 2.0 over HTTP and WebSocket (aiohttp), as web3.py and ethers.js use it.

Every failure is a JSON-RPC error object — parse error (-32700), invalid request (-32600),
unknown method (-32601), invalid params (-32602), execution reverted (3, with the revert data),
transaction refused (-32003 / -32007 for non-members), resource limits (-32005) — and never
stops the server.

Modules, by namespace:

- :mod:`node.rpc.app` — ``create_rpc_app`` (HTTP ``POST /``, WebSocket on ``/`` and ``/ws``)
  and the ``JsonRpc`` dispatcher composing the namespaces' method tables;
- :mod:`node.rpc.errors` — ``RpcError``, the JSON-RPC error codes, parameter parsing;
- :mod:`node.rpc.limits` — ``RpcLimits``: body size, batch length, concurrency, subscriptions;
- :mod:`node.rpc.metrics` — the node's Prometheus metrics (``GET /metrics``): limits, queue
  sizes, refusals;
- :mod:`node.rpc.format` — the JSON of headers, blocks, transactions, logs and receipts;
- :mod:`node.rpc.chainview` — block tags (EIP-1898 too), states, cached receipts;
- :mod:`node.rpc.eth` — ``eth_``: state, calls, transactions, blocks, receipts, ``eth_getProof``;
- :mod:`node.rpc.filters` — ``eth_getLogs``, polled filters, log criteria;
- :mod:`node.rpc.websocket` — ``eth_subscribe`` sessions (``newHeads``, ``logs``);
- :mod:`node.rpc.net` — ``web3_``, ``net_``, ``txpool_``;
- :mod:`node.rpc.qbft` — ``qbft_getValidatorsByBlockNumber``;
- :mod:`node.rpc.portledger` — ``portledger_``: status, equivocation evidence, proof bundles.
"""
