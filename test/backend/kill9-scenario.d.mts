import type { EngineEvent } from '../../src/engine/events.js';
import type { IpAddress } from '../../src/model/cidr.js';
import type { Policy } from '../../src/model/rules.js';

export declare const CLIENTS: number;
export declare const LOCAL: readonly string[];
export declare function stage(n: 1 | 2, parseManifestFile: (text: string, fileName: string) => Policy[], parseIp: (text: string) => IpAddress): EngineEvent[];
