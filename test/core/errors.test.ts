import { describe, expect, it } from 'vitest';
import {
  AbortedError,
  ConfigError,
  DysnomiaError,
  EXIT_FAILED,
  EXIT_USAGE,
  IntegrityError,
  LockTimeoutError,
  messageOf,
  OperationError,
  PluginError,
  throwIfAborted,
  UsageError,
} from '../../src/core/errors.js';
import { debugFromEnv, silentLogger, streamLogger } from '../../src/core/log.js';

describe('error classes', () => {
  it('map to exit 2 for usage and configuration, 1 for failed operations', () => {
    expect(new UsageError('x').exitCode).toBe(EXIT_USAGE);
    expect(new ConfigError('x').exitCode).toBe(EXIT_USAGE);
    for (const error of [new OperationError('x'), new PluginError('x'), new IntegrityError('x'), new LockTimeoutError('x'), new AbortedError()]) {
      expect(error.exitCode).toBe(EXIT_FAILED);
      expect(error).toBeInstanceOf(DysnomiaError);
    }
    expect(new PluginError('x').name).toBe('PluginError');
  });

  it('ConfigError reads file:line: key: problem, with whatever is known', () => {
    expect(new ConfigError('bad', { file: '/f', line: 3, key: 'k' }).message).toBe('/f:3: k: bad');
    expect(new ConfigError('bad', { file: '/f', key: 'k' }).message).toBe('/f: k: bad');
    expect(new ConfigError('bad', { key: 'k' }).message).toBe('k: bad');
    expect(new ConfigError('bad').message).toBe('bad');
    const error = new ConfigError('bad', { file: '/f', line: 3, key: 'k' });
    expect([error.file, error.line, error.key]).toEqual(['/f', 3, 'k']);
  });

  it("PluginError carries the tool's stderr, at most its last 20 lines in the message", () => {
    const stderr = Array.from({ length: 30 }, (_, i) => `line ${i + 1}`).join('\n');
    const error = new PluginError('mysqldump failed', { stderr, plugin: 'mysql-database' });
    expect(error.stderr).toBe(stderr);
    expect(error.plugin).toBe('mysql-database');
    expect(error.message.startsWith('mysqldump failed: ...\nline 11\n')).toBe(true);
    expect(error.message.endsWith('line 30')).toBe(true);
    expect(new PluginError('quiet tool', { stderr: '  \n' }).message).toBe('quiet tool');
  });

  it('keeps the cause', () => {
    const cause = new Error('root');
    expect(new OperationError('x', { cause }).cause).toBe(cause);
  });

  it('throwIfAborted throws AbortedError only once the signal fired', () => {
    const controller = new AbortController();
    expect(() => throwIfAborted(controller.signal, 'snapshot')).not.toThrow();
    controller.abort('stop');
    expect(() => throwIfAborted(controller.signal, 'snapshot')).toThrow(new AbortedError('snapshot cancelled'));
  });

  it('messageOf works for anything thrown', () => {
    expect(messageOf(new Error('e'))).toBe('e');
    expect(messageOf('s')).toBe('s');
  });
});

describe('logging', () => {
  it('DEBUG=dysnomia, DEBUG=* and lists turn debug on', () => {
    expect(debugFromEnv({ DEBUG: 'dysnomia' })).toBe(true);
    expect(debugFromEnv({ DEBUG: 'other, dysnomia' })).toBe(true);
    expect(debugFromEnv({ DEBUG: '*' })).toBe(true);
    expect(debugFromEnv({ DEBUG: 'dysnomia-other' })).toBe(false);
    expect(debugFromEnv({})).toBe(false);
  });

  it('writes program: [tag] lines; quiet drops info, debug shows debug', () => {
    const lines: string[] = [];
    const write = (line: string) => lines.push(line);
    const log = streamLogger({ program: 'dysnomia', write }).child('echo');
    log.info('i');
    log.warn('w');
    log.debug('d');
    const quiet = streamLogger({ program: 'dysnomia', write, quiet: true, debug: true });
    quiet.info('hidden');
    quiet.debug('shown');
    expect(lines).toEqual(['dysnomia: [echo] i\n', 'dysnomia: [echo] warning: w\n', 'dysnomia: debug: shown\n']);
    expect(silentLogger.child('x')).toBe(silentLogger);
  });
});
