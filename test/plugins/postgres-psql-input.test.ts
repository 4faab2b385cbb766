/**
 * postgresql-database runs psql under stdbuf with a 1 MiB input buffer for every load it pipes in:
 * a component's initial scripts on activation and a snapshot on restore (sql/tool.ts, loadWith's
 * bufferedInput). A psql first on PATH records what each run was given, then runs the real one.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { DYSNOMIA_TESTDB, postgresSetup } from '../support/sql-setup.js';
import { useTempDir } from '../support/temp.js';

describe('postgresql-database: psql input buffer', () => {
  it('activation and restore load through psql with stdbuf\'s 1 MiB input buffer', async () => {
    const { stdout: realPsql } = await execa('sh', ['-c', 'command -v psql']);
    const dir = await useTempDir('dysnomia-psql-');
    const record = path.join(dir, 'runs');
    await writeFile(record, '');
    await writeFile(path.join(dir, 'psql'), `#!/bin/sh\necho "\${_STDBUF_I:-none} $*" >> '${record}'\nexec '${realPsql}' "$@"\n`);
    // psql may run as the OS user postgres (peer authentication): it must reach both files.
    await chmod(dir, 0o755);
    await chmod(path.join(dir, 'psql'), 0o755);
    await chmod(record, 0o666);
    const env = { PATH: `${dir}:${process.env.PATH ?? ''}` };

    const setup = await postgresSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    for (const operation of ['activate', 'snapshot']) {
      const result = await setup.run(operation, { env });
      expect(result.exitCode, result.stderr).toBe(0);
    }
    await setup.query("INSERT INTO test VALUES ('after the snapshot')");
    const restored = await setup.run('restore', { env });
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(await setup.query('SELECT test FROM test ORDER BY test')).toEqual([{ test: 'Hello world' }]);

    const loads = (await readFile(record, 'utf8')).split('\n').filter((line) => line.includes('--file=-'));
    // One load of the initial script, one of the snapshot.
    expect(loads).toHaveLength(2);
    for (const line of loads) expect(line.split(' ')[0], line).toBe('1048576');
  });
});
