// The CLI's output on a fixed set of cases, for refactors that must not change it:
//   node scripts/cli-cases.mjs OLD/dist /tmp/old.jsonl && node scripts/cli-cases.mjs dist /tmp/new.jsonl && cmp /tmp/old.jsonl /tmp/new.jsonl
// Run from the repository root (the fixtures are read from here, whichever dist runs). One JSON line
// per case: argv, exit code, stdout, stderr (replay's timings masked); the bpf cases pin under
// DISTILL_CASES_PIN_DIR (default /sys/fs/bpf/distill-test-cli-cases), removed at the end.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
const [dist, outFile] = process.argv.slice(2);
const { runCli } = await import(resolve(dist, 'cli/main.js'));
const walk = (d) => readdirSync(d).sort().flatMap((e) => { const p = join(d, e); return statSync(p).isDirectory() ? walk(p) : p.endsWith('.yaml') ? [p] : []; });
const SC = walk('fixtures/scenarios');
const CONF = walk('fixtures/conformance').filter((_, i) => i % 5 === 0);
const cases = [];
const c = (...a) => cases.push(a);
for (const f of [...SC, ...CONF]) { c('reach', '--scenario', f, '--json'); c('reach', '--scenario', f); }
c('reach', '--scenario', 'fixtures/scenarios'); c('reach', '--scenario', 'fixtures/scenarios', '--json');
c('reach', '--scenario', 'fixtures/conformance/accept', 'fixtures/conformance/refuse', '-o', 'yaml');
for (const f of SC.slice(0, 40)) {
  c('reach', '--scenario', f, '-o', 'wide'); c('reach', '--scenario', f, '-o', 'yaml'); c('reach', '--scenario', f, '--explain', '--json'); c('reach', '--scenario', f, '--naive');
  c('verify', '--scenario', f); c('verify', '--scenario', f, '--json'); c('verify', '--scenario', f, '-o', 'yaml');
}
c('verify', '--scenario', 'fixtures/scenarios'); c('verify', '--scenario', 'fixtures/conformance/cilium', '--json');
const manifests = [...readdirSync('examples/cli').map((f) => `examples/cli/${f}`), ...readdirSync('test/fidelity').filter((f) => f.endsWith('.yaml')).map((f) => `test/fidelity/${f}`)];
for (const f of manifests) { c('validate', f); c('validate', '-f', f, '-o', 'json'); }
c('validate', 'examples/cli', 'test/fidelity', '-o', 'yaml'); c('validate', SC[0]); c('validate', SC[0], '-o', 'json'); c('validate'); c('validate', '/nonexistent.yaml');
for (const f of SC.slice(0, 25)) {
  c('maps', 'dump', '--scenario', f, '--all'); c('maps', 'dump', '--scenario', f, '--all', '--json'); c('maps', 'dump', '--scenario', f, '--all', '-o', 'yaml');
  c('maps', 'dump', '--scenario', f, '--all', '-o', 'wide'); c('maps', 'dump', '--scenario', f, '--all', '--step', '0'); c('maps', 'list', '--scenario', f); c('selectors', '--scenario', f); c('identities', '--scenario', f, '-o', 'json');
}
c('maps', 'dump', '--scenario', SC[0]); c('maps', 'dump', '--scenario', SC[0], '--endpoint', 'x/y'); c('maps', 'dump', '--scenario', SC[0], '--all', '--step', 'abc'); c('maps', 'dump', '--scenario', SC[0], '--all', '--endpoint', 'a/b');
c('gen', '--profile', 'small', '--seed', '3'); c('gen', '--profile', 'cilium-ci', '--seed', '7', '--churn', '50'); c('gen', '--profile', 'small', '--scale', '2', '--nodes', '3', '--churn', '20');
c('gen', '--profile', 'small', '--seed', '-1'); c('gen', '--profile', 'small', '--seed', 'x'); c('gen', '--profile', 'nope'); c('gen'); c('gen', '--profile', 'small', '--scale', 'NaN');
c('replay', 'fixtures/traces/small.jsonl', '--json'); c('replay', 'fixtures/traces/small.jsonl', '--json', '--verify-every', '5', '--mode', 'full');
c('replay', 'fixtures/traces/small.jsonl', '-o', 'yaml', '--limit', '10'); c('replay', 'fixtures/traces/small.jsonl');
c('replay', '/nonexistent.jsonl'); c('replay', 'fixtures/traces/small.jsonl', '--limit', 'x'); c('replay', 'fixtures/traces/small.jsonl', '--verify-every', '0'); c('replay', 'examples/cli/open-deathstar.yaml');
c(); c('--help'); c('--version'); c('frob'); c('reach'); c('reach', '--scenario', 'x', '--bogus'); c('reach', '--scenario', 'x', '-o', 'xml'); c('reach', '--scenario', '/nonexistent');
c('--max-input-bytes', '10', 'reach', '--scenario', SC[0]); c('--max-input-bytes', '10Q', 'reach', '--scenario', 'x'); c('--max-input-bytes', '10', 'replay', 'fixtures/traces/small.jsonl'); c('--max-input-bytes', '10', 'validate', 'examples/cli');
for (const cmd of [['reach'], ['verify'], ['gen'], ['replay'], ['maps'], ['maps', 'dump'], ['validate'], ['trace'], ['plan'], ['help']]) c(...cmd, '--help');
c('help', 'reach'); c('verify'); c('replay'); c('maps'); c('maps', 'dump');
const S = 'fixtures/scenarios/cilium-docs/l7-star-wars.yaml';
c('trace', '--scenario', SC[0], '--from', 'a/b', '--to', 'c/d', '--port', '80'); c('trace', '--scenario', SC[0], '--from', 'a/b', '--to', 'c/d', '--port', '99999/TCP');
c('plan', '--scenario', SC[0]); c('plan', '--scenario', SC[0], '--delete', 'foo');
c('trace', '--scenario', S, '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', '80/TCP', '--http-method', 'PUT', '--http-path', '/v1/exhaust-port');
c('explain', '--scenario', S, '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', '80/TCP', '-o', 'json');
c('trace', '--scenario', S, '--from', 'default/xwing', '--to', 'default/deathstar', '--port', '80', '-o', 'yaml', '--step', '0');
c('trace', '--scenario', S, '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', '80/TCP', '-f', 'examples/cli/open-deathstar.yaml', '--kafka-topic', 'x');
c('plan', '--scenario', S, '--delete', 'CiliumNetworkPolicy/default/rule1', '-o', 'wide'); c('plan', '--scenario', S, '-f', 'examples/cli/kafka-on-80.yaml'); c('plan', '--scenario', S, '-f', 'examples/cli/open-deathstar.yaml', '-o', 'json', '--port', '443/TCP');
c('maps', 'dump', '--scenario', S, '--endpoint', 'default/deathstar'); c('maps', 'dump', '--scenario', S, '--endpoint', 'default/deathstar', '--json');
const P = process.env.DISTILL_CASES_PIN_DIR ?? '/sys/fs/bpf/distill-test-cli-cases';
c('reach', '--scenario', S, '--backend', 'bpf', '--pin-dir', P, '--json'); c('verify', '--scenario', 'fixtures/scenarios/cilium-docs', '--backend', 'bpf', '--pin-dir', P);
c('maps', 'dump', '--scenario', S, '--all', '--backend', 'bpf', '--pin-dir', P); c('replay', 'fixtures/traces/small.jsonl', '--json', '--backend', 'bpf', '--pin-dir', P);
c('reach', '--scenario', S, '--backend', 'bpf', '--pin-dir', '/tmp/not-bpffs-distill-cases');
const mask = (s) => s.replace(/"(eventsPerSec|ms|heapBytes|peakHeapBytes|p50|p90|p99|max)":[0-9.e+-]+/g, '"$1":T').replace(/(eventsPerSec|ms|heapBytes|peakHeapBytes|p50|p90|p99|max): [0-9.e+-]+/g, '$1: T').replace(/[0-9]+(\.[0-9]+)? (events\/s|ms|MB)/g, 'T $2').replace(/^(  [a-z-]+ +[0-9]+)( +[0-9.]+){4}$/gm, '$1 T');
const lines = [];
for (const argv of cases) {
  let out = '', err = '';
  let exit;
  try { exit = runCli(argv, { out: (s) => { out += s; }, err: (s) => { err += s; } }); } catch (e) { exit = `THREW ${e}`; }
  if (argv[0] === 'replay' || argv.includes('replay')) { out = mask(out); err = mask(err); }
  lines.push(JSON.stringify({ argv, exit, out, err }));
}
rmSync(P, { recursive: true, force: true });
// a few through the real bin: stdin, exit codes of the process
const bin = resolve(dist, 'cli/main.js');
for (const [argv, input] of [[['validate', '-'], 'examples/cli/open-deathstar.yaml'], [['reach', '--scenario', SC[0]], null], [['frob'], null], [[], null], [['--version'], null], [['gen', '--profile', 'small'], null]]) {
  let r;
  try { r = { exit: 0, out: execFileSync('node', [bin, ...argv], { input: input ? readFileSync(input) : '', encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }) }; } catch (e) { r = { exit: e.status, out: e.stdout, err: e.stderr }; }
  lines.push(JSON.stringify({ bin: argv, ...r }));
}
writeFileSync(outFile, lines.join('\n') + '\n');
console.log(cases.length, 'cases');
