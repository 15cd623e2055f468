// A minimal IPFS HTTP RPC endpoint over the real UnixFS importer and exporter (the libraries IPFS
// nodes in JS use), in memory, on 127.0.0.1:PORT: /api/v0/add, /api/v0/cat, /api/v0/block/put and
// /api/v0/block/get, with kubo's parameter names. For tests only: no IPFS daemon installs here.
import http from 'node:http';
import { importer } from 'ipfs-unixfs-importer';
import { fixedSize } from 'ipfs-unixfs-importer/chunker';
import { balanced } from 'ipfs-unixfs-importer/layout';
import { exporter } from 'ipfs-unixfs-exporter';
import { MemoryBlockstore } from 'blockstore-core/memory';
import { CID } from 'multiformats/cid';
import { sha256 } from 'multiformats/hashes/sha2';

const port = Number(process.argv[2]);
const blockstore = new MemoryBlockstore();
const CODECS = { raw: 0x55, 'dag-pb': 0x70 };

async function form(req, url) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const request = new Request(url, { method: 'POST', headers: req.headers, body: Buffer.concat(chunks) });
  const [, file] = [...(await request.formData()).entries()][0];
  return { name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
}

function json(res, value) {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  const q = url.searchParams;
  try {
    if (req.method !== 'POST') {
      res.writeHead(405); res.end('RPC calls are POST'); return;
    }
    if (url.pathname === '/api/v0/add') {
      const file = await form(req, url);
      const chunker = /^size-(\d+)$/.exec(q.get('chunker') ?? 'size-262144');
      if (!chunker || q.get('trickle') === 'true') throw new Error('only size-N chunkers and the balanced layout');
      const options = { cidVersion: Number(q.get('cid-version') ?? 0), rawLeaves: q.get('raw-leaves') === 'true',
                        chunker: fixedSize({ chunkSize: Number(chunker[1]) }), layout: balanced() };
      let last;
      for await (const entry of importer([{ content: file.bytes }], blockstore, options)) last = entry;
      json(res, { Name: file.name, Hash: last.cid.toString(), Size: String(last.size) });
    } else if (url.pathname === '/api/v0/cat') {
      const entry = await exporter(q.get('arg'), blockstore);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      for await (const chunk of entry.content()) res.write(chunk);
      res.end();
    } else if (url.pathname === '/api/v0/block/put') {
      const { bytes } = await form(req, url);
      const code = CODECS[q.get('cid-codec') ?? 'raw'];
      if (code === undefined || (q.get('mhtype') ?? 'sha2-256') !== 'sha2-256') throw new Error('unsupported codec or hash');
      const cid = CID.createV1(code, await sha256.digest(bytes));
      await blockstore.put(cid, bytes);
      json(res, { Key: cid.toString(), Size: bytes.length });
    } else if (url.pathname === '/api/v0/block/get') {
      const cid = CID.parse(q.get('arg'));
      if (!(await blockstore.has(cid))) throw Object.assign(new Error('block not found'), { name: 'NotFoundError' });
      let block = await blockstore.get(cid);
      if (block[Symbol.asyncIterator]) {  // newer blockstores stream
        const chunks = [];
        for await (const chunk of block) chunks.push(chunk);
        block = Buffer.concat(chunks);
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end(Buffer.from(block));
    } else {
      res.writeHead(404); res.end('no such endpoint');
    }
  } catch (err) {
    const notFound = err.name === 'NotFoundError' || /not found/i.test(String(err.message));
    res.writeHead(500, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ Message: notFound ? 'block not found' : String(err.message), Code: 0, Type: 'error' }));
  }
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
