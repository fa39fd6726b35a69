import { execFile } from 'node:child_process';
import { createSign } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ALEXA_SIGNING_NAME } from '../../platform/voice/alexa-certificate-chain';
import { AlexaRequestRejected, type AlexaRequestVerifierOptions } from '../../platform/voice/alexa-request-verification';

/**
 * Certificates and signatures of requests "from Alexa" for tests: our own certificate authority stands
 * in for Amazon's, and a fetcher maps `https://s3.amazonaws.com/echo.api/<name>.pem` (a URL that passes
 * Amazon's rules) to the chains made here. node:crypto cannot issue certificates, so the openssl command does.
 */

const run = promisify(execFile);

export interface TestCertificateAuthority {
  certificatePem: string;
  keyPem: string;
  /** This certificate and those of its issuers below the root: what a chain below it carries. */
  chainPem: string;
}

export interface TestSigningCertificate {
  /** The PEM chain as Amazon serves it: signing certificate first, then its issuers. */
  chainPem: string;
  privateKeyPem: string;
}

async function inTemporaryDirectory<T>(work: (directory: string) => Promise<T>): Promise<T> {
  const directory = await mkdtemp(path.join(tmpdir(), 'alexa-signing-'));
  try {
    return await work(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** A root CA, or with `issuer` an intermediate CA issued by it. */
export function createTestCertificateAuthority(name = 'Test Alexa Root CA', issuer?: TestCertificateAuthority): Promise<TestCertificateAuthority> {
  return inTemporaryDirectory(async (directory) => {
    const file = (fileName: string) => path.join(directory, fileName);
    const extensions = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];
    if (issuer) {
      await writeFile(file('extensions'), `${extensions.join('\n')}\n`);
      await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.csr'), '-subj', `/CN=${name}`]);
      await signRequest(directory, issuer, { days: '3650' });
    } else {
      await run('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.pem'), '-subj', `/CN=${name}`, '-days', '3650',
        ...extensions.flatMap((extension) => ['-addext', extension]),
      ]);
    }
    const certificatePem = await readFile(file('ca.pem'), 'utf8');
    return { certificatePem, keyPem: await readFile(file('ca.key'), 'utf8'), chainPem: issuer ? `${certificatePem}${issuer.chainPem}` : certificatePem };
  });
}

/** Signs `ca.csr` in `directory` into `ca.pem` with the extensions in `extensions`. */
async function signRequest(directory: string, issuer: Pick<TestCertificateAuthority, 'certificatePem' | 'keyPem'>, options: { days: string; request?: string; output?: string }): Promise<void> {
  const file = (fileName: string) => path.join(directory, fileName);
  await writeFile(file('issuer.pem'), issuer.certificatePem);
  await writeFile(file('issuer.key'), issuer.keyPem);
  await run('openssl', [
    'x509', '-req', '-in', file(options.request ?? 'ca.csr'), '-CA', file('issuer.pem'), '-CAkey', file('issuer.key'), '-set_serial', String(Date.now()),
    '-days', options.days, '-extfile', file('extensions'), '-out', file(options.output ?? 'ca.pem'),
  ]);
}

/**
 * A signing certificate valid from now for `days`, with the given DNS names (echo-api.amazon.com unless
 * said otherwise), issued by `issuer` or, without one, self-signed. `issuer` may be any certificate with
 * its key, a CA's or not.
 */
export function issueSigningCertificate(
  issuer: Pick<TestCertificateAuthority, 'certificatePem' | 'keyPem' | 'chainPem'> | undefined,
  options: { dnsNames?: string[]; days?: number } = {},
): Promise<TestSigningCertificate> {
  const dnsNames = options.dnsNames ?? [ALEXA_SIGNING_NAME];
  const days = String(options.days ?? 365);
  return inTemporaryDirectory(async (directory) => {
    const file = (name: string) => path.join(directory, name);
    const extensions = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', ...(dnsNames.length > 0 ? [`subjectAltName=${dnsNames.map((name) => `DNS:${name}`).join(',')}`] : [])];
    await writeFile(file('extensions'), `${extensions.join('\n')}\n`);
    await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('leaf.key'), '-out', file('leaf.csr'), '-subj', `/CN=${dnsNames[0] ?? 'no-name'}`]);
    if (issuer) {
      await signRequest(directory, issuer, { days, request: 'leaf.csr', output: 'leaf.pem' });
    } else {
      await run('openssl', ['x509', '-req', '-in', file('leaf.csr'), '-signkey', file('leaf.key'), '-days', days, '-extfile', file('extensions'), '-out', file('leaf.pem')]);
    }
    const leaf = await readFile(file('leaf.pem'), 'utf8');
    return { chainPem: issuer ? `${leaf}${issuer.chainPem}` : leaf, privateKeyPem: await readFile(file('leaf.key'), 'utf8') };
  });
}

/** The headers Alexa sends with a request: `Signature-256` is RSA-SHA256 over the exact body bytes. */
export function signAlexaRequest(body: string, privateKeyPem: string, certificateChainUrl: string): { signaturecertchainurl: string; 'signature-256': string } {
  const signature = createSign('RSA-SHA256').update(Buffer.from(body, 'utf8')).sign(privateKeyPem, 'base64');
  return { signaturecertchainurl: certificateChainUrl, 'signature-256': signature };
}

/** A custom-skill or skill-event request body as Alexa sends it. */
export function alexaRequestBody(options: { skillId: string; type: string; timestamp: Date; userId?: string; accessToken?: string; extra?: Record<string, unknown> }): string {
  const user = { userId: options.userId ?? 'amzn1.ask.account.TEST', ...(options.accessToken ? { accessToken: options.accessToken } : {}) };
  return JSON.stringify({
    version: '1.0',
    context: { System: { application: { applicationId: options.skillId }, user } },
    request: { type: options.type, requestId: `amzn1.echo-api.request.${options.timestamp.getTime()}`, timestamp: options.timestamp.toISOString().replace(/\.\d{3}Z$/, 'Z'), locale: 'en-US', ...options.extra },
  });
}

/**
 * One test CA trusted by the verifier, and chains served under Amazon-shaped URLs. `chainUrl(name)` is
 * `https://s3.amazonaws.com/echo.api/<name>.pem`; `sign` signs with the default chain's key.
 */
export async function createAlexaTestSigner() {
  const authority = await createTestCertificateAuthority();
  const signing = await issueSigningCertificate(authority);
  const chains = new Map<string, string>();
  const chainUrl = (name: string) => `https://s3.amazonaws.com/echo.api/${name}.pem`;
  const serve = (name: string, chainPem: string) => {
    chains.set(new URL(chainUrl(name)).pathname, chainPem);
    return chainUrl(name);
  };
  const defaultUrl = serve('echo-api-cert-test', signing.chainPem);
  const fetches: string[] = [];

  return {
    authority,
    signing,
    chainUrl: defaultUrl,
    /** Serves another chain (a bad variant) under `name`; returns its URL. */
    serve,
    /** Every URL the verifier fetched, in order (the cache means a URL appears once until its chain expires). */
    fetches,
    verifierOptions(skillId: string, now?: () => number): AlexaRequestVerifierOptions {
      return {
        skillId,
        trustedRootsPem: [authority.certificatePem],
        // Whatever the rules let through goes to a map, never to the network.
        fetchCertificateChain: async (url) => {
          fetches.push(url);
          const chain = chains.get(new URL(url).pathname);
          // What Amazon's store answers for a path it does not have.
          if (!chain) throw new AlexaRequestRejected('certificate_unreadable', `no test chain at ${url}`);
          return chain;
        },
        ...(now ? { now } : {}),
      };
    },
    sign: (body: string, certificateChainUrl = defaultUrl, privateKeyPem = signing.privateKeyPem) => signAlexaRequest(body, privateKeyPem, certificateChainUrl),
  };
}

export type AlexaTestSigner = Awaited<ReturnType<typeof createAlexaTestSigner>>;
