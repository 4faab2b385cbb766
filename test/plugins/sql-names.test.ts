/** The SQL plugins' database names: what a component name may be, and what the refusal says. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { databaseNames } from '../../src/plugins/sql/names.js';

describe('database names of a component', () => {
  it('gives the live, staging and old names of a plain name', () => {
    expect(databaseNames('Shop_2-x', 'postgresql-database', 63)).toEqual({ live: 'Shop_2-x', staging: 'Shop_2-x__dys_new', old: 'Shop_2-x__dys_old' });
  });

  it('refuses a name with letters outside ASCII, saying that only ASCII letters go', () => {
    for (const name of ['müller', 'ünïcødé', 'naïve']) {
      const refuse = () => databaseNames(name, 'mysql-database', 64);
      expect(refuse).toThrow(ConfigError);
      expect(refuse).toThrow(/use ASCII letters \(a-z, A-Z\), digits, _ and - only/);
    }
  });

  it('names the longest name the server takes with the suffixes', () => {
    expect(databaseNames('a'.repeat(54), 'postgresql-database', 63).live).toHaveLength(54);
    expect(() => databaseNames('a'.repeat(55), 'postgresql-database', 63)).toThrow(/at most 54 characters/);
  });
});
