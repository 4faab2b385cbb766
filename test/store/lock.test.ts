import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AbortedError, LockTimeoutError } from '../../src/core/errors.js';
import { acquireLock, processStartTime, withLock } from '../../src/core/lock.js';
import { hasEnded, until } from '../support/processes.js';
import { useTempDir } from '../support/temp.js';
import { deadPid, recordingLogger } from './helpers.js';

const holderScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'lock-holder.mjs');
const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'lock-child.mjs');

/** Starts a process that holds the lock for `holdMs`; resolves once it holds it. */
async function holdInChild(file: string, mode: 'shared' | 'exclusive', holdMs: number) {
  const child = spawn(process.execPath, [holderScript, file, mode, String(holdMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (data: Buffer) => {
      if (data.toString().includes('locked')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`lock holder exited early with ${code}`)));
  });
  return child;
}

describe('withLock', () => {
  it('keeps three processes incrementing a counter from losing updates', async () => {
    const dir = await useTempDir();
    const counter = path.join(dir, 'counter');
    await writeFile(counter, '0');
    const lock = path.join(dir, 'counter.lock');
    await Promise.all(
      [1, 2, 3].map(() => execa(process.execPath, [holderScript, lock, 'exclusive', '5', counter, '15'])),
    );
    expect(await readFile(counter, 'utf8')).toBe('45');
    expect(await readdir(lock)).toEqual([]);
  });

  it('lets shared holders in together and keeps an exclusive taker waiting until they leave', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'store.lock');
    const child = await holdInChild(lock, 'shared', 800);
    let insideShared = false;
    await withLock(lock, 'shared', { what: 'x' }, async () => {
      insideShared = true;
    });
    expect(insideShared).toBe(true);
    const log = recordingLogger();
    const started = Date.now();
    await withLock(lock, 'exclusive', { what: 'the store for gc', log }, async () => {
      // The child has left: its holder file is gone (it may not have exited yet).
      expect((await readdir(lock)).filter((name) => name.includes(`-${child.pid}-`))).toEqual([]);
    });
    expect(Date.now() - started).toBeGreaterThan(200);
    const waits = log.lines.filter((line) => line.includes('waiting for the store for gc'));
    expect(waits).toHaveLength(1);
    expect(waits[0]).toContain(`pid ${child.pid}`);
  });

  it('times out with a LockTimeoutError naming the holder', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'component.lock');
    const child = await holdInChild(lock, 'exclusive', 5000);
    try {
      const error = await withLock(lock, 'shared', { what: 'component c/db', timeoutMs: 300 }, async () => 'got it').catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect((error as Error).message).toMatch(/gave up after 0\.3 s waiting for component c\/db/);
      expect((error as Error).message).toContain(`pid ${child.pid}`);
      expect((error as Error).message).toContain('--lock-timeout');
    } finally {
      child.kill();
    }
  });

  it('takes over a lock whose holder process is gone, with a warning', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'stale.lock');
    await mkdir(lock);
    const pid = await deadPid();
    const holder = { mode: 'exclusive', pid, host: os.hostname(), since: '2024-01-01T03:00:00.000Z', what: 'a crashed snapshot' };
    await writeFile(path.join(lock, `exclusive-${pid}-abc.json`), JSON.stringify(holder));
    const log = recordingLogger();
    const result = await withLock(lock, 'exclusive', { what: 'x', log, timeoutMs: 2000 }, async () => 'done');
    expect(result).toBe('done');
    const warning = log.lines.find((line) => line.startsWith('warn:'));
    expect(warning).toContain('took over the stale lock');
    expect(warning).toContain(`pid ${pid}`);
    expect(warning).toContain('a crashed snapshot');
    expect(await readdir(lock)).toEqual([]);
  });

  it('reads a holder file published empty on a full disk from its name: stale ones are taken over, live ones wait', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'full-disk.lock');
    await mkdir(lock);
    const tag = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const pid = await deadPid();
    await writeFile(path.join(lock, `exclusive-${pid}-0-${tag}-abc123.json`), '');
    const log = recordingLogger();
    expect(await withLock(lock, 'exclusive', { what: 'x', log, timeoutMs: 2000 }, async () => 'done')).toBe('done');
    expect(log.lines.find((line) => line.startsWith('warn:'))).toContain(`pid ${pid}`);
    expect(await readdir(lock)).toEqual([]);

    const live = spawn('sleep', ['30']);
    try {
      await writeFile(path.join(lock, `exclusive-${live.pid}-0-${tag}-def456.json`), '');
      const error = await withLock(lock, 'shared', { what: 'x', timeoutMs: 200 }, async () => 'no').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect((error as Error).message).toContain(`pid ${live.pid} since`);
      expect((error as Error).message).toContain('details not recorded: the disk was full');
    } finally {
      live.kill();
    }
  });

  it('on a file system without a free inode, says so instead of "check that the state dir is writable"', async () => {
    const dir = await useTempDir();
    // A tmpfs of few inodes, all taken (the tests run as root, as CI does).
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,nr_inodes=16', 'tmpfs', dir]);
    onTestFinished(() => {
      execFileSync('umount', ['-l', dir]);
    });
    const lock = path.join(dir, 'store.lock');
    await mkdir(lock);
    const fill = async (n: number): Promise<void> => {
      if (await writeFile(path.join(dir, `f${n}`), '').then(() => true, () => false)) await fill(n + 1);
    };
    await fill(0);
    const error = await withLock(lock, 'shared', { what: 'x' }, async () => 'no').catch((e: unknown) => e);
    expect((error as Error).message).toContain('ENOSPC');
    expect((error as Error).message).toContain('no room even for an empty file (no free inodes?');
    expect((error as Error).message).not.toContain('check that the state dir exists and is writable');
  });

  it('removes a half-published holder file of a gone writer, also when its pid now belongs to a later process', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'temps.lock');
    await mkdir(lock);
    const tag = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const live = spawn('sleep', ['30']);
    try {
      const start = processStartTime(live.pid!)!;
      const dead = `.tmp-exclusive-${await deadPid()}-0-${tag}-aa.json`;
      const reused = `.tmp-exclusive-${live.pid}-${start + 1}-${tag}-bb.json`;
      const writing = `.tmp-exclusive-${live.pid}-${start}-${tag}-cc.json`;
      const remote = `.tmp-exclusive-${live.pid}-${start + 1}-0badc0de-dd.json`;
      for (const name of [dead, reused, writing, remote]) await writeFile(path.join(lock, name), '');
      expect(await withLock(lock, 'exclusive', { what: 'x', timeoutMs: 2000 }, async () => 'done')).toBe('done');
      expect((await readdir(lock)).sort()).toEqual([writing, remote].sort());
    } finally {
      live.kill();
    }
  });

  it('does not take over a lock held by a live process on another host', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'remote.lock');
    await mkdir(lock);
    const holder = { mode: 'exclusive', pid: 1, host: 'some-other-host', since: '2024-01-01T03:00:00.000Z', what: 'remote gc' };
    await writeFile(path.join(lock, 'exclusive-1-abc.json'), JSON.stringify(holder));
    const error = await withLock(lock, 'shared', { what: 'x', timeoutMs: 200 }, async () => 'no').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect((error as Error).message).toContain('on some-other-host');
  });

  it('a process that holds a shared lock takes it again at once, even with an exclusive taker queued', async () => {
    // A restore holds the store's lock and takes it again when it reads the snapshot; queueing
    // behind a waiting gc there would leave both waiting for each other.
    const dir = await useTempDir();
    const lock = path.join(dir, 'store.lock');
    const outer = await acquireLock(lock, 'shared', { what: 'the restore' });
    const gc = execa(process.execPath, [holderScript, lock, 'exclusive', '10'], { reject: false });
    try {
      const started = Date.now();
      while (!(await readdir(lock)).some((name) => name.startsWith('wait-'))) {
        if (Date.now() - started > 10_000) throw new Error('the exclusive taker never queued');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const inner = await acquireLock(lock, 'shared', { what: 'the restore, reading', timeoutMs: 2000 });
      await inner.release();
      // A taker without a shared hold of its own still queues behind the waiting gc.
      const other = await execa(process.execPath, [holderScript, lock, 'shared', '10'], { reject: false, timeout: 1500 });
      expect(other.timedOut).toBe(true);
    } finally {
      await outer.release();
    }
    expect((await gc).exitCode).toBe(0);
  });

  it('stops waiting when the signal fires', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'abort.lock');
    const child = await holdInChild(lock, 'exclusive', 5000);
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 150);
      const error = await withLock(lock, 'exclusive', { what: 'x', signal: controller.signal }, async () => 'no').catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(AbortedError);
      expect((error as Error).message).toBe('cancelled while waiting for x');
      expect((await readdir(lock)).filter((name) => !name.includes(String(child.pid)))).toEqual([]);
      // Cancelled with nobody holding it: it did not wait for anyone.
      const early = await withLock(lock.replace('abort', 'free'), 'exclusive', { what: 'y', signal: AbortSignal.abort() }, async () => 'no').catch(
        (e: unknown) => e,
      );
      expect((early as Error).message).toBe('cancelled while locking y');
    } finally {
      child.kill();
    }
  });

  it('says clearly when the lock cannot be created', async () => {
    const dir = await useTempDir();
    await writeFile(path.join(dir, 'file'), '');
    const error = await withLock(path.join(dir, 'file', 'locks', 'x.lock'), 'shared', { what: 'x' }, async () => 1).catch(
      (e: unknown) => e,
    );
    expect((error as Error).message).toMatch(/cannot create the lock .*file\/locks\/x\.lock.*writable/);
  });
});

describe('a process a holder started', () => {
  it('keeps the lock once the holder is killed, for as long as it runs, then the lock is taken over', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'component.lock');
    const holder = spawn(process.execPath, [childScript, lock, 'exclusive'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const childPid = await new Promise<number>((resolve, reject) => {
      holder.stdout.on('data', (data: Buffer) => {
        const match = /locked (\d+)/.exec(data.toString());
        if (match !== null) resolve(Number(match[1]));
      });
      holder.on('exit', (code) => reject(new Error(`lock holder exited early with ${code}`)));
    });
    onTestFinished(() => {
      if (!hasEnded(childPid)) process.kill(childPid, 'SIGKILL');
    });
    holder.kill('SIGKILL');
    await until('the holder has ended', () => hasEnded(holder.pid!));

    const log = recordingLogger();
    const error = await withLock(lock, 'shared', { what: 'component c/db', timeoutMs: 300, log }, async () => 'got it').catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect((error as Error).message).toContain(`pid ${childPid}`);
    expect((error as Error).message).toContain(`sleep, started by pid ${holder.pid}, which has ended but left it running`);
    expect(log.lines.join('\n')).toContain(`took over the stale lock ${lock}: its exclusive holder, pid ${holder.pid}`);

    process.kill(childPid, 'SIGKILL');
    await until('the child has ended', () => hasEnded(childPid));
    expect(await withLock(lock, 'exclusive', { what: 'component c/db', timeoutMs: 2000 }, async () => 'got it')).toBe('got it');
    expect(await readdir(lock)).toEqual([]);
  });

  it('does not count while its holder runs, and its holder file goes when the lock is released', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'store.lock');
    const held = await acquireLock(lock, 'exclusive', { what: 'the store for gc' });
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    const childFiles = async () => (await readdir(lock)).filter((name) => name.startsWith(`child-exclusive-${child.pid}-`));
    for (let i = 0; i < 250 && (await childFiles()).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await childFiles()).toHaveLength(1);
    const [file] = await childFiles();
    expect(JSON.parse(await readFile(path.join(lock, file!), 'utf8'))).toMatchObject({ pid: child.pid, command: 'sleep', what: 'the store for gc' });
    await held.release();
    expect(await readdir(lock)).toEqual([]);
    // Released: the child, still running, holds nothing.
    expect(hasEnded(child.pid!)).toBe(false);
    expect(await withLock(lock, 'exclusive', { what: 'again', timeoutMs: 300 }, async () => 'got it')).toBe('got it');
  });

  it('of a holder that runs does not block anyone, not even that holder', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'live-parent.lock');
    await mkdir(lock);
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    await until('the child has started', () => processStartTime(child.pid!) !== undefined);
    const tag = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const name = `child-exclusive-${child.pid}-${processStartTime(child.pid!)}-${process.pid}-${processStartTime(process.pid)}-${tag}-0a0b0c.json`;
    await writeFile(path.join(lock, name), '');
    expect(await withLock(lock, 'exclusive', { what: 'x', timeoutMs: 300 }, async () => 'got it')).toBe('got it');
    // Still the child's: it runs.
    expect(await readdir(lock)).toEqual([name]);
  });
});
