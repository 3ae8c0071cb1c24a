import { Option } from 'commander';
import { join } from 'node:path';
import type { MapBackend } from '../backend/backend.js';
import { BpfBackend, DEFAULT_PIN_DIR } from '../backend/bpf.js';
import { MemoryBackend } from '../backend/memory.js';
import { collectFiles, isYamlFile } from './input.js';

/** `--backend` and `--pin-dir`, as reach, verify, maps dump and replay take them. */

export interface BackendOptions {
  backend: 'memory' | 'bpf';
  pinDir: string;
}

/** A command's maps are pinned in a subdirectory (`sub`) of --pin-dir, so they never touch an agent's maps. */
export function openBackend(opts: BackendOptions, sub: PinSubdir): MapBackend {
  return opts.backend === 'bpf' ? new BpfBackend({ pinDir: join(opts.pinDir, sub) }) : new MemoryBackend();
}

type PinSubdir = 'scenario' | 'replay';

/** The scenario files of `--scenario` (files or directories) and the backend their engine writes to (reach, verify). */
export function openScenarioInputs(scenario: string[], opts: BackendOptions): { files: string[]; backend: MapBackend } {
  const files = collectFiles(scenario, isYamlFile);
  return { files, backend: openBackend(opts, 'scenario') };
}

export function backendOption(): Option {
  return new Option('--backend <kind>', 'where policy maps are written and verdicts read back from').choices(['memory', 'bpf']).default('memory');
}

/** `sub`: the subdirectory the command pins its maps in, so they never touch an agent's maps. */
export function pinDirOption(sub: PinSubdir): Option {
  return new Option('--pin-dir <dir>', `bpffs directory for --backend bpf (this command's maps go to <dir>/${sub})`).default(DEFAULT_PIN_DIR);
}
