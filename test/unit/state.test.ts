import { describe, expect, it } from 'vitest';
import { hashBearerValue, randomToken } from '../../platform/secrets';

describe('randomToken', () => {
  it('is 43 url-safe characters (256 bits, base64url without padding)', () => {
    for (let i = 0; i < 50; i += 1) {
      expect(randomToken()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    }
  });

  it('is unique over many draws', () => {
    const draws = 10_000;
    const tokens = new Set(Array.from({ length: draws }, () => randomToken()));
    expect(tokens.size).toBe(draws);
  });
});

describe('hashBearerValue', () => {
  it('is deterministic', () => {
    const token = randomToken();
    expect(hashBearerValue(token)).toBe(hashBearerValue(token));
    expect(hashBearerValue('abc')).toBe(hashBearerValue('abc'));
  });

  it('differs for different inputs', () => {
    const token = randomToken();
    const hashes = new Set([token, `${token}x`, token.slice(1), token.toUpperCase(), '', ' '].map(hashBearerValue));
    expect(hashes.size).toBe(6);
  });

  it('never contains the input', () => {
    for (const value of [randomToken(), randomToken(), 'state-value-1234567890', 'abcdefgh']) {
      const hashed = hashBearerValue(value);
      expect(hashed).not.toContain(value);
      expect(hashed).not.toBe(value);
      expect(hashed).toMatch(/^[A-Za-z0-9_-]{43}$/);
    }
  });
});
