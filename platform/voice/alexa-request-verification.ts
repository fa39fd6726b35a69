import { createVerify } from 'node:crypto';
import { z } from 'zod';
import {
  AlexaCertificateChains,
  AlexaRequestRejected,
  checkCertificateUrl,
  fetchCertificateChainFromAmazon,
  SYSTEM_ROOTS,
  type CertificateChainFetcher,
} from './alexa-certificate-chain';

export { AlexaCertificateChainUnavailable, AlexaRequestRejected, type AlexaRejectionReason, type CertificateChainFetcher } from './alexa-certificate-chain';

/**
 * Verifies requests that Alexa sends straight to an HTTPS skill endpoint, as Amazon documents for
 * skills hosted as a web service: the signing certificate chain (alexa-certificate-chain.ts), the
 * `Signature-256` over the raw body, the request's timestamp, and our skill id.
 */

/** Amazon's tolerance for ordinary requests. */
const REQUEST_TOLERANCE_MS = 150 * 1000;
/** Skill events (`AlexaSkillEvent.SkillDisabled`, …) may be delivered up to an hour late. */
const SKILL_EVENT_TOLERANCE_MS = 3600 * 1000;
const SKILL_EVENT_PREFIX = 'AlexaSkillEvent.';
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

const application = z.object({ applicationId: z.string() }).passthrough();
const requestEnvelope = z
  .object({
    version: z.string().optional(),
    session: z.object({ application: application.optional() }).passthrough().optional(),
    context: z.object({ System: z.object({ application: application.optional() }).passthrough().optional() }).passthrough().optional(),
    request: z.object({ type: z.string().min(1), timestamp: z.string().min(1) }).passthrough(),
  })
  .passthrough();

/** A verified request body; what the request type carries beyond these fields is the endpoint's to read. */
export type AlexaRequestEnvelope = z.infer<typeof requestEnvelope>;

export interface AlexaSignedRequest {
  /** The `SignatureCertChainUrl` header. */
  signatureCertChainUrl: string | undefined;
  /** The `Signature-256` header. */
  signature256: string | undefined;
  /** The body exactly as received: the signature is over these bytes. */
  rawBody: Buffer | string;
}

export interface AlexaRequestVerifier {
  /** The parsed body of a genuine, fresh request for our skill; throws AlexaRequestRejected (400) or AlexaCertificateChainUnavailable (503). */
  verify(request: AlexaSignedRequest): Promise<AlexaRequestEnvelope>;
}

export interface AlexaRequestVerifierOptions {
  skillId: string;
  /** PEM certificates the chain must lead to; Node's bundled roots (those Amazon's chain ends in) when absent. */
  trustedRootsPem?: readonly string[];
  /** Fetches a chain by URL (after the URL passed Amazon's rules); Amazon's store over HTTPS when absent. */
  fetchCertificateChain?: CertificateChainFetcher;
  now?: () => number;
}

export function createAlexaRequestVerifier(options: AlexaRequestVerifierOptions): AlexaRequestVerifier {
  const now = options.now ?? Date.now;
  const chains = new AlexaCertificateChains({
    trustedRootsPem: options.trustedRootsPem ?? SYSTEM_ROOTS,
    fetch: options.fetchCertificateChain ?? fetchCertificateChainFromAmazon,
    now,
  });

  return {
    async verify({ signatureCertChainUrl, signature256, rawBody }) {
      if (!signatureCertChainUrl || !signature256) throw new AlexaRequestRejected('missing_signature', 'SignatureCertChainUrl and Signature-256 are required');
      const signingCertificate = await chains.signingCertificate(checkCertificateUrl(signatureCertChainUrl.trim()));
      const body = typeof rawBody === 'string' ? Buffer.from(rawBody, 'utf8') : rawBody;
      const signature = signature256.trim();
      const genuine = BASE64.test(signature) && createVerify('RSA-SHA256').update(body).verify(signingCertificate.publicKey, Buffer.from(signature, 'base64'));
      if (!genuine) throw new AlexaRequestRejected('signature', 'Signature-256 does not match the body');

      const envelope = parseEnvelope(body);
      const timestamp = Date.parse(envelope.request.timestamp);
      if (Number.isNaN(timestamp)) throw new AlexaRequestRejected('malformed_body', 'request.timestamp is not a date');
      const tolerance = envelope.request.type.startsWith(SKILL_EVENT_PREFIX) ? SKILL_EVENT_TOLERANCE_MS : REQUEST_TOLERANCE_MS;
      if (Math.abs(now() - timestamp) > tolerance) throw new AlexaRequestRejected('stale_timestamp', `request.timestamp is more than ${tolerance / 1000} s from now`);

      const skillIds = [envelope.context?.System?.application?.applicationId, envelope.session?.application?.applicationId].filter((id) => id !== undefined);
      if (skillIds.length === 0 || skillIds.some((id) => id !== options.skillId)) throw new AlexaRequestRejected('wrong_skill', 'the request is not for this skill');
      return envelope;
    },
  };
}

/** The verifier production uses: Amazon's chains and the system's roots; undefined while ALEXA_SKILL_ID is unset. */
export function alexaRequestVerifierFromConfig(alexa: { skillId: string | undefined }): AlexaRequestVerifier | undefined {
  return alexa.skillId ? createAlexaRequestVerifier({ skillId: alexa.skillId }) : undefined;
}

function parseEnvelope(body: Buffer): AlexaRequestEnvelope {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AlexaRequestRejected('malformed_body', 'the body is not JSON');
  }
  const parsed = requestEnvelope.safeParse(json);
  if (!parsed.success) throw new AlexaRequestRejected('malformed_body', `the body lacks ${parsed.error.issues.map((issue) => issue.path.join('.')).join(', ')}`);
  return parsed.data;
}
