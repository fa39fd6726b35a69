/** The one JSON error shape of the API: `{ error: <machine code>, message: <for a person> }`. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const errorResponseSchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: { error: { type: 'string' }, message: { type: 'string' } },
} as const;

/** A request Fastify refused before the handler (schema validation, body limit, rate limit): the client's fault, not ours. */
export function isClientError(error: unknown): error is Error & { statusCode?: number } {
  const status = (error as { statusCode?: number }).statusCode;
  return Boolean((error as { validation?: unknown }).validation) || (status !== undefined && status >= 400 && status < 500);
}
