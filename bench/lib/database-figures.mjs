/**
 * The figures of one database engine (PostgreSQL or MariaDB), each against its reference in the
 * same run:
 *
 * - snapshot into an empty store vs the bare dump tool to /dev/null (A B A B);
 * - Dysnomia's pipeline `dump | xz` then `sha256sum`, timed once (it is slow);
 * - snapshot of an unchanged database vs the bare dump tool, and the bytes it newly stored; where a
 *   fingerprint spared the dump (PostgreSQL), the same again with the dump forced;
 * - the floor: the dump tool piped into sha256sum vs the bare dump tool (no target; see below);
 * - the same floor in Node (node-reader.mjs), reading as our snapshot does and into one reused
 *   buffer (no target);
 * - restore vs the bare load tool reading a plain dump file into an empty database;
 * - store size over N nights of the shared churn vs a full copy per night (Dysnomia's xz copy and
 *   a plain dump), and each night's snapshot time vs that night's bare dump;
 * - peak RSS of our process for snapshot and restore.
 */
import { rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ensureDataset, expectedRows, scaledScript } from './databases.mjs';
import { dysnomia, makeTarget, ROOT, storeSize } from './dysnomia.mjs';
import { bash, have, run } from './process.mjs';
import { alternate, mb, median, round3 } from './stats.mjs';

const NODE_READER = path.join(ROOT, 'bench', 'lib', 'node-reader.mjs');

/** Databases this benchmark makes from `base` (and drops again). */
function copies(base) {
  return { restore: `${base}_restore`, load: `${base}_load`, churn: `${base}_churn` };
}

/** Drops the copies (and any staging databases our restore left) from an earlier, killed run. */
async function dropCopies(engine, base) {
  for (const name of Object.values(copies(base))) {
    for (const database of await engine.list(name)) await engine.drop(database);
  }
}

/** Runs every figure of one engine; resolves to its part of the results. */
export async function databaseFigures(engine, options) {
  const { pairs, scale, dataDir, log, nights } = options;
  const base = options.baseName;
  const workDir = path.join(options.workDir, engine.id);
  const say = (text) => log(`${engine.label}: ${text}`);
  const dataset = await ensureDataset(engine, { name: base, scale, dataDir, workDir: options.workDir, log });
  await dropCopies(engine, base);
  const names = copies(base);
  const out = { engine: engine.label, serverVersion: await engine.version(), database: base, dataset, scale };
  const [dumpTool, dumpArgs] = engine.dumpCommand(base);
  out.referenceDump = `${engine.dumpLabel} > /dev/null`;
  out.referenceLoad = engine.loadLabel;
  const target = (name) =>
    makeTarget(workDir, { name, scriptsDir: engine.scriptsDir, properties: engine.properties, containerName: `${engine.id}-bench` });
  const bareDump = () => run(dumpTool, dumpArgs, { env: engine.env, rss: true });

  try {
    // --- snapshot into an empty store ---------------------------------------------------------
    const baseTarget = await target(base);
    const snapshotState = path.join(workDir, 'state-snapshot');
    say('warming up (one bare dump, one snapshot, untimed)');
    await bareDump();
    await dysnomia('snapshot', baseTarget, { stateDir: path.join(workDir, 'state-warm-up') });
    await rm(path.join(workDir, 'state-warm-up'), { recursive: true, force: true });
    say('snapshot into an empty store vs bare dump to /dev/null');
    const stored = [];
    out.snapshot = await alternate({
      pairs,
      log: say,
      before: async (side) => {
        if (side === 'ours') await rm(snapshotState, { recursive: true, force: true });
      },
      reference: bareDump,
      ours: async () => {
        const outcome = await dysnomia('snapshot', baseTarget, { stateDir: snapshotState, rss: true });
        stored.push({ bytesRead: outcome.result.bytesRead, bytesStored: outcome.result.bytesStored });
        return outcome;
      },
    });
    out.snapshot.logicalBytes = stored.at(-1).bytesRead;
    out.snapshot.storedBytes = stored.at(-1).bytesStored;
    out.snapshot.storeSizeBytes = await storeSize(snapshotState);
    out.snapshot.writeMBps = round3(out.snapshot.logicalBytes / 1e6 / out.snapshot.ours.medianSeconds);

    // --- unchanged database ---------------------------------------------------------------------
    // Our side snapshots the unchanged database into the store that holds it; `before` runs
    // before each of our runs. What ours stored, and how often the fingerprint spared the dump.
    const unchangedFigure = async (before) => {
      const runs = [];
      const figure = await alternate({
        pairs,
        log: say,
        before,
        reference: bareDump,
        ours: async () => {
          const outcome = await dysnomia('snapshot', baseTarget, { stateDir: snapshotState, rss: true });
          const taken = outcome.result.snapshot;
          runs.push({ bytesStored: outcome.result.bytesStored, newGeneration: taken?.newGeneration ?? null, byFingerprint: taken?.byFingerprint === true });
          return outcome;
        },
      });
      figure.newBytesStored = Math.max(...runs.map((run) => run.bytesStored));
      figure.newGenerations = runs.filter((run) => run.newGeneration !== false).length;
      figure.byFingerprint = runs.filter((run) => run.byFingerprint).length;
      return figure;
    };
    say('snapshot of an unchanged database vs bare dump');
    out.unchanged = await unchangedFigure();

    // --- unchanged database, dumped all the same -----------------------------------------------
    // A fingerprint (PostgreSQL's) spares the dump only while nothing at all has changed on the
    // server: after a change in another database, the unchanged one is dumped, hashed and found
    // unchanged. Without the fingerprint's record every run takes that path; this is its cost.
    if (out.unchanged.byFingerprint > 0) {
      say('snapshot of an unchanged database, dumped (fingerprint record removed) vs bare dump');
      out.unchangedDumped = await unchangedFigure(async (side) => {
        if (side === 'ours') await rm(path.join(snapshotState, 'fingerprints'), { recursive: true, force: true });
      });
    }
    await rm(snapshotState, { recursive: true, force: true });

    // --- the floor: what reading and hashing the dump once costs, in native code ----------------
    // Not a target: the least any snapshot does is read every byte of the dump and hash it (ours
    // also chunks it and hashes each chunk). On a machine whose cores the dump tool and the server
    // already keep busy, this ratio says how much of ours is the machine's, not our code's.
    say('floor: the dump piped into sha256sum vs bare dump');
    out.floor = await alternate({
      pairs,
      log: say,
      reference: bareDump,
      ours: () => bash('"$@" | sha256sum > /dev/null', [dumpTool, ...dumpArgs], { env: engine.env }),
    });
    out.floor.command = `${engine.dumpLabel} | sha256sum > /dev/null`;

    // The same floor in Node, the language of our store: the dump tool run as ours runs it, its
    // output read and hashed once, nothing else (node-reader.mjs). Once read as a child's stdout
    // is by default (a fresh buffer per read, as our snapshot reads it), once into one reused
    // buffer. The gap between the two is what reading costs us before the store does any work.
    for (const mode of ['stream', 'reused']) {
      const key = mode === 'stream' ? 'nodeFloor' : 'nodeFloorReused';
      say(`floor: the dump read and hashed once by Node (${mode}) vs bare dump`);
      out[key] = await alternate({
        pairs,
        log: say,
        reference: bareDump,
        ours: () => run(process.execPath, [NODE_READER, mode, '--', dumpTool, ...dumpArgs], { env: engine.env }),
      });
      out[key].command = `node bench/lib/node-reader.mjs ${mode} -- ${engine.dumpLabel}`;
    }

    // --- restore --------------------------------------------------------------------------------
    const plainDump = path.join(workDir, 'plain-dump.sql');
    say(`writing a plain dump of ${base} for the load reference`);
    await run(dumpTool, dumpArgs, { env: engine.env, stdout: plainDump });
    out.plainDumpBytes = (await stat(plainDump)).size;
    say(`copying ${base} to ${names.restore}`);
    await engine.copy(base, names.restore, plainDump);
    const restoreTarget = await target(names.restore);
    const restoreState = path.join(workDir, 'state-restore');
    await dysnomia('snapshot', restoreTarget, { stateDir: restoreState });
    say('restore vs bare load of a plain dump into an empty database');
    out.restore = await alternate({
      pairs,
      log: say,
      // On PostgreSQL each timed run starts with nothing of the run before it left to write out (settle).
      before: async (side) => {
        if (side === 'reference') {
          await engine.drop(names.load);
          await engine.create(names.load);
        }
        await engine.settle();
      },
      reference: () => engine.load(names.load, plainDump, { rss: true }),
      ours: () => dysnomia('restore', restoreTarget, { stateDir: restoreState, rss: true }),
    });
    out.restore.rowsMatch = await sameRows(engine, base, names.restore);
    if (!out.restore.rowsMatch) throw new Error(`${names.restore} does not hold the rows of ${base} after our restore`);
    await engine.drop(names.load);
    await engine.drop(names.restore);
    await rm(restoreState, { recursive: true, force: true });

    // --- store growth over nights of churn, and Dysnomia's xz pipeline ---------------------------
    out.growth = await growth(engine, { ...options, base, workDir, plainDump, target, names, say });
    if (out.growth.xzSeconds !== undefined) {
      out.xz = {
        seconds: out.growth.xzSeconds,
        bytes: out.growth.nights[0].xzBytes,
        ratioToBareDump: round3(out.growth.xzSeconds / out.snapshot.reference.medianSeconds),
      };
    }
    out.maxRssKiB = Math.max(
      out.snapshot.ours.maxRssKiB,
      out.unchanged.ours.maxRssKiB,
      out.unchangedDumped?.ours.maxRssKiB ?? 0,
      out.restore.ours.maxRssKiB,
      out.growth.maxRssKiB,
    );
    await rm(plainDump, { force: true });
    return out;
  } finally {
    await dropCopies(engine, base);
  }
}

/** Whether two databases hold the same number of customers and orders. */
async function sameRows(engine, a, b) {
  for (const table of ['customers', 'orders']) {
    if ((await engine.count(a, table)) !== (await engine.count(b, table))) return false;
  }
  return true;
}

/**
 * Night 0 is a copy of the base database; each further night applies the shared churn script.
 * Every night: the bare dump piped to `wc -c` (its size and time), our snapshot into one store
 * (time, bytes newly stored, the store's size on disk), and Dysnomia's xz copy (measured on night
 * 0 and, with --xz-every-night, every night; otherwise night 0's compression ratio applied to
 * that night's dump size, and labelled as such).
 */
async function growth(engine, options) {
  const { base, workDir, plainDump, target, names, say, nights, scale, dataDir, xzEveryNight, skipXz } = options;
  say(`copying ${base} to ${names.churn}`);
  await engine.copy(base, names.churn, plainDump);
  const churnScript = path.join(workDir, 'churn.sql');
  await writeFile(churnScript, await scaledScript(path.join(dataDir, engine.churnFile), scale));
  const churnTarget = await target(names.churn);
  const state = path.join(workDir, 'state-growth');
  const [dumpTool, dumpArgs] = engine.dumpCommand(names.churn);
  const out = { nights: [], expectedRows: expectedRows(scale) };
  const xzFile = path.join(workDir, 'dump.xz');
  if (!skipXz) {
    say("Dysnomia's pipeline on night 0, once: dump | xz > file, then sha256sum (slow)");
    const timed = await bash('out="$1"; shift; "$@" | xz > "$out"; sha256sum < "$out" > /dev/null', [xzFile, dumpTool, ...dumpArgs], { env: engine.env });
    out.xzSeconds = round3(timed.seconds);
    out.xzNight0Bytes = (await stat(xzFile)).size;
    await rm(xzFile, { force: true });
  }
  const restic = await have('restic');
  out.restic = restic ? 'measured' : 'not installed: not measured';
  const resticRepo = path.join(workDir, 'restic-repo');
  const resticEnv = { ...engine.env, RESTIC_PASSWORD: 'dysnomia-bench', RESTIC_REPOSITORY: resticRepo, RESTIC_CACHE_DIR: path.join(workDir, 'restic-cache') };
  if (restic) await run('restic', ['init', '--quiet'], { env: resticEnv });
  let maxRss = 0;
  for (let night = 0; night <= nights; night++) {
    if (night > 0) {
      say(`night ${night}: applying the churn`);
      await engine.runFile(names.churn, churnScript);
    }
    const dump = await bash('"$@" | wc -c', [dumpTool, ...dumpArgs], { env: engine.env, stdout: 'capture' });
    const snapshot = await dysnomia('snapshot', churnTarget, { stateDir: state, rss: true });
    maxRss = Math.max(maxRss, snapshot.maxRssKiB);
    const entry = {
      night,
      dumpBytes: Number(dump.stdout.trim()),
      dumpSeconds: round3(dump.seconds),
      snapshotSeconds: round3(snapshot.seconds),
      bytesStored: snapshot.result.bytesStored,
      storeBytes: await storeSize(state),
    };
    if (night === 0 && out.xzNight0Bytes !== undefined) {
      entry.xzBytes = out.xzNight0Bytes;
      entry.xzMeasured = true;
    } else if (xzEveryNight) {
      entry.xzBytes = Number((await bash('"$@" | xz | wc -c', [dumpTool, ...dumpArgs], { env: engine.env, stdout: 'capture' })).stdout.trim());
      entry.xzMeasured = true;
    } else if (out.xzNight0Bytes !== undefined) {
      entry.xzBytes = Math.round((entry.dumpBytes * out.xzNight0Bytes) / out.nights[0].dumpBytes);
      entry.xzMeasured = false;
    }
    if (restic) {
      await bash('"$@" | restic backup --quiet --stdin --stdin-filename dump.sql --compression auto', [dumpTool, ...dumpArgs], { env: resticEnv });
      entry.resticBytes = await storeSize(resticRepo);
    }
    say(
      `night ${night}: dump ${mb(entry.dumpBytes)} in ${entry.dumpSeconds} s; snapshot ${entry.snapshotSeconds} s, ` +
        `+${mb(entry.bytesStored)} stored, store ${mb(entry.storeBytes)}`,
    );
    out.nights.push(entry);
  }
  const [first, second] = out.nights;
  if (second) out.firstNightGrowthPercent = round3((100 * (second.storeBytes - first.storeBytes)) / first.storeBytes);
  if (out.nights.length > 1) {
    const later = out.nights.slice(1);
    out.nightlySnapshotRatio = round3(median(later.map((night) => night.snapshotSeconds / night.dumpSeconds)));
  }
  out.maxRssKiB = maxRss;
  await rm(state, { recursive: true, force: true });
  await rm(resticRepo, { recursive: true, force: true });
  await engine.drop(names.churn);
  return out;
}
