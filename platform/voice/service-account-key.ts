import { createPrivateKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../config';

const VARIABLE = 'GOOGLE_HOME_SERVICE_ACCOUNT_KEY';

/** The fields of a Google service account's JSON key file that signing needs; the rest is ignored. */
const keyFile = z.object({
  client_email: z.string().email(),
  private_key: z.string().startsWith('-----BEGIN PRIVATE KEY-----', 'must be a PKCS #8 PEM private key'),
  private_key_id: z.string().min(1),
});

export interface ServiceAccountKey {
  clientEmail: string;
  privateKeyId: string;
  privateKey: KeyObject;
}

/**
 * Reads the key as GOOGLE_HOME_SERVICE_ACCOUNT_KEY holds it: the JSON file's text, or that text
 * base64-encoded (easier to put in an environment variable). A bad key stops start-up; messages name
 * fields, never their values.
 */
export function parseServiceAccountKey(text: string): ServiceAccountKey {
  const trimmed = text.trim();
  const json = trimmed.startsWith('{') ? trimmed : Buffer.from(trimmed, 'base64').toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new ConfigError([`${VARIABLE}: must be a service account's JSON key, or that JSON base64-encoded`]);
  }
  const parsed = keyFile.safeParse(value);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${VARIABLE}: ${issue.path.join('.') || 'key'} ${issue.message}`));
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: parsed.data.private_key, format: 'pem' });
  } catch {
    throw new ConfigError([`${VARIABLE}: private_key cannot be read as a PEM private key`]);
  }
  if (privateKey.asymmetricKeyType !== 'rsa') throw new ConfigError([`${VARIABLE}: private_key must be an RSA key (RS256)`]);
  return { clientEmail: parsed.data.client_email, privateKeyId: parsed.data.private_key_id, privateKey };
}
