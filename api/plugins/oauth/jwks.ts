import type { FastifyInstance } from 'fastify';

/**
 * GET /oauth/jwks: the public keys that may have signed a live access token (the active key and
 * retired keys within their grace period). Resource servers may cache it briefly; a token with an
 * unknown `kid` is their cue to fetch again.
 */
export default async function jwks(app: FastifyInstance) {
  app.get(
    '/oauth/jwks',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            required: ['keys'],
            properties: {
              keys: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['kty', 'kid'],
                  properties: {
                    kty: { type: 'string' },
                    kid: { type: 'string' },
                    alg: { type: 'string' },
                    use: { type: 'string' },
                    n: { type: 'string' },
                    e: { type: 'string' },
                  },
                },
              },
            },
          },
        },
      },
    },
    async (_request, reply) => {
      const keySet = await app.authorizationServer.keys.publicKeySet();
      // A fresh database has no key until the first token is signed; publish the one that will sign.
      if (keySet.keys.length === 0) {
        await app.authorizationServer.keys.activeKey();
        return reply.header('cache-control', 'public, max-age=300').send(await app.authorizationServer.keys.publicKeySet());
      }
      return reply.header('cache-control', 'public, max-age=300').send(keySet);
    },
  );
}
