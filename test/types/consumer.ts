/**
 * A deployer's use of the library, checked only by the type checker (never run): the project
 * type check compiles it against src/index.ts, and test/types/api-types.test.ts compiles a copy
 * against the published typings (dist/index.d.ts, imported as `dysnomia`). Every
 * `@ts-expect-error` line must stay an error: if the API became looser, tsc reports it as unused.
 */
import { expectTypeOf } from 'vitest';
import * as dysnomia from '../../src/index.js';
import {
  AbortedError,
  type BatchResult,
  ConfigError,
  type ComponentOptions,
  type ContainerInput,
  DysnomiaError,
  type MachineDescription,
  type OperationResult,
  type ProgressEvent,
} from '../../src/index.js';

export async function deployerStep(signal: AbortSignal): Promise<void> {
  const events: ProgressEvent[] = [];
  const options: ComponentOptions = {
    container: '/etc/dysnomia/containers/mysql-production',
    component: '/nix/store/00000000000000000000000000000000-testdb',
    stateDir: '/var/state/dysnomia',
    signal,
    lockTimeoutMs: 30_000,
    onProgress: (event) => events.push(event),
  };
  const result = await dysnomia.snapshot(options);
  expectTypeOf(result).toEqualTypeOf<OperationResult>();
  expectTypeOf(result.operation).toEqualTypeOf<dysnomia.Operation>();
  expectTypeOf(result.snapshot).toEqualTypeOf<
    { identity: string; generation?: number; newGeneration?: boolean; newSnapshot?: boolean; byFingerprint?: boolean } | undefined
  >();
  expectTypeOf(result.bytesRead).toBeNumber();
  expectTypeOf(result.bytesStored).toBeNumber();
  expectTypeOf(result.durationMs).toBeNumber();
  expectTypeOf(result.status).toEqualTypeOf<'done' | 'skipped'>();

  // A container is a path or name, an object of properties, or properties with a name.
  expectTypeOf<string>().toExtend<ContainerInput>();
  expectTypeOf<{ type: string; mysqlPort: string }>().toExtend<ContainerInput>();
  expectTypeOf<{ properties: { type: string }; name: string }>().toExtend<ContainerInput>();
  await dysnomia.restore({ container: { type: 'postgresql-database', postgresqlUsername: 'postgres' }, component: './db' });
  await dysnomia.activate({ container: { properties: { type: 'echo' }, name: 'echo-1' }, component: './c' });

  for (const operation of ['activate', 'deactivate', 'lock', 'unlock', 'snapshot', 'restore', 'collect-garbage'] as const) {
    expectTypeOf(dysnomia.run(operation, options)).resolves.toEqualTypeOf<OperationResult>();
  }
  // @ts-expect-error shell has no library form
  await dysnomia.run('shell', options);
  // @ts-expect-error not an operation
  await dysnomia.run('explode', options);
  // @ts-expect-error a component is required
  await dysnomia.snapshot({ container: 'mysql-database' });
  // @ts-expect-error a container is required
  await dysnomia.snapshot({ component: './testdb' });
  // @ts-expect-error a property value is a string or a list of strings
  await dysnomia.snapshot({ container: { type: 'mysql-database', mysqlPort: 3306 }, component: './testdb' });
  // @ts-expect-error the lock timeout is in milliseconds, a number
  await dysnomia.snapshot({ ...options, lockTimeoutMs: '30s' });

  // Machine-wide actions and queries.
  const nightly = await dysnomia.snapshotAll({ stateDir: '/var/state/dysnomia', container: 'mysql-production' });
  expectTypeOf(nightly).toEqualTypeOf<BatchResult>();
  expectTypeOf(nightly.failures[0]!.status).toEqualTypeOf<'done' | 'skipped' | 'failed' | 'cancelled'>();
  expectTypeOf(nightly.outcomes[0]!.result).toEqualTypeOf<OperationResult | undefined>();
  expectTypeOf(dysnomia.deploy()).resolves.toEqualTypeOf<BatchResult>();
  expectTypeOf(dysnomia.runOnActivated('lock')).resolves.toEqualTypeOf<BatchResult>();
  expectTypeOf(dysnomia.listActivatedComponents()).resolves.toEqualTypeOf<dysnomia.ComponentKey[]>();
  expectTypeOf(dysnomia.listAvailableComponents()).resolves.toEqualTypeOf<dysnomia.AvailableComponent[]>();
  expectTypeOf(dysnomia.listContainers()).resolves.toEqualTypeOf<dysnomia.ContainerEntry[]>();
  const machine = await dysnomia.describeMachine();
  expectTypeOf(machine).toEqualTypeOf<MachineDescription>();
  expectTypeOf(dysnomia.toNixExpression(machine)).toBeString();
  expectTypeOf(dysnomia.formatOutcomeTable(nightly.outcomes)).toBeString();

  // Moving state, and the store.
  const moved = await dysnomia.migrate({
    component: '/nix/store/00000000000000000000000000000000-shopdb',
    from: { container: 'mysql-production', stateDir: '/var/state/dysnomia' },
    to: dysnomia.commandTransport(dysnomia.dysnomiaCommands({ via: 'ssh db2', container: 'mysql-production', component: 'shopdb' })),
    signal,
  });
  expectTypeOf(moved).toEqualTypeOf<dysnomia.MigrateResult>();
  expectTypeOf(moved.identity).toBeString();
  expectTypeOf(moved.transfer.bytesSent).toBeNumber();
  expectTypeOf(moved.restore).toEqualTypeOf<OperationResult | undefined>();
  await dysnomia.migrate({ component: './db', from: { container: 'a' }, to: { container: { type: 'mysql-database' }, stateDir: '/b' } });
  // @ts-expect-error a migration needs a target
  await dysnomia.migrate({ component: './db', from: { container: 'a' } });
  // @ts-expect-error a transport must be able to receive the stream
  await dysnomia.migrate({ component: './db', from: { container: 'a' }, to: { description: 'x', listPacks: async () => undefined, restore: async () => {} } });
  try {
    await dysnomia.migrate({ component: './db', from: { container: 'a' }, to: { container: 'b', stateDir: '/b' } });
  } catch (error) {
    if (error instanceof dysnomia.MigrationError) {
      expectTypeOf(error.side).toEqualTypeOf<'source' | 'target'>();
      expectTypeOf(error).toExtend<dysnomia.OperationError>();
    }
  }
  expectTypeOf(dysnomia.latestSnapshots({ container: 'mysql-production' })).resolves.toEqualTypeOf<dysnomia.SnapshotEntry[]>();
  expectTypeOf(dysnomia.collectSnapshotGarbage({ keep: 3, keepDaily: 7 })).resolves.toEqualTypeOf<dysnomia.GcReport>();
  expectTypeOf(dysnomia.listPacks()).resolves.toEqualTypeOf<string[]>();
  // @ts-expect-error a snapshot is named by its relative path, a string
  await dysnomia.exportSnapshot({ snapshot: 3, to: process.stdout });

  // Errors are classes a caller can tell apart.
  try {
    await dysnomia.collectGarbage(options);
  } catch (error) {
    if (error instanceof ConfigError) expectTypeOf(error.key).toEqualTypeOf<string | undefined>();
    if (error instanceof AbortedError) expectTypeOf(error).toExtend<DysnomiaError>();
    if (error instanceof DysnomiaError) expectTypeOf(error.exitCode).toBeNumber();
  }
  expectTypeOf(dysnomia.EXIT_USAGE).toBeNumber();
  for (const Class of [dysnomia.UsageError, dysnomia.OperationError, dysnomia.PluginError, dysnomia.IntegrityError, dysnomia.LockTimeoutError]) {
    expectTypeOf(new Class('message')).toExtend<DysnomiaError>();
  }
}
