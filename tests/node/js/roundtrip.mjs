// ethers.js v6 round trip against a PortLedger node: deploy, transact, call, read logs.
// Usage: node roundtrip.mjs CONFIG.json   (rpcUrl, privateKey, abi, bytecode, chainId)
// Prints one JSON object on stdout; exits non-zero (with {"error": ...}) on any failure.
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const fees = { maxFeePerGas: 0n, maxPriorityFeePerGas: 0n };

async function main() {
  const network = new ethers.Network("portledger", BigInt(config.chainId));
  const provider = new ethers.JsonRpcProvider(config.rpcUrl, network, {
    staticNetwork: network,
    pollingInterval: 250,
    // ethers de-duplicates identical requests for 250 ms by default; a chain that seals a
    // block within that window (as this one does) would hand the second transaction the
    // cached "pending" nonce of the first. Documented option; Hardhat users do the same.
    cacheTimeout: -1,
  });
  const wallet = new ethers.Wallet(config.privateKey, provider);
  const chainId = (await provider.getNetwork()).chainId;
  const startBlock = await provider.getBlockNumber();

  const factory = new ethers.ContractFactory(config.abi, config.bytecode, wallet);
  const deployed = await factory.deploy({ ...fees });
  const deployTx = deployed.deploymentTransaction();
  await deployed.waitForDeployment();
  const deployReceipt = await deployTx.wait(1, 30_000);
  const address = await deployed.getAddress();
  const code = await provider.getCode(address);

  const contract = new ethers.Contract(address, config.abi, wallet);
  const estimate = await contract.bump.estimateGas(5);
  const bumps = [];
  for (const by of [5, 6]) {
    const tx = await contract.bump(by, { ...fees });
    const receipt = await tx.wait(1, 30_000);
    bumps.push({
      hash: tx.hash,
      status: receipt.status,
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash,
      gasUsed: receipt.gasUsed.toString(),
      gasPrice: receipt.gasPrice.toString(),
      type: tx.type,
    });
  }
  const counter = await contract.counter();
  const last = await contract.last(wallet.address);
  const small = await contract.small(3);
  let revert = null;
  try {
    await contract.small(42);
  } catch (err) {
    revert = { code: err.code, reason: err.reason ?? null, data: err.data ?? null };
  }

  const events = await contract.queryFilter(contract.filters.Bumped(wallet.address), startBlock, "latest");
  const otherEvents = await contract.queryFilter(contract.filters.Bumped(ethers.ZeroAddress), startBlock, "latest");
  const block = await provider.getBlock(bumps[1].blockNumber, true);

  return {
    chainId: chainId.toString(),
    sender: wallet.address,
    address,
    deployStatus: deployReceipt.status,
    deployContractAddress: deployReceipt.contractAddress,
    codeLength: (code.length - 2) / 2,
    estimate: estimate.toString(),
    bumps,
    counter: counter.toString(),
    last: last.toString(),
    small: small.toString(),
    revert,
    events: events.map((e) => ({
      who: e.args.who,
      by: e.args.by.toString(),
      total: e.args.total.toString(),
      transactionHash: e.transactionHash,
      blockNumber: e.blockNumber,
    })),
    otherEvents: otherEvents.length,
    block: {
      number: block.number,
      hash: block.hash,
      transactions: block.prefetchedTransactions.map((t) => t.hash),
      baseFeePerGas: block.baseFeePerGas?.toString() ?? null,
    },
  };
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out after 90 s" }));
  process.exit(3);
}, 90_000);

main()
  .then((result) => {
    clearTimeout(timer);
    console.log(JSON.stringify(result));
    process.exit(0);
  })
  .catch((err) => {
    clearTimeout(timer);
    console.log(JSON.stringify({ error: String(err && err.stack ? err.stack : err) }));
    process.exit(1);
  });
