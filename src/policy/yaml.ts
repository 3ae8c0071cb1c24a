import { Document, isAlias, isMap, isScalar, isSeq, parseAllDocuments, parseDocument, ScalarTag, Tags, visit, type Node, type YAMLMap } from 'yaml';
import { ManifestError } from './errors.js';
import { checkInputDepth, checkYamlDepth } from './depth.js';

/**
 * An integer as kubectl reads it: sigs.k8s.io/yaml decodes with go-yaml, which drops every `_` and
 * calls `strconv.ParseInt(plain, 0, 64)` (resolve.go), then tries `0b`: so `port: 010` is port 8
 * (octal), not 10 as in YAML 1.2, `0b1010` is 10 and `1_000` is 1000. Tried before the core tags.
 */
function goInt(test: RegExp, base: number, prefix: number): ScalarTag {
  return {
    tag: 'tag:yaml.org,2002:int',
    default: true,
    identify: (v) => typeof v === 'number',
    test,
    resolve: (s) => {
      const digits = s.replace(/^[-+]/, '').replace(/_/g, '').slice(prefix);
      return (s.startsWith('-') ? -1 : 1) * parseInt(digits, base);
    },
  };
}
const GO_INTS = [goInt(/^[-+]?0[0-7_]*[0-7][0-7_]*$/, 8, 0), goInt(/^[-+]?0b_*[01][01_]*$/, 2, 2), goInt(/^[-+]?[1-9][0-9_]*$/, 10, 0)];

/**
 * An explicit tag whose Go meaning is a different string: go-yaml v2 decodes `!!binary` from base64
 * and `!!timestamp` to a time.Time that sigs.k8s.io/yaml writes back as RFC 3339 (decode.go
 * `scalar`). Refused rather than read as the text written (attack finding 875).
 */
function refusedTag(name: string): ScalarTag {
  return {
    tag: `tag:yaml.org,2002:${name}`,
    identify: () => false,
    resolve: (s, onError) => {
      onError(`the tag !!${name} is not supported (kubectl's go-yaml reads it as a different value)`);
      return s;
    },
  };
}

/**
 * Pinned to YAML 1.2's core schema whatever a `%YAML 1.1` directive says, without the yaml package's
 * "known tags": `!!set`, `!!omap`, `!!pairs`, `!!binary`, `!!timestamp` (and 1.1's plain timestamps)
 * would make a JavaScript Set, Map, Buffer or Date, which no Go decoder makes and which the readers
 * saw as an empty object, i.e. an empty selector (attack finding 875). go-yaml ignores a tag on a
 * collection, and so does the core schema (a warning). Duplicate keys are refused by `checkYamlKeys`
 * (the package's own check is quadratic in a map's size: finding 877).
 */
const OPTIONS = {
  prettyErrors: true,
  logLevel: 'error' as const,
  schema: 'core',
  resolveKnownTags: false,
  uniqueKeys: false,
  customTags: (tags: Tags): Tags => [...GO_INTS, refusedTag('binary'), refusedTag('timestamp'), ...tags],
};

/**
 * A boolean as kubectl reads a manifest: go-yaml v2 (sigs.k8s.io/yaml goyaml.v2/resolve.go) takes
 * `y`, `yes`, `on` (and `n`, `no`, `off`, each also capitalised or upper case) as booleans, which
 * YAML 1.2 reads as strings. A label `exposed: yes` is `true` to kubectl, which the API server
 * refuses as a label value; read as "yes", distill enforced a policy the cluster never holds. A
 * key `on:` becomes "true" (sigs.k8s.io/yaml convertToJSONableObject).
 */
const GO_BOOL: ScalarTag = {
  tag: 'tag:yaml.org,2002:bool',
  default: true,
  identify: (v) => typeof v === 'boolean',
  test: /^(?:y|Y|yes|Yes|YES|on|On|ON|n|N|no|No|NO|off|Off|OFF)$/,
  resolve: (s) => /^(?:y|Y|yes|Yes|YES|on|On|ON)$/.test(s),
};
/**
 * Manifests (what kubectl applies), with go-yaml v2's booleans and merge keys (`<<: *base`,
 * resolve.go's yaml_MERGE_TAG; a key written after `<<` wins, one written before it is refused:
 * `checkYamlKeys`); scenario files are distill's own format and keep YAML 1.2's.
 */
const MANIFEST_OPTIONS = { ...OPTIONS, merge: true, customTags: (tags: Tags): Tags => [GO_BOOL, ...OPTIONS.customTags(tags)] };

function toValue(doc: Document.Parsed, source: string): unknown {
  const err = doc.errors[0];
  if (err) throw new ManifestError(source, '', `invalid YAML: ${err.message}`);
  checkYamlKeys(doc, source);
  let value: unknown;
  try {
    // toJS resolves aliases and can still fail (e.g. an alias to a missing anchor).
    value = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new ManifestError(source, '', `invalid YAML: ${(e as Error).message}`);
  }
  checkInputDepth(value, source);
  return value;
}

/** Every document of a multi-document manifest text (kubectl's scalars); `#n` (from 1) names document n in errors. */
export function loadYamlDocuments(text: string, fileName: string): { source: string; value: unknown }[] {
  checkYamlDepth(text, fileName);
  const parsed = parseAllDocuments(text, MANIFEST_OPTIONS);
  if (!Array.isArray(parsed)) return []; // an empty stream
  return parsed.map((d, i) => ({ source: `${fileName}#${i + 1}`, value: toValue(d, `${fileName}#${i + 1}`) }));
}

/** A single-document YAML text. */
export function loadYaml(text: string, source: string): unknown {
  checkYamlDepth(text, source);
  return toValue(parseDocument(text, OPTIONS), source);
}

/** A merge key `<<` (resolved as a symbol when merge keys are on). */
function isMergeKey(key: unknown): boolean {
  return isScalar(key) && typeof key.value === 'symbol' && key.value.description === '<<';
}

/** A map key's identity, as the yaml package's `uniqueKeys` compares them (a scalar's value, else the node). */
function keyOf(key: unknown): unknown {
  return isScalar(key) ? key.value : key;
}

/**
 * Refuses, in linear time, a mapping that repeats a key (what `uniqueKeys` refused) or whose merge
 * key `<<` would give a key the mapping already set before it. go-yaml v2 (sigs.k8s.io/yaml's
 * decoder, so kubectl's) merges in order and lets the merged value overwrite (decode.go `mapping`
 * calls `merge` in place, which `SetMapIndex`es over earlier keys; strict decoding refuses it as "key
 * already set in map"); the yaml package keeps the earlier key. Refusing the ambiguous case reads no
 * manifest differently from kubectl (attack finding 876).
 */
function checkYamlKeys(doc: Document.Parsed, source: string): void {
  const memo = new Map<Node, Set<unknown>>();
  visit(doc, {
    Map(_, map) {
      const own = new Set<unknown>(); // keys written in the mapping
      const set = new Set<unknown>(); // and those merged so far
      for (const pair of map.items) {
        if (isMergeKey(pair.key)) {
          // go-yaml v2 `merge`: an alias must name a mapping ("map merge requires map or sequence of
          // maps as the value"); the yaml package also merges an alias of a list (finding 879).
          if (isAlias(pair.value) && !isMap(pair.value.resolve(doc))) throw new ManifestError(source, '', 'the merge key "<<" names an alias of a list or a scalar: kubectl\'s go-yaml merges only an alias of a mapping');
          for (const k of mergedKeys(doc, pair.value as Node | null, memo)) {
            if (set.has(k)) throw new ManifestError(source, '', `the merge key "<<" sets ${JSON.stringify(String(k))}, which the mapping already set before it: kubectl's go-yaml lets the merge win, the YAML merge spec the earlier key; put "<<" first`);
            set.add(k);
          }
          continue;
        }
        const k = keyOf(pair.key);
        checkKeyText(pair.key, k, source);
        if (own.has(k)) throw new ManifestError(source, '', `invalid YAML: the key ${JSON.stringify(String(k))} appears twice in one mapping`);
        own.add(k);
        set.add(k);
      }
    },
  });
}

/**
 * A map key that sigs.k8s.io/yaml turns into the same text as JavaScript does: a string, a boolean,
 * or an integer written in decimal. Its `convertToJSONableObject` writes a float key with
 * `FormatFloat(k, 'g', -1, 32)` (`1e7` -> "1e+07", `3.14159265358979` -> "3.1415927") and refuses a
 * null, list or map key (go-yaml: "invalid map key"); JavaScript writes "10000000", the full digits,
 * "" and "[ a ]", and rounds an integer past 2^53 (attack finding 878).
 */
function checkKeyText(key: unknown, k: unknown, source: string): void {
  if (typeof k === 'string' || typeof k === 'boolean') return;
  const text = isScalar(key) ? key.source : undefined;
  if (typeof k === 'number' && Number.isSafeInteger(k) && typeof text === 'string' && /^-?(?:0|[1-9][0-9]*)$/.test(text)) return;
  const shown = typeof text === 'string' ? JSON.stringify(text) : 'that is a list, a map or nothing';
  throw new ManifestError(source, '', `the map key ${shown} is not read as kubectl reads it (sigs.k8s.io/yaml writes a number key in Go's float format and refuses null, list and map keys): quote it`);
}

/**
 * The keys a merge value brings (aliases resolved; a merged mapping's own merges included). Memoized
 * per node, so `<<: [*a, *a, …]` nested many levels deep costs its size, not a power of it.
 */
function mergedKeys(doc: Document.Parsed, value: Node | null, memo: Map<Node, Set<unknown>>, depth = 0): Set<unknown> {
  const target = isAlias(value) ? value.resolve(doc) : value;
  if (!target) return new Set();
  const known = memo.get(target);
  if (known) return known;
  const out = new Set<unknown>();
  memo.set(target, out);
  if (depth > 64) return out;
  const maps = isSeq(target) ? target.items.map((it) => (isAlias(it) ? it.resolve(doc) : it)) : [target];
  for (const m of maps) {
    if (!isMap(m)) continue;
    for (const pair of (m as YAMLMap).items) {
      if (isMergeKey(pair.key)) for (const k of mergedKeys(doc, pair.value as Node | null, memo, depth + 1)) out.add(k);
      else out.add(keyOf(pair.key));
    }
  }
  return out;
}
