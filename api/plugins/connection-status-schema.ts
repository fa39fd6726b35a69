import type { ConnectionStatus } from '../../db/queries/connections';

const nullableString = { type: ['string', 'null'] } as const;

export const connectionStatusSchema = {
  type: 'object',
  required: ['provider', 'configured', 'connected', 'upstreamRevocation', 'connection'],
  properties: {
    provider: { type: 'string' },
    configured: { type: 'boolean', description: 'whether this server has client credentials for the provider' },
    upstreamRevocation: {
      type: 'object',
      required: ['supported', 'note'],
      description: 'what disconnecting can do at the provider',
      properties: { supported: { type: 'boolean' }, note: { type: 'string' } },
    },
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
        sync: {
          type: 'object',
          description: 'data sync runs: the last finished one and the one in progress (from the database), the next (from the workflow)',
          properties: {
            lastRunAt: nullableString,
            lastOutcome: { type: ['string', 'null'], enum: ['succeeded', 'failed', null] },
            lastCounts: {
              type: ['object', 'null'],
              properties: { created: { type: 'integer' }, updated: { type: 'integer' }, deleted: { type: 'integer' }, fullResync: { type: 'boolean' } },
            },
            lastError: { type: ['object', 'null'], properties: { kind: { type: 'string' }, message: { type: 'string' } } },
            runningSince: { ...nullableString, description: 'start of the sync run in progress, if one is' },
            nextRunAt: nullableString,
            runCount: { type: ['integer', 'null'], description: 'syncs run by the connection\'s workflow, across continue-as-new' },
          },
        },
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
  upstreamRevocation: { supported: boolean; note: string };
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
    sync: {
      lastRunAt: string | null;
      lastOutcome: 'succeeded' | 'failed' | null;
      runningSince: string | null;
      lastCounts: { created: number; updated: number; deleted: number; fullResync: boolean } | null;
      lastError: { kind: string; message: string } | null;
      nextRunAt: string | null;
      runCount: number | null;
    };
    workflow: { id: string; running: boolean; status: string | null; refreshCount: number | null };
  } | null;
}
