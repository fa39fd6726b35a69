import type { ConnectionStatus } from '../../db/queries/connections';

const nullableString = { type: ['string', 'null'] } as const;

export const connectionStatusSchema = {
  type: 'object',
  required: ['provider', 'configured', 'connected', 'connection'],
  properties: {
    provider: { type: 'string' },
    configured: { type: 'boolean', description: 'whether this server has client credentials for the provider' },
    connected: { type: 'boolean', description: 'true while the connection is active' },
    connection: {
      type: ['object', 'null'],
      required: ['id', 'status', 'scopes', 'workflow'],
      properties: {
        id: { type: 'string' },
        status: { type: 'string', enum: ['pending', 'active', 'needs_reauth', 'disconnecting', 'disconnected', 'failed'] },
        scopes: { type: 'array', items: { type: 'string' } },
        accessTokenExpiresAt: nullableString,
        lastRefreshedAt: nullableString,
        nextRefreshAt: nullableString,
        lastError: {
          type: ['object', 'null'],
          properties: { kind: { type: 'string' }, message: { type: 'string' }, at: nullableString },
        },
        revocation: { ...nullableString, description: 'outcome of the upstream revocation at disconnect' },
        createdAt: { type: 'string' },
        disconnectedAt: nullableString,
        workflow: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            running: { type: 'boolean' },
            status: nullableString,
            refreshCount: { type: ['integer', 'null'] },
          },
        },
      },
    },
  },
} as const;

export interface ConnectionStatusResponse {
  provider: string;
  configured: boolean;
  connected: boolean;
  connection: {
    id: string;
    status: ConnectionStatus;
    scopes: string[];
    accessTokenExpiresAt: string | null;
    lastRefreshedAt: string | null;
    nextRefreshAt: string | null;
    lastError: { kind: string; message: string; at: string | null } | null;
    revocation: string | null;
    createdAt: string;
    disconnectedAt: string | null;
    workflow: { id: string; running: boolean; status: string | null; refreshCount: number | null };
  } | null;
}
