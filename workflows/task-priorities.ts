import type { Priority } from '@temporalio/common';

/**
 * Temporal dispatches a backlogged task queue in priority order (1 first; 3 when unset), so under load a
 * user who is waiting goes first, then what the user sees next, then token upkeep, and work that can
 * wait a turn last. The voice-device and SSO-session workflows share the queue at the default.
 */
/** A user waits on it, and what it presents expires within minutes: a code exchange, a grant exchange. */
export const USER_WAITING: Priority = { priorityKey: 1 };
/** What the user sees right after: the setup after an authorization, a disconnect. */
export const USER_VISIBLE: Priority = { priorityKey: 2 };
/** Syncs on schedule, subscription renewals, revocations of tokens a connection does not keep. */
export const BACKGROUND: Priority = { priorityKey: 4 };
