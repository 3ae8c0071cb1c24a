import { existsSync } from 'node:fs';
import { applyChangeSet } from '../backend/backend.js';
import { BpfBackend } from '../backend/bpf.js';
import { KernelIpcache } from '../backend/ipcache.js';
import { Engine, EngineOptions } from '../engine/engine.js';
import { ALL_LOCAL } from '../harness/cluster-sync.js';
import { EngineDecider } from '../harness/engine-decider.js';
import type { ClusterState } from '../model/cluster.js';
import { reconcile, ReconcileStats } from '../node/restart.js';
import { ipcacheContent, policyPinDir } from './testbed.js';

/** What a (re)started policy process wrote to bring the pinned maps to its state. */
export interface WriterStart {
  readonly policy: ReconcileStats;
  /** ipcache entries written (upserts and deletes): the pinned ipcache is read back, so 0 when nothing changed. */
  readonly ipcacheWrites: number;
}

/**
 * distill as a process of its own over a testbed run's pins: it opens the pinned policy maps and
 * ipcache the run's programs enforce (never fresh ones), learns a cluster state without writing,
 * reconciles the maps to it, then writes each later state as one transaction, in the backend's
 * fail-closed order. Killing it at any point leaves the pins, and so enforcement, in place.
 */
export class TestbedWriter {
  private readonly backend: BpfBackend;
  private readonly ipcache: KernelIpcache;
  private readonly engine: Engine;
  private readonly decider: EngineDecider;
  private writing = false;
  /** The state being written: the ipcache follows it between the policy maps' write phases. */
  private target: ClusterState | undefined;
  transactions = 0;

  /** `engineOptions`: the scenario's (`scenarioEngineOptions`), as the testbed's own writer is built. */
  constructor(
    readonly pinRoot: string,
    engineOptions: Pick<EngineOptions, 'allowLocalhost' | 'dns' | 'stack'> = {},
  ) {
    if (!existsSync(policyPinDir(pinRoot))) throw new Error(`testbed-agent: ${policyPinDir(pinRoot)} does not exist: no testbed run is pinned at ${pinRoot}`);
    this.backend = new BpfBackend({ pinDir: policyPinDir(pinRoot) });
    try {
      this.ipcache = new KernelIpcache(pinRoot);
    } catch (e) {
      this.backend.close();
      throw e;
    }
    this.engine = new Engine({ mapCapacity: this.backend.capacity, ...engineOptions });
    this.decider = new EngineDecider(this.engine, ALL_LOCAL, (cs) => {
      if (this.writing) applyChangeSet(this.backend, cs, () => this.target && this.ipcache.sync(ipcacheContent(this.engine, this.target)));
    });
  }

  /**
   * Learns `state` writing nothing, then writes only the difference between the pins and it (the
   * ipcache's between the policy maps' phases; stale entries an earlier writer left are deleted).
   */
  start(state: ClusterState): WriterStart {
    this.decider.sync(state);
    let ipcacheWrites = 0;
    const policy = reconcile(this.engine, this.backend, () => void (ipcacheWrites = this.ipcache.sync(ipcacheContent(this.engine, state))));
    this.writing = true;
    return { policy, ipcacheWrites };
  }

  /** One transaction: the maps and the ipcache follow the cluster to `state`. */
  apply(state: ClusterState): void {
    if (!this.writing) throw new Error('testbed-agent: apply() before start()');
    this.target = state;
    this.decider.sync(state);
    this.ipcache.sync(ipcacheContent(this.engine, state));
    this.transactions++;
  }

  /** The run is gone (its pin root removed, by its owner or its watchdog). */
  orphaned(): boolean {
    return !existsSync(this.pinRoot);
  }

  close(): void {
    this.ipcache.close();
    this.backend.close();
  }
}
