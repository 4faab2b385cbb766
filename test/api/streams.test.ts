/**
 * Streams a plugin hands to the store are read from the moment they are handed over. Node
 * discards what a child process wrote to an unread stdout when the process exits, so a dump that
 * finishes while the store is still busy with an earlier stream must not lose a byte. A library
 * caller's own plugin (the `plugin` option) makes the timing deterministic.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { useTempDir } from '../support/temp.js';

describe('streams handed to the store', () => {
  it('keep every byte of a child process that exits before the store reads its output', async () => {
    const dir = await useTempDir('dysnomia-streams-');
    const data = path.join(dir, 'data.txt');
    const content = 'row\n'.repeat(5000);
    await writeFile(data, content);
    const component = path.join(dir, 'component');
    await mkdir(component);
    let exited = false;
    const plugin: dysnomia.Plugin<null> = {
      type: 'two-streams',
      parseOptions: () => null,
      activate: async () => {},
      restore: async () => {},
      collectGarbage: async () => {},
      async snapshot(_ctx, sink) {
        // The store takes streams one after the other: the child's turn comes after `slow`.
        const slow = Readable.from(
          (async function* () {
            await delay(500);
            yield Buffer.from('first\n');
          })(),
        );
        const child = spawn('cat', [data], { stdio: ['ignore', 'pipe', 'inherit'] });
        child.on('exit', () => {
          exited = true;
        });
        await Promise.all([sink.addStream('slow.txt', slow), sink.addStream('child.txt', child.stdout)]);
      },
    };
    const result = await dysnomia.snapshot({
      container: { type: 'two-streams' },
      component,
      stateDir: path.join(dir, 'state'),
      plugin,
    });
    expect(exited).toBe(true);
    expect(result.bytesRead).toBe('first\n'.length + content.length);
  });
});
