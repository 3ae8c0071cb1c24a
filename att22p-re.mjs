import { RE2JS } from 're2js';
const pats = process.argv.slice(2);
for (const p of pats) {
  const t = process.cpuUsage();
  try { const re = RE2JS.compile(p); console.log(JSON.stringify(p), 'OK', ((process.cpuUsage(t).user)/1e3|0)+'ms'); }
  catch (e) { console.log(JSON.stringify(p), 'ERR', e.message, ((process.cpuUsage(t).user)/1e3|0)+'ms'); }
}
