/**
 * The expected errors of signing in, returned as typed results: each says
 * what the caller can do, and none tells an unknown email from a wrong
 * password or a reused refresh token from an expired one.
 */

/** The email and password do not match a user (whichever of the two is wrong). */
export class InvalidCredentialsError extends Error {
  override readonly name = "InvalidCredentialsError";
  constructor(message = "The email or password is incorrect") {
    super(message);
  }
}

/** Too many failed sign-ins for this email from this address; retry later. */
export class TooManyAttemptsError extends Error {
  override readonly name = "TooManyAttemptsError";
  constructor(readonly retryAfterSeconds: number) {
    super(`Too many failed sign-ins; try again in ${retryAfterSeconds} seconds`);
  }
}

/** The refresh token is unknown, expired, used before, or its session was signed out. */
export class InvalidRefreshTokenError extends Error {
  override readonly name = "InvalidRefreshTokenError";
  constructor() {
    super("The refresh token is invalid, expired or revoked: sign in again");
  }
}
