// Connect @polkadot/api to a node, read storage, sign and submit a transfer; print one JSON line.
// Usage: node polkadot_check.mjs ws://127.0.0.1:PORT   (exits non-zero on any failure)
import { ApiPromise, WsProvider, Keyring } from '@polkadot/api';

const url = process.argv[2];
const deadline = setTimeout(() => { console.error('timed out'); process.exit(2); }, 90_000);

async function main() {
  const api = await ApiPromise.create({ provider: new WsProvider(url), throwOnConnect: true,
                                        noInitWarn: true });
  await api.isReady;
  const keyring = new Keyring({ type: 'sr25519', ss58Format: 42 });
  const alice = keyring.addFromUri('//Alice');
  const bob = keyring.addFromUri('//Bob');
  const out = {
    chain: (await api.rpc.system.chain()).toString(),
    genesis: api.genesisHash.toHex(),
    specName: api.runtimeVersion.specName.toString(),
    specVersion: api.runtimeVersion.specVersion.toNumber(),
    ss58: api.registry.chainSS58,
    decimals: api.registry.chainDecimals[0],
    aliceFree: (await api.query.system.account(alice.address)).data.free.toString(),
    taskCount: (await api.query.decentralMLModule.taskCount()).toNumber(),
    openTasks: (await api.query.decentralMLModule.openTasks()).toJSON(),
    calls: Object.keys(api.tx.decentralMLModule).sort(),
  };
  out.firstHead = await new Promise((resolve, reject) => {
    api.rpc.chain.subscribeNewHeads((header) => resolve(header.number.toNumber())).catch(reject);
  });
  out.transfer = await new Promise((resolve, reject) => {
    api.tx.balances.transferKeepAlive(bob.address, 12_345_678n)
      .signAndSend(alice, ({ status, events, dispatchError }) => {
        if (dispatchError) reject(new Error(`dispatch error ${dispatchError.toString()}`));
        if (status.isInBlock || status.isFinalized) {
          resolve({
            block: status.isInBlock ? status.asInBlock.toHex() : status.asFinalized.toHex(),
            events: events.map(({ event }) => `${event.section}.${event.method}`),
          });
        }
      }).catch(reject);
  });
  const failed = await new Promise((resolve, reject) => {
    api.tx.decentralMLModule.assignTask(987654).signAndSend(bob, ({ status, events, dispatchError }) => {
      if (status.isInBlock || status.isFinalized) {
        const meta = dispatchError && dispatchError.isModule ? api.registry.findMetaError(dispatchError.asModule) : null;
        const paid = events.find(({ event }) => event.section === 'transactionPayment');
        resolve({ error: meta ? `${meta.section}.${meta.name}` : String(dispatchError),
                  fee: paid ? paid.event.data[1].toString() : null });
      }
    }).catch(reject);
  });
  out.assignError = failed;
  console.log(JSON.stringify(out));
  await api.disconnect();
}

main().then(() => { clearTimeout(deadline); process.exit(0); })
      .catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
