// Child for the kill -9 test: allocates one identity on a short lease, says so, then idles until killed.
import { connectEtcd } from '../../dist/kvstore/client.js';
import { IdentityAllocator } from '../../dist/kvstore/allocator.js';

const [url, node, ...labels] = process.argv.slice(2);
const client = connectEtcd(url);
const allocator = await IdentityAllocator.create(client, { url, node, leaseTtlSec: 2 });
const { id } = await allocator.allocate(labels);
process.stdout.write(`ready ${id}\n`);
setInterval(() => {}, 1000);
