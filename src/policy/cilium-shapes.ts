import { SOURCE_ANY } from '../model/labels.js';
import type { Direction, Verdict } from '../model/rules.js';
import { SelectorOptions } from './selector.js';

/*
 * The four rule lists of a Cilium rule and the field names of each
 * (`fromEndpoints`/`toEndpoints`...), and how Cilium selectors read.
 */

export const CILIUM_SELECTOR: SelectorOptions = { defaultSource: SOURCE_ANY, allowSourcePrefix: true };

export interface DirectionShape {
  readonly field: 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny';
  readonly direction: Direction;
  readonly verdict: Verdict;
  readonly endpoints: string;
  readonly cidr: string;
  readonly cidrSet: string;
  readonly entities: string;
  readonly nodes: string;
  readonly unsupported: readonly string[];
}

export const SHAPES: readonly DirectionShape[] = [
  { field: 'ingress', direction: 'ingress', verdict: 'allow', endpoints: 'fromEndpoints', cidr: 'fromCIDR', cidrSet: 'fromCIDRSet', entities: 'fromEntities', nodes: 'fromNodes', unsupported: ['fromRequires', 'fromGroups', 'authentication'] },
  { field: 'ingressDeny', direction: 'ingress', verdict: 'deny', endpoints: 'fromEndpoints', cidr: 'fromCIDR', cidrSet: 'fromCIDRSet', entities: 'fromEntities', nodes: 'fromNodes', unsupported: ['fromRequires', 'fromGroups'] },
  { field: 'egress', direction: 'egress', verdict: 'allow', endpoints: 'toEndpoints', cidr: 'toCIDR', cidrSet: 'toCIDRSet', entities: 'toEntities', nodes: 'toNodes', unsupported: ['toRequires', 'toServices', 'toFQDNs', 'toGroups', 'authentication'] },
  { field: 'egressDeny', direction: 'egress', verdict: 'deny', endpoints: 'toEndpoints', cidr: 'toCIDR', cidrSet: 'toCIDRSet', entities: 'toEntities', nodes: 'toNodes', unsupported: ['toRequires', 'toServices', 'toGroups'] },
];
