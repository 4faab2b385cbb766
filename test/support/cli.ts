/** Runs the built programs (dist/bin) as a user would, capturing output and exit code. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type Program = 'dysnomia' | 'dysnomia-snapshots' | 'dysnomia-containers';

/** Absolute path of a built program. `npm test` builds dist before running vitest. */
export function programPath(program: Program): string {
  return path.join(root, 'dist', 'bin', `${program}.js`);
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Extra environment; always set DYSNOMIA_STATEDIR in tests. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string | Buffer;
  /** Replace the environment entirely (plus PATH) instead of extending it. */
  cleanEnv?: boolean;
  timeoutMs?: number;
}

/**
 * The DYSNOMIA_STATEDIR a program gets when a test gives none: under a regular file, so any write
 * fails loudly instead of touching /var/state/dysnomia or ~/.dysnomia.
 */
export const NO_STATE_DIR = '/dev/null/test-gave-no-DYSNOMIA_STATEDIR';

/** Variables of the developer's shell that would change what the programs do. */
const INHERITED = /^(DYSNOMIA_|NIX_STORE_DIR$|DEBUG$)/;

/** Runs `node dist/bin/<program>.js ...args`. Never throws on a non-zero exit. */
export async function runCli(program: Program, args: string[], options: CliOptions = {}): Promise<CliResult> {
  const guarded: Record<string, string | undefined> = { DYSNOMIA_STATEDIR: NO_STATE_DIR };
  if (!options.cleanEnv) {
    for (const key of Object.keys(process.env)) if (INHERITED.test(key)) guarded[key] = undefined;
    guarded.DYSNOMIA_STATEDIR = NO_STATE_DIR;
  }
  const env = options.cleanEnv
    ? { PATH: process.env.PATH, HOME: process.env.HOME, ...guarded, ...options.env }
    : { ...guarded, ...options.env };
  const result = await execa(process.execPath, [programPath(program), ...args], {
    env,
    extendEnv: !options.cleanEnv,
    cwd: options.cwd,
    input: options.input,
    reject: false,
    timeout: options.timeoutMs ?? 120_000,
    stripFinalNewline: false,
  });
  return {
    exitCode: result.exitCode ?? -1,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
  };
}

/**
 * Resolves once a program started with execa has written `text` to its stderr; rejects when it
 * ends first, or after 20 s, quoting what it said.
 */
export async function stderrSays(child: ReturnType<typeof execa>, text: string): Promise<void> {
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the run never said "${text}"; it said: ${seen}`)), 20_000);
    void child.then((result) => {
      clearTimeout(timer);
      reject(new Error(`the run ended (exit ${result.exitCode}) without saying "${text}"; it said: ${seen}`));
    });
    child.stderr!.on('data', (data: Buffer) => {
      seen += data.toString();
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}
