/** The workflow bundle's entry: every workflow type the worker runs. */
export { connectionWorkflow } from './connection';
export { housekeepingWorkflow } from './housekeeping';
export { voiceDeviceWorkflow } from './voice-device';
export { ssoSessionWorkflow } from './sso-session';
