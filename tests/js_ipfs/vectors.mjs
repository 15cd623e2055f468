// Prints the CID and DAG size the real UnixFS importer gives a file: how the known vectors in
// tests/test_storage_cid.py were made. Usage: node vectors.mjs FILE [CHUNK_SIZE MAX_CHILDREN]
import fs from 'node:fs';
import { importer } from 'ipfs-unixfs-importer';
import { fixedSize } from 'ipfs-unixfs-importer/chunker';
import { balanced } from 'ipfs-unixfs-importer/layout';
import { MemoryBlockstore } from 'blockstore-core/memory';

const [file, chunkSize, maxChildren] = process.argv.slice(2);
const options = { cidVersion: 1, rawLeaves: true };
if (chunkSize) options.chunker = fixedSize({ chunkSize: Number(chunkSize) });
if (maxChildren) options.layout = balanced({ maxChildrenPerNode: Number(maxChildren) });
let last;
for await (const entry of importer([{ content: fs.readFileSync(file) }], new MemoryBlockstore(), options)) last = entry;
console.log(last.cid.toString(), String(last.size));
