"""A whole port on one machine: devnet processes, the demo story, SIMULATED feeds, dev keys.

Bottom to top:

- ``errors``     DevnetError, DevnetTimeout
- ``ports``      free_port / free_ports (loopback)
- ``jsonrpc``    the one synchronous JSON-RPC client (RpcClient, rpc_call, wait_for, RpcError)
- ``layout``     a devnet's files only: keys, genesis, data directories, peers (create_devnet)
- ``status``     what each node reports (node_status) and the status table
- ``processes``  the node processes (Devnet): start, signal, stop, query; every wait bounded
- ``load``       paced cargo load and its report (CargoLoad, LoadReport, BlockWatcher)
- ``accounts``   the demo organisations' gateway accounts (PUBLIC development keys)
- ``gateway``    the gateway process of a devnet, its client, and Port (devnet + gateway + clients)
- ``simulate``   the SIMULATED vessel call and live feed (pure request builders)
- ``demo``       ``portledger demo``: the story through the gateway, checked
- ``cli``        the devnet's ``portledger`` commands (demo, devnet, demo-accounts)
"""
