/**
 * JSON-schema building blocks shared by the routes. PostgreSQL refuses NUL in text, so every string
 * that may reach a query excludes it here, where the answer is a 400 rather than a 500.
 */
export function safeString(maxLength: number, extra: { minLength?: number } = {}) {
  return { type: 'string', maxLength, pattern: '^[^\\u0000]*$', ...extra } as const;
}

export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
export const UUID = new RegExp(UUID_PATTERN);
