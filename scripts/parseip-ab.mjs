// A/B of parseIp: base build /work/q15/dist (981d191) vs this clone's dist; 20,000 addresses (half IPv4, half IPv6) x10 per run, alternating. Usage: node scripts/parseip-ab.mjs
const [oldm, newm] = await Promise.all([import('/work/q15/dist/model/cidr.js'), import('/work/h-addr/dist/model/cidr.js')]);
const inputs = []; for (let i = 0; i < 20000; i++) inputs.push(i % 2 ? `10.${(i>>8)&255}.${i&255}.7` : `fd00:10:244::${i.toString(16)}`);
const run = (m) => { const t = process.hrtime.bigint(); for (let k = 0; k < 10; k++) for (const s of inputs) m.parseIp(s); return Number(process.hrtime.bigint() - t) / 1e6; };
run(oldm); run(newm);
const r = [];
for (let i = 0; i < 5; i++) { const a = run(oldm), b = run(newm); r.push(b / a); console.log(`run ${i}: old ${a.toFixed(1)} ms new ${b.toFixed(1)} ms ratio ${(b/a).toFixed(2)}`); }
r.sort(); console.log('median new/old', r[2].toFixed(2), 'range', r[0].toFixed(2), r[4].toFixed(2));
