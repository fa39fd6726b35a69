import { WorkflowNotFoundError } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { alexaEventsPermitted, type VoiceDeviceRow } from '../../../db/queries/voice-devices';
import { voiceDeviceStatusQuery, type VoiceDeviceState } from '../../../workflows/voice-device-messages';

// The listing answers from the database alone rather than wait long for a busy worker.
const STATUS_QUERY_DEADLINE_MS = 3000;

const isoOrNull = { type: ['string', 'null'], format: 'date-time' } as const;

/** A device link as its user (and an operator) sees it: no token, no code, nothing secret. */
export const voiceDeviceSchema = {
  type: 'object',
  required: ['id', 'platform', 'status', 'clientId', 'linkedAt', 'unlinkedAt', 'unlinkReason', 'lastError', 'alexaEventsPermitted', 'workflow'],
  properties: {
    id: { type: 'string' },
    platform: { type: 'string', enum: ['alexa', 'google'] },
    status: { type: 'string', enum: ['linked', 'unlinking', 'unlinked'] },
    clientId: { type: 'string' },
    linkedAt: { type: 'string', format: 'date-time' },
    unlinkedAt: isoOrNull,
    unlinkReason: { type: ['string', 'null'] },
    lastError: {
      type: ['object', 'null'],
      required: ['kind', 'message'],
      properties: { kind: { type: 'string' }, message: { type: 'string' } },
    },
    // Alexa: whether the permission grant (AcceptGrant) gave us Login with Amazon tokens for the event gateway.
    alexaEventsPermitted: { type: 'boolean' },
    workflow: {
      type: 'object',
      required: ['id', 'running', 'status', 'linkExpiresAt', 'lwaAccessTokenExpiresAt', 'lwaRefreshDueAt', 'reportsSent'],
      properties: {
        id: { type: 'string' },
        running: { type: 'boolean' },
        status: { type: ['string', 'null'] },
        // When the link ends unless the platform uses it again.
        linkExpiresAt: isoOrNull,
        lwaAccessTokenExpiresAt: isoOrNull,
        lwaRefreshDueAt: isoOrNull,
        reportsSent: { type: ['integer', 'null'] },
      },
    },
  },
} as const;

export interface VoiceDeviceView {
  id: string;
  platform: VoiceDeviceRow['platform'];
  status: VoiceDeviceRow['status'];
  clientId: string;
  linkedAt: string;
  unlinkedAt: string | null;
  unlinkReason: string | null;
  lastError: { kind: string; message: string } | null;
  alexaEventsPermitted: boolean;
  workflow: {
    id: string;
    running: boolean;
    status: string | null;
    linkExpiresAt: string | null;
    lwaAccessTokenExpiresAt: string | null;
    lwaRefreshDueAt: string | null;
    reportsSent: number | null;
  };
}

/** The device row with its workflow's own view (queried while the device is not unlinked). */
export async function describeVoiceDevice(app: FastifyInstance, device: VoiceDeviceRow): Promise<VoiceDeviceView> {
  const state = device.status === 'unlinked' ? null : await workflowState(app, device);
  return {
    id: device.id,
    platform: device.platform,
    status: device.status,
    clientId: device.clientId,
    linkedAt: new Date(device.createdAt).toISOString(),
    unlinkedAt: iso(device.unlinkedAt),
    unlinkReason: device.unlinkReason,
    lastError: device.lastErrorKind ? { kind: device.lastErrorKind, message: device.lastErrorMessage ?? '' } : null,
    alexaEventsPermitted: alexaEventsPermitted(device),
    workflow: {
      id: device.workflowId,
      running: state !== null,
      status: state?.status ?? null,
      linkExpiresAt: iso(state?.linkExpiresAt ?? null),
      lwaAccessTokenExpiresAt: iso(state?.lwa?.accessTokenExpiresAt ?? null),
      lwaRefreshDueAt: iso(state?.lwa?.refreshDueAt ?? null),
      reportsSent: state?.reportsSent ?? null,
    },
  };
}

/** The workflow's state; null when it has ended or Temporal cannot answer in time. */
async function workflowState(app: FastifyInstance, device: VoiceDeviceRow): Promise<VoiceDeviceState | null> {
  const { temporal } = app.services;
  try {
    return await temporal.withDeadline(Date.now() + STATUS_QUERY_DEADLINE_MS, () => temporal.workflow.getHandle(device.workflowId).query(voiceDeviceStatusQuery));
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) app.log.warn({ workflowId: device.workflowId, err: error }, 'voice device workflow did not answer its status query');
    return null;
  }
}

function iso(epochMs: number | null): string | null {
  return epochMs === null ? null : new Date(epochMs).toISOString();
}
