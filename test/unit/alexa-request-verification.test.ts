import { X509Certificate } from 'node:crypto';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AlexaCertificateChains, type CertificateChainFetcher } from '../../platform/voice/alexa-certificate-chain';
import {
  AlexaCertificateChainUnavailable,
  AlexaRequestRejected,
  createAlexaRequestVerifier,
  type AlexaRejectionReason,
  type AlexaRequestVerifier,
} from '../../platform/voice/alexa-request-verification';
import {
  alexaRequestBody,
  createAlexaTestSigner,
  createTestCertificateAuthority,
  issueSigningCertificate,
  type AlexaTestSigner,
} from '../helpers/alexa-signing';

const SKILL_ID = 'amzn1.ask.skill.11111111-2222-3333-4444-555555555555';
const SECOND = 1000;
const MINUTE = 60 * SECOND;

/** Every rule of Amazon's "verify that a request was sent by Alexa", each shown to refuse, and a genuine request passing. */
describe('Alexa request verification', () => {
  let signer: AlexaTestSigner;
  let now: number;
  /** Certificates are made before any test takes the time: a certificate is valid from when it was made. */
  let variants: Awaited<ReturnType<typeof makeVariants>>;

  async function makeVariants() {
    const endEntity = await issueSigningCertificate(signer.authority, { dnsNames: ['end-entity.example'] });
    return {
      forger: await issueSigningCertificate(await createTestCertificateAuthority('Forger CA')),
      shortLived: await issueSigningCertificate(signer.authority, { days: 1 }),
      wrongNames: await Promise.all([['echo-api.example.com'], [], ['*.amazon.com'], ['echo-api.amazon.com.evil.example']].map((dnsNames) => issueSigningCertificate(signer.authority, { dnsNames }))),
      untrusted: await issueSigningCertificate(await createTestCertificateAuthority('Untrusted CA')),
      selfSigned: await issueSigningCertificate(undefined),
      belowEndEntity: await issueSigningCertificate({ certificatePem: new X509Certificate(endEntity.chainPem).toString(), keyPem: endEntity.privateKeyPem, chainPem: endEntity.chainPem }),
      viaIntermediate: await issueSigningCertificate(await createTestCertificateAuthority('Test Alexa Intermediate CA', signer.authority)),
    };
  }

  beforeAll(async () => {
    signer = await createAlexaTestSigner();
    variants = await makeVariants();
  });

  beforeEach(() => {
    now = Date.now();
  });

  /** Each verifier has its own chain cache; its clock is `now`, which requests are stamped with too. */
  function verifier(): AlexaRequestVerifier {
    return createAlexaRequestVerifier(signer.verifierOptions(SKILL_ID, () => now));
  }

  function request(options: { type?: string; ageMs?: number; skillId?: string } = {}) {
    return alexaRequestBody({ skillId: options.skillId ?? SKILL_ID, type: options.type ?? 'IntentRequest', timestamp: new Date(now - (options.ageMs ?? 0)) });
  }

  function signed(body: string, certificateChainUrl?: string, privateKeyPem?: string) {
    const headers = signer.sign(body, certificateChainUrl, privateKeyPem);
    return { signatureCertChainUrl: headers.signaturecertchainurl, signature256: headers['signature-256'], rawBody: Buffer.from(body) };
  }

  async function rejection(promise: Promise<unknown>): Promise<AlexaRejectionReason | 'accepted'> {
    try {
      await promise;
      return 'accepted';
    } catch (error) {
      const reason = (error as { reason?: AlexaRejectionReason }).reason;
      if (!reason) throw error;
      return reason;
    }
  }

  it('accepts a genuine request and returns its body, fetching the chain once for many requests', async () => {
    const verify = verifier();
    const body = request();
    const envelope = await verify.verify(signed(body));
    expect(envelope).toEqual(JSON.parse(body));
    await verify.verify(signed(request()));
    expect(signer.fetches.filter((url) => url === signer.chainUrl)).toHaveLength(1);
  });

  it('refuses a forged signature, a changed body and missing headers', async () => {
    const verify = verifier();
    const body = request();
    expect(await rejection(verify.verify(signed(body, signer.chainUrl, variants.forger.privateKeyPem)))).toBe('signature');
    const genuine = signed(body);
    expect(await rejection(verify.verify({ ...genuine, rawBody: Buffer.from(body.replace('IntentRequest', 'LaunchRequest')) }))).toBe('signature');
    expect(await rejection(verify.verify({ ...genuine, rawBody: `${body} ` }))).toBe('signature');
    expect(await rejection(verify.verify({ ...genuine, signature256: 'not base64!' }))).toBe('signature');
    expect(await rejection(verify.verify({ ...genuine, signature256: undefined }))).toBe('missing_signature');
    expect(await rejection(verify.verify({ ...genuine, signatureCertChainUrl: undefined }))).toBe('missing_signature');
  });

  it.each([
    ['http', 'http://s3.amazonaws.com/echo.api/echo-api-cert-test.pem'],
    ['another host', 'https://notamazon.com/echo.api/echo-api-cert-test.pem'],
    ['a look-alike host', 'https://s3.amazonaws.com.evil.example/echo.api/echo-api-cert-test.pem'],
    ['port 8443', 'https://s3.amazonaws.com:8443/echo.api/echo-api-cert-test.pem'],
    ['port 563', 'https://s3.amazonaws.com:563/echo.api/echo-api-cert-test.pem'],
    ['a path outside /echo.api/', 'https://s3.amazonaws.com/invalid.path/echo-api-cert-test.pem'],
    ['/echo.api/ in another case', 'https://s3.amazonaws.com/EcHo.aPi/echo-api-cert-test.pem'],
    ['dot segments leaving /echo.api/', 'https://s3.amazonaws.com/echo.api/../x/echo-api-cert-test.pem'],
    ['credentials', 'https://user:pass@s3.amazonaws.com/echo.api/echo-api-cert-test.pem'],
    ['no URL', 'echo.api/echo-api-cert-test.pem'],
  ])('refuses a certificate URL with %s, without fetching it', async (_case, url) => {
    const fetchesBefore = signer.fetches.length;
    const verify = verifier();
    expect(await rejection(verify.verify(signed(request(), url)))).toBe('certificate_url');
    expect(signer.fetches).toHaveLength(fetchesBefore);
  });

  it.each([
    ['port 443 named', 'https://s3.amazonaws.com:443/echo.api/echo-api-cert-test.pem'],
    ['scheme and host in capitals', 'HTTPS://S3.AMAZONAWS.COM/echo.api/echo-api-cert-test.pem'],
    ['dot segments that stay in /echo.api/', 'https://s3.amazonaws.com/../echo.api/echo-api-cert-test.pem'],
  ])('accepts a certificate URL with %s, as Amazon normalises it', async (_case, url) => {
    expect(await rejection(verifier().verify(signed(request(), url)))).toBe('accepted');
  });

  it('fetches a URL whose chain Amazon refused once, however often forged requests name it', async () => {
    const verify = verifier();
    const url = 'https://s3.amazonaws.com/echo.api/forged-missing.pem';
    for (let attempt = 0; attempt < 5; attempt += 1) expect(await rejection(verify.verify(signed(request(), url)))).toBe('certificate_unreadable');
    expect(signer.fetches.filter((fetched) => fetched === url)).toHaveLength(1);
  });

  it('refuses a signing certificate outside its dates', async () => {
    const { shortLived } = variants;
    const url = signer.serve('short-lived', shortLived.chainPem);
    const { validFrom, validTo } = new X509Certificate(shortLived.chainPem);
    expect(await rejection(verifier().verify(signed(request(), url, shortLived.privateKeyPem)))).toBe('accepted');
    now = Date.parse(validTo) + MINUTE;
    expect(await rejection(verifier().verify(signed(request(), url, shortLived.privateKeyPem)))).toBe('certificate_expired');
    now = Date.parse(validFrom) - MINUTE;
    expect(await rejection(verifier().verify(signed(request(), url, shortLived.privateKeyPem)))).toBe('certificate_expired');
  });

  it('stops using a cached chain when its certificate expires', async () => {
    const { shortLived } = variants;
    const url = signer.serve('cached-short-lived', shortLived.chainPem);
    const verify = verifier();
    expect(await rejection(verify.verify(signed(request(), url, shortLived.privateKeyPem)))).toBe('accepted');
    expect(await rejection(verify.verify(signed(request(), url, shortLived.privateKeyPem)))).toBe('accepted');
    now = Date.parse(new X509Certificate(shortLived.chainPem).validTo) + SECOND;
    expect(await rejection(verify.verify(signed(request(), url, shortLived.privateKeyPem)))).toBe('certificate_expired');
    expect(signer.fetches.filter((fetched) => fetched === url)).toHaveLength(2);
  });

  it('refuses a signing certificate without echo-api.amazon.com among its subject alternative names', async () => {
    for (const [index, wrongName] of variants.wrongNames.entries()) {
      const url = signer.serve(`wrong-name-${index}`, wrongName.chainPem);
      expect(await rejection(verifier().verify(signed(request(), url, wrongName.privateKeyPem)))).toBe('certificate_name');
    }
  });

  it('refuses chains that do not lead to a trusted root: another CA, self-signed, issued by a non-CA', async () => {
    const { untrusted, selfSigned, belowEndEntity } = variants;
    for (const [name, chain] of [['untrusted', untrusted], ['self-signed', selfSigned], ['below-end-entity', belowEndEntity]] as const) {
      const url = signer.serve(name, chain.chainPem);
      expect(await rejection(verifier().verify(signed(request(), url, chain.privateKeyPem))), name).toBe('certificate_untrusted');
    }
  });

  it('accepts a chain through an intermediate CA, and production trusts only the system roots', async () => {
    const { viaIntermediate } = variants;
    const url = signer.serve('via-intermediate', viaIntermediate.chainPem);
    expect(await rejection(verifier().verify(signed(request(), url, viaIntermediate.privateKeyPem)))).toBe('accepted');
    const { trustedRootsPem: _testRoots, ...withSystemRoots } = signer.verifierOptions(SKILL_ID);
    expect(await rejection(createAlexaRequestVerifier(withSystemRoots).verify(signed(request())))).toBe('certificate_untrusted');
  });

  it('refuses requests more than 150 s from now', async () => {
    const verify = verifier();
    expect(await rejection(verify.verify(signed(request({ ageMs: 149 * SECOND }))))).toBe('accepted');
    expect(await rejection(verify.verify(signed(request({ ageMs: 151 * SECOND }))))).toBe('stale_timestamp');
    expect(await rejection(verify.verify(signed(request({ ageMs: -151 * SECOND }))))).toBe('stale_timestamp');
  });

  it('lets skill events be up to an hour old', async () => {
    const verify = verifier();
    expect(await rejection(verify.verify(signed(request({ type: 'AlexaSkillEvent.SkillDisabled', ageMs: 59 * MINUTE }))))).toBe('accepted');
    expect(await rejection(verify.verify(signed(request({ type: 'AlexaSkillEvent.SkillDisabled', ageMs: 61 * MINUTE }))))).toBe('stale_timestamp');
    expect(await rejection(verify.verify(signed(request({ type: 'IntentRequest', ageMs: 59 * MINUTE }))))).toBe('stale_timestamp');
  });

  it('refuses requests for another skill, or naming none', async () => {
    const verify = verifier();
    expect(await rejection(verify.verify(signed(request({ skillId: 'amzn1.ask.skill.other' }))))).toBe('wrong_skill');
    const sessionOnly = JSON.stringify({ version: '1.0', session: { application: { applicationId: SKILL_ID } }, request: { type: 'LaunchRequest', timestamp: new Date(now).toISOString() } });
    expect(await rejection(verify.verify(signed(sessionOnly)))).toBe('accepted');
    const conflicting = JSON.stringify({ ...JSON.parse(request()), session: { application: { applicationId: 'amzn1.ask.skill.other' } } });
    expect(await rejection(verify.verify(signed(conflicting)))).toBe('wrong_skill');
    const none = JSON.stringify({ version: '1.0', request: { type: 'LaunchRequest', timestamp: new Date(now).toISOString() } });
    expect(await rejection(verify.verify(signed(none)))).toBe('wrong_skill');
  });

  it('refuses signed bodies that are not Alexa requests', async () => {
    const verify = verifier();
    expect(await rejection(verify.verify(signed('not json')))).toBe('malformed_body');
    expect(await rejection(verify.verify(signed(JSON.stringify({ request: { type: 'IntentRequest' } }))))).toBe('malformed_body');
    const badDate = JSON.stringify({ context: { System: { application: { applicationId: SKILL_ID } } }, request: { type: 'IntentRequest', timestamp: 'yesterday' } });
    expect(await rejection(verify.verify(signed(badDate)))).toBe('malformed_body');
  });

});

/**
 * Forged requests choose the certificate URL, and each new one would cost a fetch from Amazon's store:
 * failures are remembered per URL, and fetches are limited at a time and in distinct URLs a minute.
 * The fetcher is the unit's collaborator, so a stub that records and holds its calls.
 */
describe('Alexa certificate chain fetching, bounded against forged requests', () => {
  const limits = { maxConcurrentFetches: 2, maxUrlsPerMinute: 3, rejectionMemoryMs: 10 * MINUTE, unavailabilityMemoryMs: 15 * SECOND };
  const urlOf = (name: string) => `https://s3.amazonaws.com/echo.api/${name}.pem`;
  let now: number;
  let fetched: string[];

  beforeEach(() => {
    now = Date.now();
    fetched = [];
  });

  function chains(answer: CertificateChainFetcher): AlexaCertificateChains {
    const fetch: CertificateChainFetcher = (url) => {
      fetched.push(url);
      return answer(url);
    };
    return new AlexaCertificateChains({ trustedRootsPem: [], fetch, now: () => now, limits });
  }

  const refused: CertificateChainFetcher = async (url) => {
    throw new AlexaRequestRejected('certificate_unreadable', `nothing at ${url}`);
  };

  /** What a lookup ends in: the rejection's reason, 'unavailable' (503) or 'accepted'. */
  async function outcome(promise: Promise<unknown>): Promise<string> {
    try {
      await promise;
      return 'accepted';
    } catch (error) {
      if (error instanceof AlexaRequestRejected) return error.reason;
      if (error instanceof AlexaCertificateChainUnavailable) return 'unavailable';
      throw error;
    }
  }

  it('refuses a URL whose chain was refused again without fetching it, until the memory has passed', async () => {
    const store = chains(refused);
    for (let attempt = 0; attempt < 3; attempt += 1) expect(await outcome(store.signingCertificate(urlOf('forged')))).toBe('certificate_unreadable');
    expect(fetched).toEqual([urlOf('forged')]);
    now += limits.rejectionMemoryMs;
    expect(await outcome(store.signingCertificate(urlOf('forged')))).toBe('certificate_unreadable');
    expect(fetched).toHaveLength(2);
  });

  it("remembers briefly that Amazon's store did not answer for a URL", async () => {
    const store = chains(async () => {
      throw new AlexaCertificateChainUnavailable('the certificate store answered 503');
    });
    expect(await outcome(store.signingCertificate(urlOf('busy')))).toBe('unavailable');
    expect(await outcome(store.signingCertificate(urlOf('busy')))).toBe('unavailable');
    expect(fetched).toHaveLength(1);
    now += limits.unavailabilityMemoryMs;
    expect(await outcome(store.signingCertificate(urlOf('busy')))).toBe('unavailable');
    expect(fetched).toHaveLength(2);
  });

  it('fetches at most maxConcurrentFetches chains at a time: one more is answered 503 unfetched, the same URL waits for its fetch', async () => {
    // Fetches are held until released; once released, the store answers at once.
    const held = new Map<string, () => void>();
    let holding = true;
    const store = chains((url) =>
      holding
        ? new Promise<string>((_resolve, reject) => held.set(url, () => reject(new AlexaRequestRejected('certificate_unreadable', `nothing at ${url}`))))
        : refused(url),
    );
    const first = outcome(store.signingCertificate(urlOf('first')));
    const second = outcome(store.signingCertificate(urlOf('second')));
    const sameAsFirst = outcome(store.signingCertificate(urlOf('first')));
    expect(await outcome(store.signingCertificate(urlOf('third')))).toBe('unavailable');
    expect(fetched).toEqual([urlOf('first'), urlOf('second')]);

    holding = false;
    for (const release of held.values()) release();
    expect(await Promise.all([first, second, sameAsFirst])).toEqual(['certificate_unreadable', 'certificate_unreadable', 'certificate_unreadable']);
    expect(await outcome(store.signingCertificate(urlOf('third')))).toBe('certificate_unreadable');
    expect(fetched).toEqual([urlOf('first'), urlOf('second'), urlOf('third')]);
  });

  it('fetches at most maxUrlsPerMinute distinct URLs a minute; a URL refused for that is fetched once the minute has passed', async () => {
    const store = chains(refused);
    for (const name of ['a', 'b', 'c']) expect(await outcome(store.signingCertificate(urlOf(name)))).toBe('certificate_unreadable');
    expect(await outcome(store.signingCertificate(urlOf('d')))).toBe('unavailable');
    expect(fetched).toHaveLength(3);
    now += MINUTE;
    expect(await outcome(store.signingCertificate(urlOf('d')))).toBe('certificate_unreadable');
    expect(fetched).toHaveLength(4);
  });
});
