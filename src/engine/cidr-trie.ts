import { bitsOf, type Cidr } from '../model/cidr.js';

interface TrieNode {
  zero?: TrieNode;
  one?: TrieNode;
  ids?: Set<number>;
}

function bitAt(c: Cidr, i: number): boolean {
  return ((c.network >> BigInt(bitsOf(c.family) - 1 - i)) & 1n) === 1n;
}

/**
 * Identities by their prefix, in a binary trie per family: the identities inside a prefix are found
 * in time proportional to them (times the prefix length), not to every prefix held. A CIDR group
 * change re-checks only the identities inside the group's old and new prefixes (review of finding
 * 1980: a walk of every CIDR identity of the node per group change).
 */
export class CidrTrie {
  private readonly roots = { ipv4: {} as TrieNode, ipv6: {} as TrieNode };

  add(c: Cidr, id: number): void {
    let n = this.roots[c.family];
    for (let i = 0; i < c.prefixLength; i++) n = bitAt(c, i) ? (n.one ??= {}) : (n.zero ??= {});
    (n.ids ??= new Set()).add(id);
  }

  remove(c: Cidr, id: number): void {
    const path: TrieNode[] = [this.roots[c.family]];
    for (let i = 0; i < c.prefixLength; i++) {
      const n = path[i] as TrieNode;
      const next = bitAt(c, i) ? n.one : n.zero;
      if (next === undefined) return;
      path.push(next);
    }
    const leaf = path[c.prefixLength] as TrieNode;
    leaf.ids?.delete(id);
    if (leaf.ids?.size === 0) delete leaf.ids;
    // Prune the nodes left with nothing below them, leaf first.
    for (let i = c.prefixLength; i > 0; i--) {
      const n = path[i] as TrieNode;
      if (n.ids !== undefined || n.zero !== undefined || n.one !== undefined) return;
      const parent = path[i - 1] as TrieNode;
      if (bitAt(c, i - 1)) delete parent.one;
      else delete parent.zero;
    }
  }

  /** Calls `each` with every identity whose prefix lies inside `c` (c itself included). */
  within(c: Cidr, each: (id: number) => void): void {
    let n: TrieNode | undefined = this.roots[c.family];
    for (let i = 0; i < c.prefixLength && n !== undefined; i++) n = bitAt(c, i) ? n.one : n.zero;
    const stack: TrieNode[] = n === undefined ? [] : [n];
    for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
      top.ids?.forEach(each);
      if (top.one) stack.push(top.one);
      if (top.zero) stack.push(top.zero);
    }
  }
}
