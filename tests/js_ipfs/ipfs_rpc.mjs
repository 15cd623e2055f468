// A minimal IPFS HTTP RPC endpoint (/api/v0/add, /api/v0/cat) over the real UnixFS importer and
// exporter, in memory, on 127.0.0.1:PORT. For tests only: no IPFS daemon installs on our machines.
import http from 'node:http';
import { importer } from 'ipfs-unixfs-importer';
import { exporter } from 'ipfs-unixfs-exporter';
import { MemoryBlockstore } from 'blockstore-core/memory';

const port = Number(process.argv[2]);
const blockstore = new MemoryBlockstore();

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  try {
    if (req.method === 'POST' && url.pathname === '/api/v0/add') {
      const form = await new Request(url, { method: 'POST', headers: req.headers, body: await body(req) }).formData();
      const file = form.get('file');
      const options = { cidVersion: Number(url.searchParams.get('cid-version') ?? 0),
                        rawLeaves: url.searchParams.get('raw-leaves') === 'true' };
      let last;
      for await (const entry of importer([{ content: new Uint8Array(await file.arrayBuffer()) }], blockstore, options)) {
        last = entry;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ Name: file.name, Hash: last.cid.toString(), Size: String(last.size) }));
    } else if (req.method === 'POST' && url.pathname === '/api/v0/cat') {
      const entry = await exporter(url.searchParams.get('arg'), blockstore);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      for await (const chunk of entry.content()) res.write(chunk);
      res.end();
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
