import { createAuthorizationActivities } from './connection-authorization';
import { createDisconnectActivities } from './connection-disconnect';
import { createUnkeptTokenActivities } from './unkept-tokens';
import { createRefreshActivities } from './connection-refresh';
import { createHousekeepingActivities } from './housekeeping';
import { createProviderActivities } from './connection-provider';
import { createMachineAccountActivities } from './machine-account';
import { createVoiceCredentialActivities } from './voice-device-credentials';
import { createVoiceLinkActivities } from './voice-device-link';
import { createVoiceReportActivities } from './voice-device-reports';
import { createSsoSessionPairActivities } from './sso-session-pair';
import { createSsoSessionLogoutActivities } from './sso-session-logout';
import type { ActivityDependencies } from './dependencies';

export type { ActivityDependencies, TokenState } from './dependencies';

/** Every activity the worker registers, built from injected dependencies (Temporal's sample style). */
export function createActivities(dependencies: ActivityDependencies) {
  return {
    ...createAuthorizationActivities(dependencies),
    ...createRefreshActivities(dependencies),
    ...createDisconnectActivities(dependencies),
    ...createUnkeptTokenActivities(dependencies),
    ...createMachineAccountActivities(dependencies),
    ...createProviderActivities(dependencies),
    ...createHousekeepingActivities(dependencies),
    ...createVoiceCredentialActivities(dependencies),
    ...createVoiceLinkActivities(dependencies),
    ...createVoiceReportActivities(dependencies),
    ...createSsoSessionPairActivities(dependencies),
    ...createSsoSessionLogoutActivities(dependencies),
  };
}

export type Activities = ReturnType<typeof createActivities>;
