// Drive @polkadot/api against a node: connect, read storage, call runtime APIs, follow heads, sign and submit.
// Usage: node polkadot_check.mjs ws://127.0.0.1:PORT
// Prints one JSON line per step ({"step": name, "value": ...}), then the whole result as the last line.
// Any failure (or the hard timeout) prints {"failed": step, "error": message} on stderr and exits 1.
import { ApiPromise, WsProvider, Keyring } from '@polkadot/api';

const url = process.argv[2];
const out = {};
let current = 'connect';

function fail(err) {
  console.error(JSON.stringify({ failed: current, error: String(err?.message ?? err) }));
  if (err?.stack) console.error(err.stack);
  process.exit(1);
}
process.on('unhandledRejection', fail);
const deadline = setTimeout(() => fail(new Error('timed out after 90 s')), 90_000);

async function step(name, fn) {
  current = name;
  out[name] = await fn();
  console.log(JSON.stringify({ step: name, value: out[name] }));
}

// Resolves once the extrinsic is finalized, with the block it went into and the event names.
function submit(api, tx, signer) {
  return new Promise((resolve, reject) => {
    let inBlock = null;
    tx.signAndSend(signer, ({ status, events, dispatchError }) => {
      if (status.isInvalid || status.isDropped || status.isUsurped) reject(new Error(`status ${status.type}`));
      if (status.isInBlock) inBlock = status.asInBlock.toHex();
      if (!status.isFinalized) return;
      const names = events.map(({ event }) => `${event.section}.${event.method}`);
      const paid = events.find(({ event }) => api.events.transactionPayment.TransactionFeePaid.is(event));
      let error = null;
      if (dispatchError) {
        const meta = dispatchError.isModule ? api.registry.findMetaError(dispatchError.asModule) : null;
        error = meta ? `${meta.section}.${meta.name}` : dispatchError.toString();
      }
      resolve({ inBlock, finalized: status.asFinalized.toHex(), events: names, error,
                fee: paid ? paid.event.data[1].toString() : null });
    }).catch(reject);
  });
}

// The number of the first header a subscription delivers; unsubscribes afterwards.
async function firstHead(subscribe) {
  let got;
  const head = new Promise((resolve) => { got = resolve; });
  const unsubscribe = await subscribe((header) => got(header.number.toNumber()));
  const number = await head;
  unsubscribe();
  return number;
}

async function main() {
  let api;
  await step('connect', async () => {
    api = await ApiPromise.create({ provider: new WsProvider(url), throwOnConnect: true, noInitWarn: true });
    return {
      chain: (await api.rpc.system.chain()).toString(),
      genesis: api.genesisHash.toHex(),
      specName: api.runtimeVersion.specName.toString(),
      specVersion: api.runtimeVersion.specVersion.toNumber(),
      metadataVersion: api.runtimeMetadata.version,
      ss58: api.registry.chainSS58,
      decimals: api.registry.chainDecimals[0],
    };
  });
  const keyring = new Keyring({ type: 'sr25519', ss58Format: 42 });
  const alice = keyring.addFromUri('//Alice');
  const bob = keyring.addFromUri('//Bob');
  const transfer = api.tx.balances.transferKeepAlive(bob.address, 12_345_678n);

  await step('storage', async () => ({
    aliceFree: (await api.query.system.account(alice.address)).data.free.toString(),
    taskCount: (await api.query.decentralMLModule.taskCount()).toNumber(),
    openTasks: (await api.query.decentralMLModule.openTasks()).toJSON(),
    calls: Object.keys(api.tx.decentralMLModule).sort(),
  }));
  await step('runtimeCalls', async () => ({
    metadataVersions: (await api.call.metadata.metadataVersions()).map((v) => v.toNumber()),
    aliceNonce: (await api.call.accountNonceApi.accountNonce(alice.address)).toNumber(),
    transferFee: (await transfer.paymentInfo(alice)).partialFee.toString(),
  }));
  await step('newHead', () => firstHead((cb) => api.rpc.chain.subscribeNewHeads(cb)));
  await step('finalizedHead', () => firstHead((cb) => api.rpc.chain.subscribeFinalizedHeads(cb)));
  await step('transfer', () => submit(api, transfer, alice));
  await step('failedCall', () => submit(api, api.tx.decentralMLModule.assignTask(987654), bob));

  current = 'disconnect';
  await api.disconnect();
  console.log(JSON.stringify(out));
}

main().then(() => { clearTimeout(deadline); process.exit(0); }, fail);
