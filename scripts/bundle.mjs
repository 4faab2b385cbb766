/**
 * Bundles the three programs, as tsc wrote them to dist/cli, into dist/bin: one file per program,
 * plus chunks they share and load when needed (each plugin stays in its own chunk, so a git-only
 * run still never loads pg or mysql2).
 *
 * Why: Node 20 loads ES modules file by file, and our programs with their dependencies are some
 * 400 files (execa alone is 105). Loading them took about 0.35 s before an operation could start,
 * and about 0.17 s bundled (the first spawn of a PostgreSQL snapshot, 3 runs each; see
 * docs/benchmarks.md). Node 22's module compile cache would do part of this, but we run on 20.
 *
 * The library (dist/index.js) is not bundled: a deployer's own bundler or Node loads it once.
 */
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Chunk names change with their content: start empty, or old chunks pile up.
rmSync('dist/bin', { recursive: true, force: true });

await build({
  entryPoints: {
    dysnomia: 'dist/cli/dysnomia.js',
    'dysnomia-snapshots': 'dist/cli/dysnomia-snapshots.js',
    'dysnomia-containers': 'dist/cli/dysnomia-containers.js',
    // Forked as a file of its own by the PostgreSQL plugin (peer authentication), found beside
    // the code that forks it.
    'peer-helper': 'dist/plugins/postgres/peer-helper.js',
  },
  outdir: 'dist/bin',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // A native addon: loaded from node_modules at run time (the chunk worker loads it by path).
  external: ['zstd-napi'],
  // CommonJS dependencies (pg, mysql2) call require() for Node's own modules; an ES module has no
  // require of its own, so each output file gets one.
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
  // Maps back to src/*.ts through tsc's maps, for `node --enable-source-maps` (read only then).
  sourcemap: true,
  logLevel: 'warning',
});
