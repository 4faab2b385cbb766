/**
 * A snapshot folder being imported: assembled under a temporary name beside the store's folders,
 * verified completely, and only then committed (its new packs linked into the pool, the folder
 * renamed to its identity). A failed import removes the temporary folder and leaves the pool and
 * every other folder as they were.
 */
import { createHash } from 'node:crypto';
import { link, mkdir, open, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { IntegrityError, OperationError, messageOf } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/log.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { DATA_FILE_MODE, exists, fsyncPath, tempName } from './fs-util.js';
import { packFileName, poolPackPath, snapshotDir } from './layout.js';
import { healPack } from './damage.js';
import { fileSha256, LegacySnapshot } from './legacy.js';
import { MANIFEST_FILE } from './manifest.js';
import { ModuleFolder, NO_SNAPSHOT_FOLDER } from './module-folder.js';
import { StoredSnapshot } from './reader.js';
import { mkdirOrExplain } from './store.js';

export class Staging {
  readonly folder: string;
  /** Packs received (not found in the pool), to link into the pool on commit. */
  private readonly received: string[] = [];
  /** Packs received (copied, not linked), and their bytes. */
  packsReceived = 0;
  bytesReceived = 0;
  packsLinked = 0;

  private constructor(
    private readonly stateDir: string,
    private readonly key: ComponentKey,
  ) {
    this.folder = path.join(stateLayout.snapshots(stateDir, key), tempName());
  }

  /** Folders made for this import, removed again if it fails (innermost first). */
  private createdDirs: string[] = [];

  /** Creates the temporary folder (and the component's snapshots folder if needed). */
  static async create(stateDir: string, key: ComponentKey): Promise<Staging> {
    const staging = new Staging(stateDir, key);
    const component = path.dirname(staging.folder);
    for (const dir of [component, path.dirname(component), path.dirname(path.dirname(component))]) {
      if (!(await exists(dir))) staging.createdDirs.push(dir);
    }
    await mkdirOrExplain(component, stateDir);
    await mkdir(staging.folder);
    return staging;
  }

  /** True when the pool holds this pack. */
  hasInPool(pack: string): Promise<boolean> {
    return exists(poolPackPath(this.stateDir, pack));
  }

  /**
   * True when the pool holds this pack and its content still hashes to its name. This reads the
   * pool's copy: an import that carries the pack itself pays that so as not to link a damaged copy
   * (its own copy then replaces the pool's on commit).
   */
  async hasIntactInPool(pack: string): Promise<boolean> {
    return (await this.hasInPool(pack)) && (await fileSha256(poolPackPath(this.stateDir, pack))) === pack;
  }

  /** Links a pack the pool already has into the folder. */
  async linkFromPool(pack: string): Promise<void> {
    await link(poolPackPath(this.stateDir, pack), path.join(this.folder, packFileName(pack)));
    this.packsLinked += 1;
  }

  /**
   * Writes a file from `data`. For a pack (`expectedPack` given) the content must hash to its
   * name: that keeps the pool's rule that a pack is named by its content.
   */
  async addFile(name: string, data: Readable | AsyncIterable<Uint8Array>, expectedPack?: string): Promise<void> {
    const file = path.join(this.folder, name);
    const handle = await open(file, 'wx', DATA_FILE_MODE).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      throw new IntegrityError(`the snapshot brings its file ${name} twice; nothing was imported`, { cause: error });
    });
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const piece of data) {
        const bytes = piece as Uint8Array;
        hash.update(bytes);
        size += bytes.length;
        await handle.write(bytes);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (expectedPack !== undefined) {
      const actual = hash.digest('hex');
      if (actual !== expectedPack) {
        throw new IntegrityError(`pack ${expectedPack} is damaged: its content hashes to ${actual}`);
      }
      this.received.push(expectedPack);
      this.packsReceived += 1;
      this.bytesReceived += size;
    }
  }

  /** Verifies the assembled folder completely; returns the opened snapshot. */
  verify(where: string, identity: string): Promise<StoredSnapshot | LegacySnapshot | ModuleFolder> {
    // Under the identity it will have: Dysnomia names a folder by the SHA-256 of its dump, and the
    // temporary folder's own name would skip that check.
    return verifySnapshotFolder(this.folder, where, identity);
  }

  /**
   * Links the received packs into the pool and renames the folder to `identity`. Returns false
   * (and discards this copy) when the store already has a folder of that identity.
   */
  async commit(identity: string, log: Logger = silentLogger): Promise<boolean> {
    await this.pool(log);
    return this.publish(identity);
  }

  /**
   * The first half of {@link commit}: links the received packs into the pool (replacing a damaged
   * pool copy) and makes the folder durable. Nothing visible changes.
   */
  async pool(log: Logger = silentLogger): Promise<void> {
    const poolDirs = new Set<string>();
    for (const pack of this.received) {
      const pooled = poolPackPath(this.stateDir, pack);
      await mkdir(path.dirname(pooled), { recursive: true });
      const mine = path.join(this.folder, packFileName(pack));
      try {
        await link(mine, pooled);
        poolDirs.add(path.dirname(pooled));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const pooledHash = await fileSha256(pooled);
        if (pooledHash === pack) {
          // The pool had it already: use the pool's copy so the bytes are on disk once.
          const temp = path.join(this.folder, tempName('.pack'));
          await link(pooled, temp);
          await rename(temp, mine);
        } else {
          // The pool's copy is damaged, ours was checked: ours takes its place in the pool and in
          // every snapshot folder that linked the damaged copy.
          await healPack(this.stateDir, pack, mine, log);
        }
      }
    }
    for (const dir of poolDirs) await fsyncPath(dir);
    await fsyncPath(this.folder);
  }

  /**
   * The second half of {@link commit}: renames the folder to `identity`. Returns false (and
   * discards this copy) when the store already has a folder of that identity.
   */
  async publish(identity: string): Promise<boolean> {
    const target = snapshotDir(this.stateDir, this.key, identity);
    try {
      await rename(this.folder, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        await this.discard();
        return false;
      }
      throw new OperationError(`cannot move the imported snapshot into place (${target}): ${messageOf(error)}`, { cause: error });
    }
    this.createdDirs = [];
    await fsyncPath(path.dirname(target));
    return true;
  }

  /** Removes the temporary folder, and the folders made for it when they are still empty. */
  async discard(): Promise<void> {
    await rm(this.folder, { recursive: true, force: true });
    for (const dir of this.createdDirs) await rmdir(dir).catch(() => {});
    this.createdDirs = [];
  }
}

/**
 * Verifies a snapshot folder completely, as an import requires before it accepts one (and before
 * it trusts the store's own copy): ours by its manifest, every pack it names present, every chunk
 * and stream read back against their checksums; Dysnomia's by `xz -t` and its checksum file (if
 * `checksumPath` is given and readable), else the SHA-256 its name says; an external module's by
 * reading it in full and its checksum file. Throws an IntegrityError
 * naming the first problem; returns the opened snapshot.
 */
export async function verifySnapshotFolder(
  folder: string,
  where: string,
  identity: string,
  checksumPath?: string,
): Promise<StoredSnapshot | LegacySnapshot | ModuleFolder> {
  if (await exists(path.join(folder, MANIFEST_FILE))) {
    const snapshot = await StoredSnapshot.load(folder, where);
    if (snapshot.manifest.identity !== identity) {
      throw new IntegrityError(`${where}: its manifest names the identity ${snapshot.manifest.identity}`);
    }
    for (const pack of snapshot.manifest.packs) {
      if (!(await exists(path.join(folder, packFileName(pack))))) {
        throw new IntegrityError(`${where}: pack ${pack} is missing`);
      }
    }
    await snapshot.verify();
    return snapshot;
  }
  const other = (await LegacySnapshot.load(folder, checksumPath, where, identity)) ?? (await ModuleFolder.load(folder, checksumPath, where, identity));
  if (other === undefined) {
    throw new IntegrityError(`${where}: the folder is ${NO_SNAPSHOT_FOLDER}`);
  }
  await other.verify();
  return other;
}
