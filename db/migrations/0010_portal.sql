-- The Reality Portal's side of single sign-on (reality-server).

-- When the SSO session workflow of an SSO portal session was started. Null until a start succeeded: a
-- sign-in answers without waiting for Temporal, and a later request of the session tries again.
ALTER TABLE portal_sessions ADD COLUMN workflow_started_at timestamptz;

-- Failed password logins of portal-only accounts, by email, apart from the PM users' (user_login_failures):
-- a portal-only account and a PM user may share an email, and one must not lock the other out.
CREATE TABLE portal_login_failures (
  email         citext PRIMARY KEY,
  failures      integer NOT NULL DEFAULT 0,
  last_failure  timestamptz NOT NULL DEFAULT now(),
  locked_until  timestamptz
);
