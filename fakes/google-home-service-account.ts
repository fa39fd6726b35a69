// Service-account keys and the JWT bearer grant of the fake Google Home (fakes/google-home.ts): what
// Google's token endpoint checks in an assertion, and the access tokens it issues. No HTTP here.
import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { IssuedSecrets } from './issued-secrets';

export const HOME_GRAPH_SCOPE = 'https://www.googleapis.com/auth/homegraph';
/** Google refuses assertions that claim to live longer than an hour. */
const MAX_ASSERTION_LIFETIME_SECONDS = 3600;

/** The public half of a service account key, as Google holds it. */
export interface FakeServiceAccount {
  clientEmail: string;
  privateKeyId: string;
  publicKey: KeyObject;
}

/**
 * A new service account key: `json` is the key file's text (GOOGLE_HOME_SERVICE_ACCOUNT_KEY), `account`
 * what the fake needs to check assertions signed with it.
 */
export function generateServiceAccountKey(options: { projectId?: string; name?: string } = {}): { json: string; account: FakeServiceAccount } {
  const projectId = options.projectId ?? 'fake-smart-home';
  const clientEmail = `${options.name ?? 'home-graph'}@${projectId}.iam.gserviceaccount.com`;
  const privateKeyId = randomBytes(20).toString('hex');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const json = JSON.stringify({
    type: 'service_account',
    project_id: projectId,
    private_key_id: privateKeyId,
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    client_email: clientEmail,
    client_id: String(Date.now()),
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: 'https://oauth2.googleapis.com/token',
  });
  return { json, account: { clientEmail, privateKeyId, publicKey } };
}

export type AssertionRefusal = { error: 'invalid_grant' | 'invalid_scope'; description: string };
export type BearerCheck = 'valid' | 'expired' | 'unknown';

export class ServiceAccountTokenIssuer {
  private readonly accessTokens = new Map<string, number>();
  private readonly issued: string[] = new IssuedSecrets();

  constructor(
    private readonly account: FakeServiceAccount,
    private readonly settings: { clock: () => number; audience: () => string; accessTokenLifetimeSeconds: number },
  ) {}

  /** Google's checks of a JWT bearer assertion: key, signature, issuer, audience, times and scope. */
  async exchange(assertion: string): Promise<{ accessToken: string; expiresIn: number } | AssertionRefusal> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(assertion);
    } catch {
      return { error: 'invalid_grant', description: 'Invalid JWT: not a JWT.' };
    }
    if (header.kid !== this.account.privateKeyId) return { error: 'invalid_grant', description: 'Invalid grant: account not found' };
    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(assertion, this.account.publicKey, {
        algorithms: ['RS256'],
        issuer: this.account.clientEmail,
        audience: this.settings.audience(),
        currentDate: new Date(this.settings.clock()),
        requiredClaims: ['iat', 'exp'],
      }));
    } catch (error) {
      const description = error instanceof joseErrors.JWSSignatureVerificationFailed ? 'Invalid JWT Signature.' : 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.';
      return { error: 'invalid_grant', description };
    }
    if (payload.exp! - payload.iat! > MAX_ASSERTION_LIFETIME_SECONDS) {
      return { error: 'invalid_grant', description: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.' };
    }
    if (typeof payload.scope !== 'string' || !payload.scope.split(' ').includes(HOME_GRAPH_SCOPE)) {
      return { error: 'invalid_scope', description: 'Invalid OAuth scope or ID token audience provided.' };
    }
    const accessToken = `ya29.${randomBytes(64).toString('base64url')}.${randomUUID()}`;
    this.accessTokens.set(accessToken, this.settings.clock() + this.settings.accessTokenLifetimeSeconds * 1000);
    this.issued.push(accessToken);
    return { accessToken, expiresIn: this.settings.accessTokenLifetimeSeconds };
  }

  check(accessToken: string | undefined): BearerCheck {
    const expiresAt = accessToken === undefined ? undefined : this.accessTokens.get(accessToken);
    if (expiresAt === undefined) return 'unknown';
    return this.settings.clock() >= expiresAt ? 'expired' : 'valid';
  }

  /** Google ended every token early: the next API call answers 401. */
  revokeAll(): void {
    this.accessTokens.clear();
  }

  issuedTokens(): string[] {
    return [...this.issued];
  }
}
