/**
 * Snapshot folders written by the original Dysnomia: a single `dump.sql.xz`, `dump.pgsql.xz` or
 * `dump.xz` and no manifest. They are listed, checked and restored like ours; the stream a plugin
 * reads is the decompressed dump (`dump.sql`, `dump.pgsql` or `dump`), produced by the `xz` binary.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { IntegrityError, OperationError, messageOf } from '../core/errors.js';
import type { SnapshotSource } from '../core/plugin.js';
import { readdirOrEmpty } from './fs-util.js';
import { readFailure } from './reader.js';

/** execa, loaded on first use: importing it costs about 0.1 s of every program's start-up. */
const loadExeca = async () => (await import('execa')).execa;

/**
 * Throws when a tool did not run at all (not installed, not executable): that says nothing about
 * the snapshot, so it must not be reported as damage.
 */
function assertRan(result: { exitCode?: number; signal?: string; failed: boolean; message?: string }, tool: string, file: string): void {
  if (result.failed && result.exitCode === undefined && result.signal === undefined) {
    throw new OperationError(`cannot run ${tool} to read ${file}: ${result.message ?? 'it did not start'}; is ${tool} installed?`);
  }
}

/** Dysnomia's dump files and the stream name each one gives. */
export const LEGACY_DUMPS: Readonly<Record<string, string>> = {
  'dump.sql.xz': 'dump.sql',
  'dump.pgsql.xz': 'dump.pgsql',
  'dump.xz': 'dump',
};

/** The Dysnomia dump file in a folder, when the folder is in Dysnomia's format. */
export async function legacyDumpOf(folder: string): Promise<string | undefined> {
  const names = (await readdirOrEmpty(folder)).filter((name) => !name.startsWith('.'));
  if (names.length !== 1) return undefined;
  return Object.hasOwn(LEGACY_DUMPS, names[0]!) ? names[0] : undefined;
}

/**
 * Dysnomia's checksum of a snapshot folder (`computeOutputHash` in its util): the SHA-256 of the
 * output of `find .`, an empty line, then the content of every file in `find . -type f` order.
 * Run with the same tools so the order of entries is the one Dysnomia saw. A file that cannot be
 * read fails it (Dysnomia's loop would go on). `sorted` lists the entries in name order instead:
 * the same content then hashes the same in folders written in another order (a copy).
 */
export async function dysnomiaFolderHash(folder: string, { sorted = false } = {}): Promise<string> {
  const hash = createHash('sha256');
  const order = sorted ? ' | LC_ALL=C sort' : '';
  const script = `find .${order} && echo && find . -type f${order} | while IFS= read -r file; do cat "$file" || exit 1; done`;
  const subprocess = (await loadExeca())('sh', ['-c', script], {
    cwd: folder,
    buffer: { stdout: false, stderr: true },
    stdin: 'ignore',
    reject: false,
  });
  for await (const piece of subprocess.stdout) hash.update(piece as Buffer);
  const result = await subprocess;
  assertRan(result, 'sh', folder);
  if (result.exitCode !== 0) {
    throw new OperationError(`cannot compute the checksum of ${folder}: ${String(result.stderr).trim() || `exit code ${result.exitCode}`}`);
  }
  return `sha256:${hash.digest('hex')}`;
}

/** SHA-256 of a file, hex. */
export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(file)) hash.update(piece as Buffer);
  return hash.digest('hex');
}

/** A snapshot folder in Dysnomia's format. */
export class LegacySnapshot implements SnapshotSource {
  readonly type = 'dysnomia';
  readonly streams: string[];
  private readonly file: string;

  constructor(
    readonly path: string,
    readonly identity: string,
    dumpFile: string,
    private readonly logicalSize: number | undefined,
    /** The checksums/ file for this folder, if the store has one. */
    private readonly checksumPath: string | undefined,
    private readonly where: string,
  ) {
    this.file = join(this.path, dumpFile);
    this.streams = [LEGACY_DUMPS[dumpFile]!];
  }

  /** Opens a Dysnomia folder; undefined when the folder is not in that format. */
  static async load(folder: string, checksumPath: string | undefined, where: string, identity = basename(folder)): Promise<LegacySnapshot | undefined> {
    const dump = await legacyDumpOf(folder);
    if (dump === undefined) return undefined;
    return new LegacySnapshot(folder, identity, dump, await xzSize(join(folder, dump)), checksumPath, where);
  }

  size(name: string): number | undefined {
    return name === this.streams[0] ? this.logicalSize : undefined;
  }

  open(name: string): Readable {
    if (name !== this.streams[0]) {
      throw new OperationError(`${this.where} has no stream ${JSON.stringify(name)} (it has: ${this.streams[0]})`);
    }
    return Readable.from(this.decompress(), { objectMode: false });
  }

  /**
   * The decompressed dump; xz checks its own CRC, and a failure surfaces before the end. The
   * folder's checksum (or name) is checked first: a valid xz file that is not the dump the folder
   * was made with must not be restored.
   */
  private async *decompress(): AsyncGenerator<Buffer> {
    await this.assertReadable();
    await this.checkSum();
    const subprocess = (await loadExeca())('xz', ['-dc', '--', this.file], {
      buffer: { stdout: false, stderr: true },
      stdin: 'ignore',
      reject: false,
    });
    try {
      for await (const piece of subprocess.stdout) yield piece as Buffer;
    } finally {
      if (!subprocess.stdout.readableEnded) subprocess.kill();
    }
    const result = await subprocess;
    assertRan(result, 'xz', this.file);
    if (result.exitCode !== 0) {
      throw new IntegrityError(
        `${this.where}: ${basename(this.file)} cannot be decompressed: ${String(result.stderr).trim() || `xz exit code ${result.exitCode}`}; the snapshot is damaged`,
      );
    }
  }

  async verify(): Promise<void> {
    await this.assertReadable();
    const test = await (await loadExeca())('xz', ['-t', '--', this.file], { reject: false, stdin: 'ignore' });
    assertRan(test, 'xz', this.file);
    if (test.exitCode !== 0) {
      throw new IntegrityError(`${this.where}: ${basename(this.file)} is damaged: ${String(test.stderr).trim()}`);
    }
    await this.checkSum();
  }

  /**
   * Opens the dump before xz reads it: xz says only "Permission denied" and fails, which read as
   * damage, where the dump is just not this user's to read (an import makes it 0440).
   */
  private async assertReadable(): Promise<void> {
    try {
      await (await open(this.file, 'r')).close();
    } catch (error) {
      throw readFailure(error, this.file, `${this.where}: cannot read ${basename(this.file)}: ${messageOf(error)}; the snapshot is damaged`);
    }
  }

  /** The recorded Dysnomia checksum of the folder, else the folder's name, against the content. */
  private async checkSum(): Promise<void> {
    if (await checkFolderChecksum(this.path, this.checksumPath, this.where)) return;
    if (/^[0-9a-f]{64}$/.test(this.identity)) {
      const actual = await fileSha256(this.file);
      if (actual !== this.identity) {
        throw new IntegrityError(
          `${this.where}: ${basename(this.file)} does not match the snapshot's name (its SHA-256 is ${actual})`,
        );
      }
    }
  }
}

/** The content of a checksum file, or undefined when there is none (or it cannot be read). */
export async function readChecksum(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/**
 * Compares a folder's Dysnomia checksum with its checksum file: an IntegrityError naming the
 * folder and both checksums when they differ. Returns false when no checksum is recorded.
 */
export async function checkFolderChecksum(folder: string, checksumPath: string | undefined, where: string): Promise<boolean> {
  const recorded = await readChecksum(checksumPath);
  if (recorded === undefined) return false;
  const actual = await dysnomiaFolderHash(folder);
  if (actual !== recorded) {
    throw new IntegrityError(`${where}: the folder does not match its checksum (recorded ${recorded}, actual ${actual})`);
  }
  return true;
}

/** The uncompressed size of an .xz file from its index (`xz --robot --list`), if xz can tell. */
async function xzSize(file: string): Promise<number | undefined> {
  try {
    const result = await (await loadExeca())('xz', ['--robot', '--list', '--', file], { reject: false, stdin: 'ignore' });
    if (result.exitCode !== 0) return undefined;
    const totals = String(result.stdout)
      .split('\n')
      .find((line) => line.startsWith('totals\t'));
    const value = Number(totals?.split('\t')[4]);
    return Number.isSafeInteger(value) ? value : undefined;
  } catch (error) {
    throw new OperationError(`cannot run xz to read ${file}: ${messageOf(error)}; is xz installed?`, { cause: error });
  }
}
