#!/usr/bin/env node
/** `dysnomia-containers`: placeholder until its issue lands. */
import { UsageError } from '../core/errors.js';
import { runProgram } from './run.js';

runProgram('dysnomia-containers', async () => {
  throw new UsageError('dysnomia-containers is not implemented yet in this version');
});
