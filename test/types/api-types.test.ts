/**
 * The published typings (dist/index.d.ts, what `import ... from 'dysnomia'` gives a deployer)
 * compile under a consumer's strict settings and say what the API means: test/types/consumer.ts,
 * its imports pointed at the package name, is compiled with tsc. `npm test` builds dist first.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
let dir: string;

// The folder must lie inside the package, so that `dysnomia` resolves to this package (by its
// own name, through package.json "exports") and `vitest` to its node_modules; it is not under
// src/ or test/, so the project's own type check never sees the copy.
beforeAll(async () => {
  dir = await mkdtemp(path.join(root, '.type-test-'));
  await writeFile(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2023'],
        types: ['node'],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
      },
      include: ['*.ts'],
    }),
  );
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function compile(source: string): Promise<{ exitCode: number; output: string }> {
  await writeFile(path.join(dir, 'consumer.ts'), source);
  const result = await execa(process.execPath, [tsc, '-p', dir], { reject: false, cwd: dir });
  return { exitCode: result.exitCode ?? -1, output: `${result.stdout}${result.stderr}` };
}

async function consumerSource(): Promise<string> {
  const text = await readFile(path.join(root, 'test', 'types', 'consumer.ts'), 'utf8');
  expect(text).toContain("from '../../src/index.js'");
  return text.replaceAll("'../../src/index.js'", "'dysnomia'");
}

describe('published typings', () => {
  it('compile a deployer step that uses them, with every expected type error still an error', async () => {
    const result = await compile(await consumerSource());
    expect(result.output).toBe('');
    expect(result.exitCode).toBe(0);
  });

  it('are real types, not any: a wrong call does not compile', async () => {
    const source = `${await consumerSource()}
export const wrong: Promise<string> = dysnomia.snapshot({ container: 'x', component: 'y' });
`;
    const result = await compile(source);
    expect(result.exitCode).not.toBe(0);
    expect(result.output).toMatch(/consumer\.ts\(\d+,\d+\): error TS2322: Type 'Promise<OperationResult>' is not assignable to type 'Promise<string>'/);
  });
});
