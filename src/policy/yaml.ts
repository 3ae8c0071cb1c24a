import { Document, parseAllDocuments, parseDocument, ScalarTag, Tags } from 'yaml';
import { ManifestError } from './errors.js';

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

function toValue(doc: Document.Parsed, source: string): unknown {
  const err = doc.errors[0];
  if (err) throw new ManifestError(source, '', `invalid YAML: ${err.message}`);
  try {
    // toJS resolves aliases and can still fail (e.g. an alias to a missing anchor).
    return doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new ManifestError(source, '', `invalid YAML: ${(e as Error).message}`);
  }
}

/** Every document of a multi-document YAML text; `#n` (from 1) names document n in errors. */
export function loadYamlDocuments(text: string, fileName: string): { source: string; value: unknown }[] {
  const parsed = parseAllDocuments(text, OPTIONS);
  if (!Array.isArray(parsed)) return []; // an empty stream
  return parsed.map((d, i) => ({ source: `${fileName}#${i + 1}`, value: toValue(d, `${fileName}#${i + 1}`) }));
}

/** A single-document YAML text. */
export function loadYaml(text: string, source: string): unknown {
  return toValue(parseDocument(text, OPTIONS), source);
}
