import { labelValueProblem } from '../model/labels.js';
import { absent, at, join, Reader } from './reader.js';

/*
 * `toServices` items, which distill does not read (the agent's stand-in), checked as the CNP CRD checks them
 * (pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml, `toServices.items`): the API server refuses
 * an object that breaks them, so it is invalid, not "not supported" (attack finding 1912). Cilium's
 * rule_validation.go has no sanitize for services (pkg/policy/api/service.go: `ServiceSelector` is matched against
 * Service labels later, pkg/policy/k8s/service.go), so a selector the CRD takes stays "not supported".
 */

const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

export function checkToServices(r: Reader, items: unknown[], path: string): void {
  items.forEach((item, i) => {
    const p = at(path, i);
    const o = r.object(item, p, ['k8sService', 'k8sServiceSelector']);
    if (!absent(o.k8sService)) {
      const svc = r.object(o.k8sService, join(p, 'k8sService'), ['serviceName', 'namespace']);
      r.optString(svc.serviceName, join(join(p, 'k8sService'), 'serviceName'));
      r.optString(svc.namespace, join(join(p, 'k8sService'), 'namespace'));
    }
    if (absent(o.k8sServiceSelector)) return;
    const sp = join(p, 'k8sServiceSelector');
    const sel = r.object(o.k8sServiceSelector, sp, ['selector', 'namespace']);
    r.optString(sel.namespace, join(sp, 'namespace'));
    // K8sServiceSelectorNamespace: `+kubebuilder:validation:Required` selector.
    if (absent(sel.selector)) r.fail(join(sp, 'selector'), 'is required (the CRD)');
    checkCrdSelector(r, sel.selector, join(sp, 'selector'));
  });
}

/** The CRD's LabelSelector schema: matchLabels values of the label-value pattern (maxLength 63); expressions with a key, an operator of the enum, string values. */
function checkCrdSelector(r: Reader, v: unknown, path: string): void {
  const o = r.object(v, path, ['matchLabels', 'matchExpressions']);
  for (const [k, val] of Object.entries(r.stringMap(o.matchLabels, join(path, 'matchLabels')))) {
    const vp = labelValueProblem(val);
    if (vp) r.fail(join(join(path, 'matchLabels'), k), `invalid label value "${val}": ${vp} (the CRD's pattern)`);
  }
  (r.optArray(o.matchExpressions, join(path, 'matchExpressions')) ?? []).forEach((e, i) => {
    const ep = at(join(path, 'matchExpressions'), i);
    const eo = r.object(e, ep, ['key', 'operator', 'values']);
    r.string(eo.key, join(ep, 'key'));
    r.oneOf(eo.operator, join(ep, 'operator'), OPERATORS);
    (r.optArray(eo.values, join(ep, 'values')) ?? []).forEach((x, j) => r.string(x, at(join(ep, 'values'), j)));
  });
}
