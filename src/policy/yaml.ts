import { Document, parseAllDocuments, parseDocument, ScalarTag, Tags } from 'yaml';
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

const OPTIONS = { prettyErrors: true, logLevel: 'error' as const, uniqueKeys: true, customTags: (tags: Tags): Tags => [...GO_INTS, ...tags] };

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
 * Manifests (what kubectl applies), with go-yaml v2's booleans and merge keys (`<<: *base`, keys
 * of the mapping itself win; resolve.go's yaml_MERGE_TAG); scenario files are distill's own
 * format and keep YAML 1.2's.
 */
const MANIFEST_OPTIONS = { ...OPTIONS, merge: true, customTags: (tags: Tags): Tags => [...GO_INTS, GO_BOOL, ...tags] };

function toValue(doc: Document.Parsed, source: string): unknown {
  const err = doc.errors[0];
  if (err) throw new ManifestError(source, '', `invalid YAML: ${err.message}`);
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
