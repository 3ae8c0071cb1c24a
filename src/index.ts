/**
 * distill's public API: what an embedding agent imports from `'distill'`. Everything else under
 * `dist/` is internal and may change without notice.
 *
 * @packageDocumentation
 */

/** The incremental policy engine and its options. */
export { Engine } from './engine/engine.js';
export { DnsCacheFileError } from './engine/dns-persist.js';
export { DEFAULT_MAP_CAPACITY } from './model/policy-map.js';
export type { EngineOptions } from './engine/engine.js';
/** What the engine is told and what it answers, and the errors it refuses transactions with. */
export { EngineError, EngineFailedError, MapCapacityError } from './engine/events.js';
export type { ChangeSet, EngineEvent, EntryContribution, IpcacheDelta, L7Delta, L7PortRange, L7TableRow, MapDelta, MapSnapshot, RedirectInfo } from './engine/events.js';
export type { EngineSizes, ResolvedRule, SelectorInfo } from './engine/explain.js';
export type { EngineStats } from './engine/stats.js';
export { ProxyPortsExhaustedError } from './engine/proxy-ports.js';
export type { ProxyPortRange } from './engine/proxy-ports.js';
export { L7ParserConflictError } from './engine/rule-units.js';

/** The model types events carry. */
export type { Pod } from './model/cluster.js';
export type { IpAddress, IpFamily } from './model/cidr.js';
export { parseIp } from './model/cidr.js';
export type { ContainerPort } from './model/ports.js';
export type { Policy, PolicyRef, PolicyKind, Direction, RuleOrigin, L7Rules, HttpRule, HttpHeaderMatch, KafkaRule, DnsRule } from './model/rules.js';
/** L7 requests and what the proxy is told (`engine.l7Verdict`, `engine.l7AllowedBy`, `engine.l7Policies`, `L7TableRow`). */
export type { L7Request, HttpRequest, KafkaRequest, DnsQuery, L7Parser, L7Policy } from './model/l7.js';
export type { LabelSet } from './model/labels.js';
export type { FqdnEvent } from './model/fqdn-events.js';
export type { PolicyEntry, PolicyKey, LookupResult } from './model/policy-map.js';
export type { IdentityId } from './model/identity.js';
export { podIdentityLabels, securityLabels } from './model/identity.js';

/** Reading policy manifests. */
export { parseManifest, parseManifests, parseManifestFile, parseManifestFileWithGroups } from './policy/manifest.js';
export type { CidrGroup } from './model/cidr-group.js';
export { ManifestError } from './policy/errors.js';
export type { ParseOptions } from './policy/cilium-options.js';

/** Where the maps live. */
export { applyChangeSet, BackendError } from './backend/backend.js';
export type { MapBackend, MapRecord, WriteStats } from './backend/backend.js';
export { MemoryBackend } from './backend/memory.js';
export { BpfBackend, DEFAULT_PIN_DIR, bpfUnavailableReason } from './backend/bpf.js';
export { BpfError } from './backend/bpf-syscall.js';
export { PinDirError } from './backend/pin-dir.js';
export type { BpfBackendOptions } from './backend/bpf.js';
export { reconcile } from './node/restart.js';
export { warmUpEngine } from './churn/warm-up.js';
export type { WarmUpResult } from './churn/warm-up.js';
export type { ReconcileStats } from './node/restart.js';

/** Kubernetes objects in: adapters and watch streams. */
export { podEndpoint, namespaceOf, identityOf, objectKind, KNOWN_KINDS } from './k8s/objects.js';
export type { IdentityEvent, K8sObject, KnownKind, PodEndpoint, Identity } from './k8s/objects.js';
export { WatchStreamParser, parseWatchItem } from './k8s/watch.js';
export type { WatchItem, WatchEventType } from './k8s/watch.js';
export { ClusterMirror } from './k8s/mirror.js';
export { watchInformer, toWire, replayGuard, makeGuardedInformer } from './k8s/informer.js';
export type { InformerLike, InformerFeedOptions, WatchLike, InformerClasses, InformerFeed } from './k8s/informer.js';
export type { MirrorOptions } from './k8s/mirror.js';
export type { MirrorBatch } from './k8s/engine-batches.js';
export type { AgentEvent } from './k8s/held-events.js';

/** Metrics and logs, from outside the engine. */
export { InstrumentedEngine } from './agent/instrument.js';
export type { InstrumentOptions, ApplyOutcome } from './agent/instrument.js';
