import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { TestbedWriter } from '../datapath/writer.js';
import type { ClusterState } from '../model/cluster.js';
import { parseScenario } from '../scenario/format.js';
import { scenarioEngineOptions, scenarioStates } from '../scenario/run.js';

interface TestbedAgentOptions {
  pinRoot: string;
  scenario: string;
  churn?: boolean;
}

export interface TestbedAgentIo {
  out(s: string): void;
  err(s: string): void;
}


/**
 * Reconciles the pins to the setup state and prints one JSON line (`ready`, what it wrote). With
 * --churn it then cycles through the steps' states, one transaction each, until it is signalled or
 * the run's pin root is gone; otherwise it holds the maps until then.
 */
function runTestbedAgent(io: TestbedAgentIo, opts: TestbedAgentOptions, done: (code: number) => void): void {
  const scenario = parseScenario(readFileSync(opts.scenario, 'utf8'), opts.scenario);
  const states = scenarioStates(scenario);
  const writer = new TestbedWriter(opts.pinRoot, scenarioEngineOptions(scenario));
  const started = writer.start(states[0] as ClusterState);
  io.out(`${JSON.stringify({ ready: true, pid: process.pid, ...started })}\n`);
  let stopped = false;
  const stop = (code: number): void => {
    if (stopped) return;
    stopped = true;
    writer.close();
    io.out(`${JSON.stringify({ stopped: true, transactions: writer.transactions })}\n`);
    done(code);
  };
  process.once('SIGTERM', () => stop(0));
  process.once('SIGINT', () => stop(0));
  let next = 1;
  const tick = (): void => {
    if (stopped) return;
    if (writer.orphaned()) return stop(1);
    if (opts.churn === true && states.length > 1) {
      writer.apply(states[next % states.length] as ClusterState);
      next++;
      setImmediate(tick);
    } else {
      setTimeout(tick, 200);
    }
  };
  tick();
}

export function registerTestbedAgent(program: Command, io: TestbedAgentIo, done: (code: number) => void): void {
  program
    .command('testbed-agent')
    .description('Write a scenario\'s policy maps and ipcache into a testbed run\'s pins as a process of its own (the kill -9 restart harness)')
    .addOption(new Option('--pin-root <dir>', 'the run\'s pin root (/sys/fs/bpf/distill-testbed-<id>)').makeOptionMandatory())
    .addOption(new Option('--scenario <file>', 'scenario: its setup is the state reconciled at start').makeOptionMandatory())
    .option('--churn', 'then cycle through the states after each step, one transaction each, until stopped')
    .action((opts: TestbedAgentOptions) => {
      try {
        runTestbedAgent(io, opts, done);
      } catch (e) {
        io.err(`error: ${(e as Error).message}\n`);
        done(2);
      }
    });
}
