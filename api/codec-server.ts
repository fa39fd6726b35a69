import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Payload, PayloadCodec } from '@temporalio/common';
import type { Config } from '../platform/config';
import { fastifyLoggerOptions } from '../platform/logger';
import { secretsEqual } from '../platform/secrets';
import { errorResponseSchema, HttpError } from './errors';
import errorHandling from './plugins/errors';

/**
 * The codec server: lets an authorised operator read (and write) encrypted payloads in Temporal Web,
 * speaking Temporal's codec server protocol. `POST /decode` and `POST /encode` take and answer
 * `{ payloads: [{ metadata: { <key>: <base64> }, data: <base64> }] }`; Temporal Web adds `X-Namespace`.
 *
 * Every POST needs `Authorization: Bearer <CODEC_SERVER_TOKEN>`: whoever can decode can read every
 * payload in the cluster. CORS admits only the Temporal Web origin; preflights need no credential
 * (browsers never send one), and 401s carry the CORS headers so the UI can show why it failed.
 */

export interface CodecServerOptions {
  codec: PayloadCodec;
  token: string;
  corsOrigin: string;
  logLevel: Config['logLevel'];
}

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const ALLOWED_HEADERS = 'content-type, x-namespace, authorization';
const ALLOWED_METHODS = 'POST, OPTIONS';

const payloadsSchema = {
  type: 'object',
  required: ['payloads'],
  additionalProperties: false,
  properties: {
    payloads: {
      type: 'array',
      maxItems: 1000,
      items: {
        type: 'object',
        properties: {
          metadata: { type: 'object', additionalProperties: { type: 'string' } },
          data: { type: 'string' },
        },
      },
    },
  },
} as const;

const routeSchema = {
  headers: { type: 'object', properties: { 'x-namespace': { type: 'string' } } },
  body: payloadsSchema,
  response: { 200: payloadsSchema, 400: errorResponseSchema, 401: errorResponseSchema, 422: errorResponseSchema },
} as const;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function fromBase64(value: string, field: string): Uint8Array {
  if (!BASE64.test(value)) throw new HttpError(400, 'invalid_request', `${field} is not base64`);
  return Buffer.from(value, 'base64');
}

function fromJson(payload: JsonPayload, index: number): Payload {
  return {
    metadata: Object.fromEntries(
      Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, fromBase64(value, `payloads[${index}].metadata.${key}`)]),
    ),
    data: fromBase64(payload.data ?? '', `payloads[${index}].data`),
  };
}

function toJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}

export async function buildCodecServer(options: CodecServerOptions): Promise<FastifyInstance> {
  if (options.token.length < 32) throw new Error('CODEC_SERVER_TOKEN must have at least 32 characters');
  const app = Fastify({ logger: fastifyLoggerOptions({ logLevel: options.logLevel }), bodyLimit: 8 * 1024 * 1024 });
  await app.register(errorHandling);

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    reply.header('vary', 'Origin');
    if (request.headers.origin === options.corsOrigin) {
      reply.header('access-control-allow-origin', options.corsOrigin);
      // Temporal Web's "include cross-origin credentials" option sends cookies along.
      reply.header('access-control-allow-credentials', 'true');
    }
    if (request.method === 'OPTIONS') {
      if (request.headers.origin !== options.corsOrigin) {
        return reply.code(403).send({ error: 'forbidden_origin', message: 'Origin not allowed' });
      }
      return reply
        .code(204)
        .header('access-control-allow-methods', ALLOWED_METHODS)
        .header('access-control-allow-headers', ALLOWED_HEADERS)
        .header('access-control-max-age', '600')
        .send();
    }
    const presented = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (!presented || !secretsEqual(presented, options.token)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="codec-server"')
        .send({ error: 'unauthorized', message: 'A valid operator credential (Authorization: Bearer <CODEC_SERVER_TOKEN>) is required' });
    }
  });

  const handler = (direction: 'encode' | 'decode') => async (request: FastifyRequest<{ Body: { payloads: JsonPayload[] } }>) => {
    const payloads = request.body.payloads.map(fromJson);
    let result: Payload[];
    try {
      result = await options.codec[direction](payloads);
    } catch (error) {
      request.log.warn({ namespace: request.headers['x-namespace'], err: error }, `${direction} failed`);
      throw new HttpError(422, `${direction}_failed`, error instanceof Error ? error.message : `${direction} failed`);
    }
    request.log.info({ namespace: request.headers['x-namespace'], count: payloads.length }, direction);
    return { payloads: result.map(toJson) };
  };

  app.post('/decode', { schema: routeSchema }, handler('decode'));
  app.post('/encode', { schema: routeSchema }, handler('encode'));
  return app;
}
