/** The package's own version. */
import { createRequire } from 'node:module';

/** The version in package.json: for --version, and wherever output depends on which dysnomia made it. */
export function packageVersion(): string {
  const require = createRequire(import.meta.url);
  // Two folders up from src/core, dist/core (tsc) and dist/bin (the bundled programs) alike.
  return (require('../../package.json') as { version: string }).version;
}
