/** A CiliumNetworkPolicy in namespace x selecting `app: <selector>`, as scenario YAML (indented for a list item). */
export const cnp = (name: string, selector: string, rule: string): string => `
          apiVersion: cilium.io/v2
          kind: CiliumNetworkPolicy
          metadata: {name: ${name}, namespace: x}
          spec:
            endpointSelector: {matchLabels: {app: ${selector}}}
            ${rule}`;
