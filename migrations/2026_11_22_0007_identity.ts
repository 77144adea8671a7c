// Frozen in time: imports no app code. Identity for the control plane:
// console users sign in with a password (users.password_hash, a scrypt PHC
// string) or through a trusted OIDC issuer (users.oidc_issuer + oidc_subject,
// the only thing such a user is matched by). A sign-in opens a session; the
// session's refresh tokens are kept only as keyed hashes, each used once:
// presenting a used one again revokes the whole session (reuse detection).
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  const now = sql`now()`;

  await db.schema
    .alterTable("users")
    // An OIDC user whose verified email another user already has gets none:
    // identities are never linked by email (that is how accounts get taken over).
    .alterColumn("email", (c) => c.dropNotNull())
    .addColumn("oidc_issuer", "text")
    .addColumn("oidc_subject", "text")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();
  await db.schema
    .alterTable("users")
    .addCheckConstraint(
      "users_oidc_pair_check",
      sql`(oidc_issuer is null) = (oidc_subject is null)`,
    )
    .execute();
  await db.schema
    .alterTable("users")
    .addCheckConstraint("users_identity_check", sql`email is not null or oidc_subject is not null`)
    .execute();
  // Emails are stored trimmed and lower-cased, so the unique constraint means what it says.
  await db.schema
    .alterTable("users")
    .addCheckConstraint("users_email_normalized_check", sql`email = lower(btrim(email))`)
    .execute();
  await db.schema
    .alterTable("users")
    .addUniqueConstraint("users_oidc_identity_key", ["oidc_issuer", "oidc_subject"])
    .execute();

  // Every authenticated console request reads the user's memberships.
  await db.schema.createIndex("memberships_user_idx").on("memberships").column("user_id")
    .execute();

  await db.schema
    .createTable("sessions")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("user_id", "uuid", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    // The absolute end of the session, however often it is refreshed.
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("last_refreshed_at", "timestamptz")
    .addColumn("revoked_at", "timestamptz")
    .addColumn(
      "revoked_reason",
      "text",
      (c) => c.check(sql`revoked_reason in ('sign_out', 'reuse', 'password_change')`),
    )
    // The address it was opened from, for the user's own review.
    .addColumn("ip", "text")
    .execute();
  await db.schema
    .alterTable("sessions")
    .addCheckConstraint(
      "sessions_revoked_pair_check",
      sql`(revoked_at is null) = (revoked_reason is null)`,
    )
    .execute();
  await db.schema.createIndex("sessions_user_idx").on("sessions").column("user_id").execute();

  await db.schema
    .createTable("refresh_tokens")
    // HMAC-SHA-256 of the token under the server's hashing key, hex.
    .addColumn("token_hash", "text", (c) => c.primaryKey())
    .addColumn(
      "session_id",
      "uuid",
      (c) => c.notNull().references("sessions.id").onDelete("cascade"),
    )
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    // Set when the token is exchanged for the next one; a second use is reuse.
    .addColumn("used_at", "timestamptz")
    .execute();
  await db.schema.createIndex("refresh_tokens_session_idx").on("refresh_tokens")
    .column("session_id").execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("refresh_tokens").ifExists().execute();
  await db.schema.dropTable("sessions").ifExists().execute();
  await db.schema.dropIndex("memberships_user_idx").ifExists().execute();
  await db.schema.alterTable("users").dropConstraint("users_oidc_identity_key").execute();
  await db.schema.alterTable("users").dropConstraint("users_email_normalized_check").execute();
  await db.schema.alterTable("users").dropConstraint("users_identity_check").execute();
  await db.schema.alterTable("users").dropConstraint("users_oidc_pair_check").execute();
  // Users without an email (OIDC-provisioned) cannot survive the NOT NULL.
  await sql`delete from users where email is null`.execute(db);
  await db.schema
    .alterTable("users")
    .dropColumn("updated_at")
    .dropColumn("oidc_subject")
    .dropColumn("oidc_issuer")
    .alterColumn("email", (c) => c.setNotNull())
    .execute();
}
