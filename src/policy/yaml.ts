import { Document, parseAllDocuments, parseDocument } from 'yaml';
import { ManifestError } from './errors.js';

const OPTIONS = { prettyErrors: true, logLevel: 'error' as const, uniqueKeys: true };

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
