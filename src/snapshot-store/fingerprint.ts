/**
 * What a plugin's fingerprint said before the dump of a component's last snapshot taken with one:
 * `fingerprints/<container>/<component>`, a small JSON file `{ fingerprint, identity }`.
 *
 * A fingerprint is a text a plugin reads from its server that changes whenever the component may
 * have changed (core/plugin.ts, `fingerprint`). It is read before the dump starts, so whatever
 * changed after it was read changes the next one: when the next snapshot reads the same text,
 * nothing has changed since, and the component is still in the state of the recorded snapshot.
 * The record never needs to be cleared: it stays true whatever happens to the generations, and the
 * snapshot it names is used only while its folder is whole (store.ts).
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { messageOf } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { removeDeadTemps, writeFileAtomic } from './fs-util.js';
import { assertIdentity } from './layout.js';

interface FingerprintRecord {
  fingerprint: string;
  identity: string;
}

/** The identity recorded for `fingerprint`, or undefined (no record, another fingerprint, a record that does not parse). */
export async function identityFor(stateDir: string, key: ComponentKey, fingerprint: string, log: Logger): Promise<string | undefined> {
  const file = stateLayout.fingerprints(stateDir, key);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    // Without the record the snapshot only dumps, as it would without a fingerprint.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`cannot read ${file} (${messageOf(error)}); this snapshot dumps the component`);
    return undefined;
  }
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    record = undefined;
  }
  const { fingerprint: recorded, identity } = (typeof record === 'object' && record !== null ? record : {}) as Partial<FingerprintRecord>;
  if (typeof recorded !== 'string' || typeof identity !== 'string') {
    log.warn(`${file} is not a fingerprint record (a JSON object with the texts "fingerprint" and "identity"); this snapshot dumps the component`);
    return undefined;
  }
  if (recorded !== fingerprint) return undefined;
  try {
    return assertIdentity(identity);
  } catch (error) {
    log.warn(`${file}: ${messageOf(error)}; this snapshot dumps the component`);
    return undefined;
  }
}

/** Records that a dump started after `fingerprint` was read gave `identity`. */
export async function recordFingerprint(stateDir: string, key: ComponentKey, fingerprint: string, identity: string): Promise<void> {
  const file = stateLayout.fingerprints(stateDir, key);
  await mkdir(path.dirname(file), { recursive: true });
  await removeDeadTemps(path.dirname(file)); // what a run killed while it wrote a record left
  await writeFileAtomic(file, `${JSON.stringify({ fingerprint, identity } satisfies FingerprintRecord)}\n`);
}
