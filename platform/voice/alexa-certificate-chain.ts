import { X509Certificate } from 'node:crypto';
import { rootCertificates } from 'node:tls';

/**
 * The signing certificate chain of requests Alexa sends to an HTTPS skill endpoint, checked as Amazon
 * documents ("Host a custom skill as a web service": verifying the signature certificate URL and the
 * signing certificate). Verified chains are cached by URL until a certificate of the chain expires.
 * Anyone can send a request naming any URL under Amazon's prefix, so what forged requests can make us
 * fetch is bounded (CertificateFetchLimits).
 */

export const ALEXA_SIGNING_NAME = 'echo-api.amazon.com';
const CERTIFICATE_HOST = 's3.amazonaws.com';
const CERTIFICATE_PATH_PREFIX = '/echo.api/';
const FETCH_TIMEOUT_MS = 4_000;
const MAX_CHAIN_BYTES = 64 * 1024;
/** The URLs are Amazon's, but anyone can send many of them: the caches stay small. */
const MAX_CACHED_CHAINS = 16;
const MAX_REMEMBERED_FAILURES = 256;
const URL_WINDOW_MS = 60_000;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

export type AlexaRejectionReason =
  | 'missing_signature'
  | 'certificate_url'
  | 'certificate_unreadable'
  | 'certificate_expired'
  | 'certificate_name'
  | 'certificate_untrusted'
  | 'signature'
  | 'malformed_body'
  | 'stale_timestamp'
  | 'wrong_skill';

/** The request is not a genuine, fresh request of Alexa for our skill: the endpoint answers 400. */
export class AlexaRequestRejected extends Error {
  override name = 'AlexaRequestRejected';

  constructor(
    readonly reason: AlexaRejectionReason,
    message: string,
  ) {
    super(message);
  }
}

/** Amazon's certificate store could not be reached (network fault, 5xx): nothing is wrong with the request, so 503. */
export class AlexaCertificateChainUnavailable extends Error {
  override name = 'AlexaCertificateChainUnavailable';
}

/** Fetches the PEM text at an (already checked) certificate URL; tests map the URL to their own chain. */
export type CertificateChainFetcher = (url: string) => Promise<string>;

/**
 * Amazon's rules for `SignatureCertChainUrl`, after resolving dot segments: https and s3.amazonaws.com
 * in any case, the path starting with `/echo.api/` exactly, no port but 443. Returns the normalised URL.
 */
export function checkCertificateUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new AlexaRequestRejected('certificate_url', 'SignatureCertChainUrl is not a URL');
  }
  // WHATWG URL parsing lower-cases scheme and host, resolves dot segments and drops the default port.
  if (url.protocol !== 'https:') throw new AlexaRequestRejected('certificate_url', 'SignatureCertChainUrl must use https');
  if (url.hostname !== CERTIFICATE_HOST) throw new AlexaRequestRejected('certificate_url', `SignatureCertChainUrl must be on ${CERTIFICATE_HOST}`);
  if (url.port !== '') throw new AlexaRequestRejected('certificate_url', 'SignatureCertChainUrl may only name port 443');
  if (!url.pathname.startsWith(CERTIFICATE_PATH_PREFIX)) throw new AlexaRequestRejected('certificate_url', `SignatureCertChainUrl must be under ${CERTIFICATE_PATH_PREFIX}`);
  if (url.username || url.password) throw new AlexaRequestRejected('certificate_url', 'SignatureCertChainUrl may not carry credentials');
  return url.toString();
}

/** Amazon's store, over the network: only answers that are plainly Amazon's refusal are the request's fault. */
export const fetchCertificateChainFromAmazon: CertificateChainFetcher = async (url) => {
  let response: Response;
  try {
    response = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (error) {
    throw new AlexaCertificateChainUnavailable(`the certificate chain could not be fetched (${error instanceof Error ? error.message : String(error)})`);
  }
  if (response.status === 429 || response.status >= 500) {
    await response.body?.cancel();
    throw new AlexaCertificateChainUnavailable(`the certificate store answered ${response.status}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new AlexaRequestRejected('certificate_unreadable', `the certificate store answered ${response.status}`);
  }
  const text = await response.text();
  if (text.length > MAX_CHAIN_BYTES) throw new AlexaRequestRejected('certificate_unreadable', 'the certificate chain is too large');
  return text;
};

/** What requests naming certificate URLs of their choosing can make us fetch from Amazon's store. */
export interface CertificateFetchLimits {
  /** Chains fetched at the same time; a request that needs one more is answered 503. */
  maxConcurrentFetches: number;
  /** Distinct URLs fetched in a minute; a request that needs another is answered 503 until the minute ends. */
  maxUrlsPerMinute: number;
  /** How long a URL whose chain was refused (unreadable, expired, wrong name, untrusted) is refused again without a fetch. */
  rejectionMemoryMs: number;
  /** How long a URL Amazon's store did not answer for is answered 503 again without a fetch: short, the store will be back. */
  unavailabilityMemoryMs: number;
}

/** Amazon's genuine chain is one URL, cached once verified: these limits only ever hold back forged requests. */
export const DEFAULT_CERTIFICATE_FETCH_LIMITS: CertificateFetchLimits = {
  maxConcurrentFetches: 4,
  maxUrlsPerMinute: 10,
  rejectionMemoryMs: 10 * 60_000,
  unavailabilityMemoryMs: 15_000,
};

interface VerifiedChain {
  signingCertificate: X509Certificate;
  /** The earliest end of validity of the certificates that made the chain trusted. */
  validUntil: number;
}

export class AlexaCertificateChains {
  private readonly verified = new Map<string, VerifiedChain>();
  private readonly inFlight = new Map<string, Promise<VerifiedChain>>();
  private readonly failures = new Map<string, { error: AlexaRequestRejected | AlexaCertificateChainUnavailable; until: number }>();
  private urlWindow = { startedAt: Number.NEGATIVE_INFINITY, urls: new Set<string>() };
  private readonly limits: CertificateFetchLimits;
  private roots: X509Certificate[] | undefined;

  constructor(
    private readonly settings: {
      trustedRootsPem: readonly string[];
      fetch: CertificateChainFetcher;
      now: () => number;
      limits?: Partial<CertificateFetchLimits>;
    },
  ) {
    this.limits = { ...DEFAULT_CERTIFICATE_FETCH_LIMITS, ...settings.limits };
  }

  /** The checked signing certificate of the chain at `url` (a URL checkCertificateUrl accepted). */
  async signingCertificate(url: string): Promise<X509Certificate> {
    const now = this.settings.now();
    const cached = this.verified.get(url);
    if (cached && now < cached.validUntil) {
      checkDates(cached.signingCertificate, now);
      return cached.signingCertificate;
    }
    this.verified.delete(url);
    const failure = this.failures.get(url);
    if (failure && now < failure.until) throw failure.error;
    this.failures.delete(url);
    let pending = this.inFlight.get(url);
    if (!pending) {
      this.admitFetch(url, now);
      pending = this.fetchAndVerify(url)
        .catch((error: unknown) => {
          this.rememberFailure(url, error);
          throw error;
        })
        .finally(() => this.inFlight.delete(url));
      this.inFlight.set(url, pending);
    }
    return (await pending).signingCertificate;
  }

  /** Refuses (503: the request may be genuine) a fetch past the limits; requests for a URL being fetched wait for that fetch instead. */
  private admitFetch(url: string, now: number): void {
    if (this.inFlight.size >= this.limits.maxConcurrentFetches) {
      throw new AlexaCertificateChainUnavailable('too many certificate chains are being fetched; try again');
    }
    if (now - this.urlWindow.startedAt >= URL_WINDOW_MS) this.urlWindow = { startedAt: now, urls: new Set() };
    const { urls } = this.urlWindow;
    if (!urls.has(url) && urls.size >= this.limits.maxUrlsPerMinute) {
      throw new AlexaCertificateChainUnavailable('too many certificate URLs were fetched this minute; try again');
    }
    urls.add(url);
  }

  /** Refusals and unavailability are remembered per URL; anything else is a fault of ours and is not. */
  private rememberFailure(url: string, error: unknown): void {
    let memoryMs: number;
    if (error instanceof AlexaRequestRejected) memoryMs = this.limits.rejectionMemoryMs;
    else if (error instanceof AlexaCertificateChainUnavailable) memoryMs = this.limits.unavailabilityMemoryMs;
    else return;
    if (this.failures.size >= MAX_REMEMBERED_FAILURES) this.failures.delete(this.failures.keys().next().value!);
    this.failures.set(url, { error, until: this.settings.now() + memoryMs });
  }

  private async fetchAndVerify(url: string): Promise<VerifiedChain> {
    const chain = parseChain(await this.settings.fetch(url));
    const now = this.settings.now();
    const signingCertificate = chain[0]!;
    checkDates(signingCertificate, now);
    if (signingCertificate.checkHost(ALEXA_SIGNING_NAME, { subject: 'never', wildcards: false }) === undefined) {
      throw new AlexaRequestRejected('certificate_name', `the signing certificate is not issued to ${ALEXA_SIGNING_NAME}`);
    }
    const verified = { signingCertificate, validUntil: this.trustedUntil(chain, now) };
    if (this.verified.size >= MAX_CACHED_CHAINS) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(url, verified);
    return verified;
  }

  /**
   * Walks the chain from the signing certificate: each certificate must be within its dates and issued
   * and signed by the next, until one is issued by a trusted root. Cross-signed roots further up are
   * never needed. Returns when the first certificate of that path expires.
   */
  private trustedUntil(chain: X509Certificate[], now: number): number {
    let validUntil = Number.POSITIVE_INFINITY;
    for (const [index, certificate] of chain.entries()) {
      checkDates(certificate, now);
      validUntil = Math.min(validUntil, notAfter(certificate));
      const root = this.trustedRoots().find((candidate) => issuedBy(certificate, candidate) && within(candidate, now));
      if (root) return Math.min(validUntil, notAfter(root));
      const issuer = chain[index + 1];
      if (!issuer || !issuedBy(certificate, issuer)) break;
    }
    throw new AlexaRequestRejected('certificate_untrusted', 'the certificate chain does not lead to a trusted root');
  }

  private trustedRoots(): X509Certificate[] {
    this.roots ??= this.settings.trustedRootsPem.flatMap((pem) => {
      try {
        return [new X509Certificate(pem)];
      } catch {
        return [];
      }
    });
    return this.roots;
  }
}

export const SYSTEM_ROOTS: readonly string[] = rootCertificates;

function parseChain(pem: string): X509Certificate[] {
  try {
    const chain = (pem.match(PEM_CERTIFICATE) ?? []).map((block) => new X509Certificate(block));
    if (chain.length > 0) return chain;
  } catch {
    // falls through to the rejection
  }
  throw new AlexaRequestRejected('certificate_unreadable', 'the certificate chain is not a list of PEM certificates');
}

function issuedBy(certificate: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey);
}

function notAfter(certificate: X509Certificate): number {
  return Date.parse(certificate.validTo);
}

function within(certificate: X509Certificate, now: number): boolean {
  return Date.parse(certificate.validFrom) <= now && now <= notAfter(certificate);
}

function checkDates(certificate: X509Certificate, now: number): void {
  if (!within(certificate, now)) throw new AlexaRequestRejected('certificate_expired', `a certificate of the chain is not valid now (${certificate.validFrom} to ${certificate.validTo})`);
}
