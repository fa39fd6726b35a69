import { WorkflowNotFoundError, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError } from '@temporalio/client';
import { connectionWorkflowInput } from '../../api/plugins/connection-workflow';
import { findConnection, type ConnectionRow } from '../../db/queries/connections';
import { operatorName } from '../rotate-signing-key';
import type { connectionWorkflow } from '../../workflows/connection';
import { disconnectSignal, refreshNowUpdate, syncRequestSignal, type DisconnectSignal } from '../../workflows/connection-messages';
import { CommandFailed, stringOption, UsageError, uuidArgument, type AdminCommand, type OptionValues } from './command';
import type { AdminContext } from './context';
import { printJson } from './table';

/**
 * Commands that act on one connection. Each only asks the connection's workflow (design invariant 2:
 * the workflow is the one writer of its tokens); none touches a token itself.
 */

// The refresh is retried by the workflow for as long as the provider fails; the operator is not kept waiting that long.
const REFRESH_ANSWER_DEADLINE_MS = 2 * 60 * 1000;

/** Who asks, for the audit row: --operator, else `cli:<login name>` (the $USER), like `npm run rotate-signing-key`. */
export function operatorId(values: OptionValues): string {
  const given = stringOption(values, 'operator');
  if (given === undefined) return operatorName();
  if (!/^[\w.@:+-]{1,100}$/.test(given)) throw new UsageError(`--operator: "${given}" must be 1-100 letters, digits or . _ @ : + -`);
  return given;
}

/** Arguments are checked before anything is opened, so bad usage never waits on a database. */
function connectionIdOf(positionals: string[]): string {
  return uuidArgument(positionals[0]!, '<connectionId>');
}

async function connectionOf(context: AdminContext, connectionId: string): Promise<ConnectionRow> {
  const connection = await findConnection(await context.db(), connectionId);
  if (!connection) throw new CommandFailed(`no connection ${connectionId}`);
  return connection;
}

function notRunning(connection: ConnectionRow): CommandFailed {
  return new CommandFailed(`the workflow ${connection.workflowId} is not running (the connection is ${connection.status})`);
}

export const refreshCommand: AdminCommand = {
  name: 'refresh',
  synopsis: '<connectionId> [--json]',
  summary: 'refresh the access token now, through the owning workflow, and print the new expiry',
  options: { json: { type: 'boolean' } },
  positionals: ['connectionId'],
  async run({ values, positionals }, context) {
    const connection = await connectionOf(context, connectionIdOf(positionals));
    const client = await context.temporalClient();
    let answer;
    try {
      answer = await client.withDeadline(Date.now() + REFRESH_ANSWER_DEADLINE_MS, () =>
        client.workflow.getHandle<typeof connectionWorkflow>(connection.workflowId).executeUpdate(refreshNowUpdate),
      );
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) throw notRunning(connection);
      if (error instanceof WorkflowUpdateFailedError) throw new CommandFailed(`the workflow refused the refresh: ${error.cause?.message ?? error.message}`);
      if (error instanceof WorkflowUpdateRPCTimeoutOrCancelledError) {
        throw new CommandFailed(`no answer within ${REFRESH_ANSWER_DEADLINE_MS / 1000} s; the workflow keeps trying (see \`connections\` for its last error)`);
      }
      throw error;
    }
    const result = { connectionId: connection.id, workflowId: connection.workflowId, tokenVersion: answer.tokenVersion, accessTokenExpiresAt: new Date(answer.accessTokenExpiresAt).toISOString() };
    if (values.json) printJson(result);
    else console.log(`refreshed ${connection.id}: token version ${result.tokenVersion}, access token valid until ${result.accessTokenExpiresAt}`);
    return 0;
  },
};

export const syncCommand: AdminCommand = {
  name: 'sync',
  synopsis: '<connectionId> [--full] [--operator NAME] [--json]',
  summary: "ask the connection's workflow for a sync now (--full: drop what is stored and read everything again)",
  options: { full: { type: 'boolean' }, operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['connectionId'],
  async run({ values, positionals }, context) {
    const connectionId = connectionIdOf(positionals);
    const request = { reason: `operator:${operatorId(values)}`, full: values.full === true };
    const connection = await connectionOf(context, connectionId);
    const client = await context.temporalClient();
    try {
      await client.workflow.getHandle(connection.workflowId).signal(syncRequestSignal, request);
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) throw notRunning(connection);
      throw error;
    }
    if (values.json) printJson({ connectionId: connection.id, workflowId: connection.workflowId, ...request });
    else console.log(`${request.full ? 'full' : 'incremental'} sync requested from ${connection.workflowId}; it runs after any sync in progress`);
    return 0;
  },
};

export const disconnectCommand: AdminCommand = {
  name: 'disconnect',
  synopsis: '<connectionId> [--operator NAME] [--json]',
  summary: 'disconnect through the workflow: stop webhooks, revoke upstream, wipe the tokens, audit (actor: operator)',
  options: { operator: { type: 'string' }, json: { type: 'boolean' } },
  positionals: ['connectionId'],
  async run({ values, positionals }, context) {
    const connectionId = connectionIdOf(positionals);
    const requestedBy: DisconnectSignal['requestedBy'] = { type: 'operator', id: operatorId(values) };
    const connection = await connectionOf(context, connectionId);
    if (connection.status === 'disconnected' || connection.status === 'failed') throw new CommandFailed(`connection ${connection.id} is already ${connection.status}`);
    const client = await context.temporalClient();
    const { taskQueue } = context.config().temporal;
    // With start, like the API: a connection whose workflow is gone still gets a proper disconnect.
    const handle = await client.workflow.signalWithStart<typeof connectionWorkflow, [DisconnectSignal]>('connectionWorkflow', {
      workflowId: connection.workflowId,
      taskQueue,
      args: [connectionWorkflowInput(context.config(), connection)],
      signal: disconnectSignal,
      signalArgs: [{ requestedBy }],
    });
    const result = { connectionId: connection.id, workflowId: connection.workflowId, runId: handle.signaledRunId, requestedBy };
    if (values.json) printJson(result);
    else console.log(`disconnect requested from ${connection.workflowId} by operator ${requestedBy.id}; follow it with: npm run admin -- connections --user ${connection.userId}`);
    return 0;
  },
};
