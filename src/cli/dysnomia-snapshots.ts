#!/usr/bin/env node
/** `dysnomia-snapshots`: placeholder until its issue lands. */
import { UsageError } from '../core/errors.js';
import { runProgram } from './run.js';

runProgram('dysnomia-snapshots', async () => {
  throw new UsageError('dysnomia-snapshots is not implemented yet in this version');
});
