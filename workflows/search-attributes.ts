import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * The custom search attributes operators filter on in Temporal Web, for example
 * `Provider = "microsoft-calendar" AND ConnectionStatus = "needs_reauth"` or
 * `NextRefreshAt < "2026-11-24T12:00:00Z"`. A cluster must have them registered before a workflow sets
 * them: development and tests do it at start, a real cluster with `npm run admin -- register-search-attributes`.
 */
export const PROVIDER = defineSearchAttributeKey('Provider', SearchAttributeType.KEYWORD);
export const USER_ID = defineSearchAttributeKey('UserId', SearchAttributeType.KEYWORD);
export const CONNECTION_STATUS = defineSearchAttributeKey('ConnectionStatus', SearchAttributeType.KEYWORD);
export const NEXT_REFRESH_AT = defineSearchAttributeKey('NextRefreshAt', SearchAttributeType.DATETIME);
export const LAST_ERROR_KIND = defineSearchAttributeKey('LastErrorKind', SearchAttributeType.KEYWORD);

export const CUSTOM_SEARCH_ATTRIBUTES = [PROVIDER, USER_ID, CONNECTION_STATUS, NEXT_REFRESH_AT, LAST_ERROR_KIND] as const;
