/**
 * An independent reader of CiliumNetworkPolicy Kafka L7 rules (`toPorts[].rules.kafka`), written from Cilium's
 * sources and NOT from distill's: it imports nothing from src/. cilium-np.ts applies it to the port rules that
 * admit a flow; test/independent/cilium-kafka.property.test.ts holds distill to it.
 *
 * Sources:
 * - cilium pkg/policy/api/kafka/kafka.go: `PortRule` (role, apiKey, apiVersion, clientID, topic; empty = any),
 *   `APIKeyMap` (names 0..33), `GetAPIKeys` (role produce = produce, metadata, apiversions; consume = fetch,
 *   offsets, metadata, offsetcommit, offsetfetch, findcoordinator, joingroup, heartbeat, leavegroup,
 *   syncgroup, apiversions), `Sanitize` (role and apiKey exclusive, unknown apiKey, role not produce/consume,
 *   apiVersion `strconv.ParseInt(v, 10, 16)` in 0..MaxInt16, topic at most 255 characters of
 *   `^[a-zA-Z0-9\\._\\-]+$`); the CRD's `+kubebuilder:validation:Enum=produce;consume` on Role (lower case only).
 * - cilium/proxy proxylib/kafka/kafkalib/policy.go `Rule.Matches`: key in the rule's set (empty = all), version
 *   equal (unset = all), clientID equal (empty = all); a rule with a topic on a topic-carrying key
 *   (`isTopicAPIKey`) matches only when its topic is among the request's topics.
 * - cilium pkg/kafka/request.go `ReadRequest`/`setTopics`: topics are decoded for produce, fetch, offsets,
 *   metadata, offsetcommit, offsetfetch only (other keys carry none); `extractClientID`: "0 version has no
 *   client ID" (a version-0 request's client ID is read as "").
 */
interface Yaml { [k: string]: unknown }
const obj = (v: unknown): Yaml => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Yaml) : {});
const str = (v: unknown): string => (v === undefined || v === null ? '' : String(v));

const API_KEYS = [
  'produce', 'fetch', 'offsets', 'metadata', 'leaderandisr', 'stopreplica', 'updatemetadata', 'controlledshutdown', 'offsetcommit',
  'offsetfetch', 'findcoordinator', 'joingroup', 'heartbeat', 'leavegroup', 'syncgroup', 'describegroups', 'listgroups', 'saslhandshake',
  'apiversions', 'createtopics', 'deletetopics', 'deleterecords', 'initproducerid', 'offsetforleaderepoch', 'addpartitionstotxn',
  'addoffsetstotxn', 'endtxn', 'writetxnmarkers', 'txnoffsetcommit', 'describeacls', 'createacls', 'deleteacls', 'describeconfigs', 'alterconfigs',
];
const ROLES: Readonly<Record<string, readonly number[]>> = { produce: [0, 3, 18], consume: [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18] };
const TOPIC_KEYS = [0, 1, 2, 3, 4, 5, 6, 8, 9, 19, 20, 21, 23, 24, 27, 28, 34, 35, 37];
const DECODED_TOPIC_KEYS = [0, 1, 2, 3, 8, 9];

export interface KafkaRequest { readonly key: number; readonly version: number | undefined; readonly clientID: string; readonly topics: ReadonlySet<string> }

/** The probe's `kafka:` field (docs/scenarios.md: apiKey name or number, or role produce|consume = a produce or fetch request). */
export function readKafkaRequest(v: unknown): KafkaRequest {
  const o = obj(v);
  const k = o.apiKey === undefined ? (o.role === 'consume' ? 'fetch' : 'produce') : str(o.apiKey).toLowerCase();
  const key = /^[0-9]+$/.test(k) ? Number(k) : API_KEYS.indexOf(k);
  const version = o.apiVersion === undefined ? undefined : Number(o.apiVersion);
  const topics = o.topic === undefined || !DECODED_TOPIC_KEYS.includes(key) ? new Set<string>() : new Set([str(o.topic)]);
  return { key, version, clientID: version === 0 ? '' : str(o.clientID), topics };
}

/** kafka.go `Sanitize` and the CRD enum: why the API server or the agent refuses the rule, or undefined. */
export function kafkaRuleRefusal(rule: Yaml): string | undefined {
  const role = str(rule.role);
  const apiKey = str(rule.apiKey);
  const version = str(rule.apiVersion);
  const topic = str(rule.topic);
  if (apiKey.length > 0 && role.length > 0) return 'role and apiKey together';
  if (apiKey.length > 0 && !API_KEYS.includes(apiKey.toLowerCase())) return `invalid apiKey ${apiKey}`;
  if (role.length > 0 && role !== 'produce' && role !== 'consume') return `invalid role ${role}`;
  if (version.length > 0 && !(/^[+-]?[0-9]+$/.test(version) && Number(version) >= 0 && Number(version) <= 32767)) return `invalid apiVersion ${version}`;
  if (topic.length > 0 && (topic.length > 255 || !/^[a-zA-Z0-9\\._\\-]+$/.test(topic))) return `invalid topic ${topic}`;
  return undefined;
}

function ruleKeys(rule: Yaml): readonly number[] {
  const role = ROLES[str(rule.role).toLowerCase()];
  if (role !== undefined) return role;
  return str(rule.apiKey) === '' ? [] : [API_KEYS.indexOf(str(rule.apiKey).toLowerCase())];
}

/**
 * The proxy's verdict under one port's Kafka rules (policy.go `Matches`, run over the rules in turn): the
 * request's topics are struck off by the rules that match it otherwise; it passes when a rule without a topic
 * constraint matches or the last topic is struck off.
 */
export function kafkaRulesAllow(rules: readonly Yaml[], req: KafkaRequest): boolean {
  const left = new Set(req.topics);
  return rules.some((r) => {
    const keys = ruleKeys(r);
    if (keys.length > 0 && !keys.includes(req.key)) return false;
    if (str(r.apiVersion) !== '' && Number(r.apiVersion) !== req.version) return false;
    if (str(r.clientID) !== '' && str(r.clientID) !== req.clientID) return false;
    const topic = str(r.topic);
    if (topic === '' || !TOPIC_KEYS.includes(req.key)) return true;
    if (!left.delete(topic)) return false;
    return left.size === 0;
  });
}
