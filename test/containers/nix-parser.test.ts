/**
 * The Nix checker used by the --generate-expr tests must itself be able to fail: it accepts the
 * data subset of Nix and rejects what Nix rejects.
 */
import { describe, expect, it } from 'vitest';
import { NixSyntaxError, parseNix } from '../support/nix-parser.js';
import { nixString, toNixExpression } from '../../src/api/machine.js';

describe('the Nix checker of the tests', () => {
  it('reads sets, dotted paths, rec, lists, strings, numbers, booleans, null and comments', () => {
    const text = `
      # a comment
      rec {
        a.b = "x"; a.c = [ 1 2.5 true null ];
        "quoted name" = { }; /* block
        comment */ d = "\\"\\\\\\n\\$\\{ $$ $x";
      }`;
    expect(parseNix(text)).toEqual({
      a: { b: 'x', c: [1, 2.5, true, null] },
      'quoted name': {},
      d: '"\\\n${ $$ $x',
    });
  });

  it.each([
    ['{ a = "x" }', /expected ";"/],
    ['{ a = "x";', /unterminated attribute set/],
    ['{ a = [ "x" ; }', /unexpected ";"/],
    ['{ a = "x; }', /unterminated string/],
    ['{ a = "1"; a = "2"; }', /attribute 'a' already defined/],
    ['{ a = { }; a.b = "2"; }', /attribute 'a' already defined/],
    ['{ if = "x"; }', /keyword if cannot be an attribute name/],
    ['{ a = "${b}"; }', /unsupported: string interpolation/],
    ['{ a = b; }', /unsupported: variable b/],
    ['{ a = "x"; } }', /unexpected text after the expression/],
    ['{ 9a = "x"; }', /expected an attribute name/],
    ['', /found end of input/],
  ])('rejects %j', (text, message) => {
    expect(() => parseNix(text)).toThrow(NixSyntaxError);
    expect(() => parseNix(text)).toThrow(message);
  });

  it('reads back every string the generator writes', () => {
    for (const value of ['', 'plain', '"', '\\', '$', '${x}', '$${x}', '\\${x}', 'a\nb\tc\r', "it's", '}; evil = "']) {
      expect(parseNix(nixString(value))).toBe(value);
    }
  });

  it('reads back a generated expression with keyword and odd container names', () => {
    const description = {
      properties: { system: 'aarch64-linux', list: ['a', '${b}'] },
      containers: { rec: { x: '1' }, 'with space': {}, "it's": { 'odd key': 'v' } },
      system: 'aarch64-linux',
    };
    expect(parseNix(toNixExpression(description))).toEqual(description);
  });
});
