/**
 * gc removes files several at a time; when one removal fails, every worker must have stopped
 * before gc reports the failure and lets go of the store lock, or removals would go on outside it.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { unlinkAll } from '../../src/snapshot-store/gc.js';
import { useTempDir } from '../support/temp.js';

describe('gc unlinkAll', () => {
  it('stops every worker before it rejects, and skips files already gone', async () => {
    const dir = await useTempDir();
    const files: string[] = [];
    // The first "file" is a folder: unlink fails with EISDIR, a real error of the file system.
    await mkdir(path.join(dir, 'a-folder'));
    files.push(path.join(dir, 'a-folder'), path.join(dir, 'already-gone'));
    for (let i = 0; i < 300; i += 1) {
      const file = path.join(dir, `f${String(i).padStart(3, '0')}`);
      await writeFile(file, 'x');
      files.push(file);
    }
    const error = await unlinkAll(files).then(
      () => undefined,
      (reason: unknown) => reason as NodeJS.ErrnoException,
    );
    expect(error?.code).toBe('EISDIR');
    const atRejection = (await readdir(dir)).length;
    await sleep(200);
    expect((await readdir(dir)).length).toBe(atRejection);
    // It stopped taking files once one failed: most are still there.
    expect(atRejection).toBeGreaterThan(250);

    const rest = (await readdir(dir)).filter((name) => name !== 'a-folder').map((name) => path.join(dir, name));
    await unlinkAll([...rest, path.join(dir, 'already-gone')]);
    expect(await readdir(dir)).toEqual(['a-folder']);
  });
});
