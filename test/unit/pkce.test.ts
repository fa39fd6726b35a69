import { describe, expect, it } from 'vitest';
import { createPkcePair, isValidCodeVerifier, s256Challenge, verifyPkce } from '../../platform/pkce';

// RFC 7636, Appendix B.
const RFC_VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const RFC_CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

describe('PKCE (S256)', () => {
  it('matches the RFC 7636 Appendix B test vector', () => {
    expect(s256Challenge(RFC_VERIFIER)).toBe(RFC_CHALLENGE);
    expect(verifyPkce(RFC_VERIFIER, RFC_CHALLENGE)).toBe(true);
  });

  it('creates a valid verifier and its S256 challenge', () => {
    const pair = createPkcePair();
    expect(pair.verifier).toMatch(/^[A-Za-z0-9\-._~]{43,128}$/);
    expect(isValidCodeVerifier(pair.verifier)).toBe(true);
    expect(pair.challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(pair.challenge).toBe(s256Challenge(pair.verifier));
    expect(pair.challenge).not.toBe(pair.verifier);
    expect(verifyPkce(pair.verifier, pair.challenge)).toBe(true);
  });

  it('creates a different pair every time', () => {
    const pairs = Array.from({ length: 200 }, () => createPkcePair());
    expect(new Set(pairs.map((pair) => pair.verifier)).size).toBe(pairs.length);
    expect(new Set(pairs.map((pair) => pair.challenge)).size).toBe(pairs.length);
  });

  it('rejects a wrong verifier', () => {
    const other = createPkcePair();
    expect(verifyPkce(other.verifier, RFC_CHALLENGE)).toBe(false);
    // One character changed.
    expect(verifyPkce(`${RFC_VERIFIER.slice(0, -1)}Y`, RFC_CHALLENGE)).toBe(false);
  });

  it('rejects a verifier shorter than 43 characters, even when its challenge matches', () => {
    const short = RFC_VERIFIER.slice(0, 42);
    expect(isValidCodeVerifier(short)).toBe(false);
    expect(verifyPkce(short, s256Challenge(short))).toBe(false);
    expect(verifyPkce('', s256Challenge(''))).toBe(false);
  });

  it('rejects a verifier longer than 128 characters', () => {
    const long = 'a'.repeat(129);
    expect(verifyPkce(long, s256Challenge(long))).toBe(false);
    const longest = 'a'.repeat(128);
    expect(verifyPkce(longest, s256Challenge(longest))).toBe(true);
  });

  it('rejects a verifier with characters outside the unreserved set', () => {
    for (const bad of [`${RFC_VERIFIER}+`, `${RFC_VERIFIER}/`, `${RFC_VERIFIER} `, `${RFC_VERIFIER}=`, `${RFC_VERIFIER}é`]) {
      expect(isValidCodeVerifier(bad), bad).toBe(false);
      expect(verifyPkce(bad, s256Challenge(bad)), bad).toBe(false);
    }
  });

  it('rejects the challenge itself as verifier (no "plain" downgrade)', () => {
    // The challenge is 43 url-safe characters, so it is a well-formed verifier: only the hash check stops it.
    expect(isValidCodeVerifier(RFC_CHALLENGE)).toBe(true);
    expect(verifyPkce(RFC_CHALLENGE, RFC_CHALLENGE)).toBe(false);
    const pair = createPkcePair();
    expect(verifyPkce(pair.challenge, pair.challenge)).toBe(false);
  });

  it('rejects a challenge of the wrong length without throwing', () => {
    expect(verifyPkce(RFC_VERIFIER, RFC_CHALLENGE.slice(0, -1))).toBe(false);
    expect(verifyPkce(RFC_VERIFIER, '')).toBe(false);
    expect(verifyPkce(RFC_VERIFIER, `${RFC_CHALLENGE}=`)).toBe(false);
  });
});
