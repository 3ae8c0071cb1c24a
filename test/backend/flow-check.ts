/**
 * Checks intermediate map states of a transaction against its old state O and new state N, flow
 * by flow. A flow's rank in a map: allow 0 < redirect 1 < deny or no match 2 (the datapath's
 * verdict, `datapathLookup`). A flow between two local endpoints has the higher rank of the
 * source's egress map and the destination's ingress map; other flows have one side (a peer
 * identity of any kind). Hard rule: rank(I) >= min(rank(O), rank(N)); soft: >= max.
 */
import type { MapDelta } from '../../src/engine/events.js';
import { datapathLookup, LookupResult, PolicyKey, policyKeyString } from '../../src/model/policy-map.js';
import type { Direction } from '../../src/model/rules.js';
import { entryRank } from '../../src/backend/write-plan.js';

export type Maps = Map<string, Map<string, LookupResult>>;

const PROTOCOLS = [6, 17, 132, 1, 58];
/** An identity no key names. */
const UNNAMED_IDENTITY = 70000;
const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];

interface Probe {
  readonly direction: Direction;
  readonly identity: number;
  readonly protocol: number;
  readonly port: number;
}

/** A flow: one or two (endpoint, probe index) sides. */
type Flow = readonly (readonly [string, number])[];

export interface Counts {
  hard: number;
  soft: number;
  /** Flows dropped that both the old and the new state allow (a transient drop). */
  drops: number;
}

export function copyMaps(m: Maps): Maps {
  return new Map([...m].map(([ep, s]) => [ep, new Map(s)]));
}

/** Probe ports of one protocol: every key's range ends and their neighbours, plus 0 and 65535. */
function probePorts(states: readonly Maps[]): Map<number, number[]> {
  const out = new Map<number, Set<number>>(PROTOCOLS.map((p) => [p, new Set([0, 1, 80, 65535])]));
  for (const maps of states) {
    for (const m of maps.values()) {
      for (const { key } of m.values()) {
        const set = out.get(key.protocol);
        if (!set) continue;
        const start = key.port;
        const end = key.port + 2 ** (16 - key.portPrefixLen) - 1;
        for (const p of [start - 1, start, start + 1, end - 1, end, end + 1]) if (p >= 0 && p <= 0xffff) set.add(p);
      }
    }
  }
  return new Map([...out].map(([p, s]) => [p, [...s].sort((a, b) => a - b)]));
}

function covers(key: PolicyKey, p: Probe): boolean {
  if (key.direction !== p.direction || (key.identity !== 0 && key.identity !== p.identity)) return false;
  if (key.protocol === 0) return true;
  if (key.protocol !== p.protocol) return false;
  const shift = 16 - key.portPrefixLen;
  return key.portPrefixLen === 0 || p.port >> shift === key.port >> shift;
}

const rankIn = (m: ReadonlyMap<string, LookupResult> | undefined, p: Probe): number => {
  const r = m ? datapathLookup(m, p.identity, p.direction, p.protocol, p.port) : undefined;
  return r ? entryRank(r.entry) : 2;
};

/**
 * Tracks which flows violate the rules as operations are applied to an intermediate state.
 * `endpointIds`: each local endpoint's identities in O and in N.
 */
export class FlowChecker {
  readonly probes: Probe[] = [];
  readonly flows: Flow[] = [];
  private readonly minRank: number[] = [];
  private readonly maxRank: number[] = [];
  private readonly rankI = new Map<string, number[]>();
  private readonly flowsOf = new Map<string, number[][]>();
  /** Probe indices by direction and identity. */
  private readonly byPeer = new Map<string, number[]>();
  private readonly flowRank: number[] = [];
  private hard = 0;
  private soft = 0;
  private drops = 0;
  readonly state: Maps;

  constructor(old: Maps, next: Maps, endpointIds: ReadonlyMap<string, readonly number[]>, identities: readonly number[], start: Maps = old) {
    const ports = probePorts([old, next]);
    const ids = [...new Set([...identities, UNNAMED_IDENTITY])];
    for (const direction of DIRECTIONS) for (const identity of ids) for (const [protocol, ps] of ports) for (const port of ps) this.probes.push({ direction, identity, protocol, port });
    const index = new Map(this.probes.map((p, i) => [`${p.direction} ${p.identity} ${p.protocol} ${p.port}`, i]));
    this.probes.forEach((p, i) => {
      const k = `${p.direction} ${p.identity}`;
      this.byPeer.set(k, [...(this.byPeer.get(k) ?? []), i]);
    });
    const endpoints = [...new Set([...old.keys(), ...next.keys(), ...start.keys()])].sort();
    for (const ep of endpoints) this.flowsOf.set(ep, this.probes.map(() => []));
    const addFlow = (f: Flow): void => {
      for (const [ep, i] of f) this.flowsOf.get(ep)?.[i]?.push(this.flows.length);
      this.flows.push(f);
    };
    for (const ep of endpoints) this.probes.forEach((_, i) => addFlow([[ep, i]]));
    for (const a of endpoints) {
      for (const b of endpoints) {
        if (a === b) continue;
        for (const ida of endpointIds.get(a) ?? []) {
          for (const idb of endpointIds.get(b) ?? []) {
            for (const [protocol, ps] of ports) {
              for (const port of ps) {
                const e = index.get(`egress ${idb} ${protocol} ${port}`) as number;
                const i = index.get(`ingress ${ida} ${protocol} ${port}`) as number;
                addFlow([[a, e], [b, i]]);
              }
            }
          }
        }
      }
    }
    const ranksOf = (maps: Maps): Map<string, number[]> => new Map(endpoints.map((ep) => [ep, this.probes.map((p) => rankIn(maps.get(ep), p))]));
    const rO = ranksOf(old);
    const rN = ranksOf(next);
    const flowRankIn = (r: Map<string, number[]>, f: Flow): number => Math.max(...f.map(([ep, i]) => (r.get(ep) as number[])[i] as number));
    for (const f of this.flows) {
      const o = flowRankIn(rO, f);
      const n = flowRankIn(rN, f);
      this.minRank.push(Math.min(o, n));
      this.maxRank.push(Math.max(o, n));
    }
    this.state = copyMaps(start);
    for (const [ep, r] of ranksOf(this.state)) this.rankI.set(ep, r);
    this.flows.forEach((f, k) => {
      this.flowRank.push(flowRankIn(this.rankI, f));
      this.count(k, 1);
    });
  }

  private count(k: number, sign: number): void {
    const r = this.flowRank[k] as number;
    if (r < (this.minRank[k] as number)) this.hard += sign;
    if (r < (this.maxRank[k] as number)) this.soft += sign;
    if (r === 2 && (this.maxRank[k] as number) < 2) this.drops += sign;
  }

  /** Flows now violating each rule. */
  counts(): Counts {
    return { hard: this.hard, soft: this.soft, drops: this.drops };
  }

  /** Applies one operation to the intermediate state; returns the violations after it. */
  apply(endpoint: string, d: MapDelta): Counts {
    let m = this.state.get(endpoint);
    if (!m) this.state.set(endpoint, (m = new Map()));
    const ks = policyKeyString(d.key);
    if (d.op === 'upsert') m.set(ks, { key: d.key, entry: d.entry });
    else m.delete(ks);
    const ranks = this.rankI.get(endpoint) as number[];
    const flowsOf = this.flowsOf.get(endpoint) as number[][];
    const candidates = d.key.identity === 0 ? this.probes.map((_, i) => i) : (this.byPeer.get(`${d.key.direction} ${d.key.identity}`) ?? []);
    for (const i of candidates) {
      const p = this.probes[i] as Probe;
      if (!covers(d.key, p)) continue;
      const r = rankIn(m, p);
      if (r === ranks[i]) continue;
      ranks[i] = r;
      for (const k of flowsOf[i] as number[]) {
        this.count(k, -1);
        this.flowRank[k] = Math.max(...(this.flows[k] as Flow).map(([ep, j]) => (this.rankI.get(ep) as number[])[j] as number));
        this.count(k, 1);
      }
    }
    return this.counts();
  }
}
