// Child of attacks-24d's 1812 test: a reader of a pinned policy map running beside its writer, as
// an endpoint program does. Looks up one packet key in a loop and prints `open` the first time the
// answer is a plain allow (no deny, no redirect); prints `ready` once looping and `lookups <n>` when
// stdin closes.
import { BpfBackend } from '../../dist/backend/bpf.js';

const [pinDir, endpoint, identity, protocol, port] = process.argv.slice(2);
const reader = new BpfBackend({ pinDir, readOnly: true });
let stop = false;
let n = 0;
let open = false;
process.stdin.on('end', () => (stop = true));
process.stdin.resume();
process.stdout.write('ready\n');
const spin = () => {
  const until = performance.now() + 20;
  while (performance.now() < until) {
    const v = reader.lookup(endpoint, Number(identity), 'ingress', Number(protocol), Number(port));
    n++;
    if (!open && v && !v.entry.deny && v.entry.proxyPort === 0) {
      open = true;
      process.stdout.write('open\n');
    }
  }
  if (stop) {
    process.stdout.write(`lookups ${n}\n`);
    reader.close();
  } else setImmediate(spin);
};
spin();
