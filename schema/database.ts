/**
 * The Kysely `Database` interface: one `XTable` type per table, shared by
 * both planes. Money columns are bigint microcents (see money.ts); every
 * int8 column comes back as `bigint` from both drivers (see db.ts).
 */
import type {
  ColumnType,
  Generated,
  Insertable,
  JSONColumnType,
  Selectable,
  Updateable,
} from "kysely";

/** A timestamptz: read as Date, written as Date or ISO string. */
export type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A timestamptz the database fills in on insert. */
export type CreatedAt = ColumnType<Date, Date | string | undefined, Date | string>;
/** An int8 column: always bigint when read, bigint or number when written. */
export type Int8 = ColumnType<bigint, bigint | number, bigint | number>;

export type AccountStatus = "active" | "suspended";
export type ApiKeyStatus = "active" | "revoked";
export type ProviderKind = "openai_compat" | "anthropic" | "mock";
export type ModelStatus = "active" | "disabled";
export type MemberRole = "owner" | "admin" | "member" | "viewer";
export type RouteStrategy = "fallback" | "cheapest";
export type RouteStatus = "active" | "disabled";
export type BillingMode = "standard" | "byok";

export interface AccountsTable {
  id: Generated<string>;
  name: string;
  status: ColumnType<AccountStatus, AccountStatus | undefined, AccountStatus>;
  /** Cached balance in microcents, kept in the same transaction as the ledger. */
  balance: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  /** Microcents leased to gateway replicas: the sum of the account's allowances. */
  reserved: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export interface UsersTable {
  id: Generated<string>;
  /** Trimmed and lower-cased; null only for an OIDC user whose email another user has. */
  email: string | null;
  name: string | null;
  /** A scrypt PHC string (control/credentials/passwords.ts); null: no password sign-in. */
  password_hash: string | null;
  /** The trusted OIDC issuer and subject this user is matched by; both or neither. */
  oidc_issuer: ColumnType<string | null, string | null | undefined, string | null>;
  oidc_subject: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export type SessionRevokedReason = "sign_out" | "reuse" | "password_change";

/** A console sign-in: a family of refresh tokens, revoked as a whole. */
export interface SessionsTable {
  id: Generated<string>;
  user_id: string;
  created_at: CreatedAt;
  /** The absolute end of the session, however often it is refreshed. */
  expires_at: Timestamp;
  last_refreshed_at: Timestamp | null;
  revoked_at: Timestamp | null;
  revoked_reason: SessionRevokedReason | null;
  ip: string | null;
}

/** A refresh token of a session, kept only as its keyed hash; each is used once. */
export interface RefreshTokensTable {
  /** HMAC-SHA-256 of the token under the server's hashing key, hex. */
  token_hash: string;
  session_id: string;
  created_at: CreatedAt;
  expires_at: Timestamp;
  /** When it was exchanged for the next one; presenting it again revokes the session. */
  used_at: Timestamp | null;
}

export interface MembershipsTable {
  account_id: string;
  user_id: string;
  role: MemberRole;
  created_at: CreatedAt;
}

export interface ApiKeysTable {
  id: Generated<string>;
  account_id: string;
  name: string;
  /** HMAC-SHA-256 of the secret under the server secret, hex. */
  key_hash: string;
  /** The first characters of the secret, for display ("tg_AbCd1234"). */
  prefix: string;
  last4: string;
  scopes: ColumnType<string[], string[] | undefined, string[]>;
  status: ColumnType<ApiKeyStatus, ApiKeyStatus | undefined, ApiKeyStatus>;
  expires_at: Timestamp | null;
  created_at: CreatedAt;
  last_used_at: Timestamp | null;
  revoked_at: Timestamp | null;
  /** null: every model; otherwise the model and alias names this key may call. */
  allowed_models: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
  /** What the key's requests were charged, in microcents (lifetime, settled charges). */
  spent: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  /** Microcents leased to replicas against spend_limit: the sum of its key_limit leases. */
  reserved: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  /** Lifetime spend limit in units of 1e-8 USD (money.ts); null: no limit. */
  spend_limit: Int8 | null;
  /** null: any address; otherwise canonical IPv4/IPv6 addresses and CIDR ranges. */
  allowed_ips: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
  /** Requests per minute, enforced per gateway replica; null: no limit. */
  rpm_limit: ColumnType<number | null, number | null | undefined, number | null>;
  /** Tokens per minute, enforced per gateway replica; null: no limit. */
  tpm_limit: ColumnType<number | null, number | null | undefined, number | null>;
  /** The secret the latest rotation replaced, accepted until previous_expires_at. */
  previous_key_hash: ColumnType<string | null, string | null | undefined, string | null>;
  previous_expires_at: Timestamp | null;
  rotated_at: Timestamp | null;
  updated_at: CreatedAt;
}

export interface ProvidersTable {
  id: Generated<string>;
  name: string;
  kind: ProviderKind;
  base_url: string | null;
  /** Sealed provider credential (see crypto.ts); never returned by any API. */
  credential_ciphertext: string | null;
  credential_last4: string | null;
  /** For openai_compat: the vendor preset (base URL, auth, quirks), or null for plain OpenAI-compatible. */
  preset: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

/** A model alias: one public name, an ordered list of target model names. */
export interface RoutesTable {
  id: Generated<string>;
  name: string;
  strategy: ColumnType<RouteStrategy, RouteStrategy | undefined, RouteStrategy>;
  targets: ColumnType<string[], string[], string[]>;
  /** Per-attempt upstream timeout; null uses the gateway's defaults. */
  timeout_ms: number | null;
  status: ColumnType<RouteStatus, RouteStatus | undefined, RouteStatus>;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

/** A customer's own provider key (BYOK): one per account and provider. */
export interface CustomerProviderKeysTable {
  id: Generated<string>;
  account_id: string;
  provider_id: string;
  /** Envelope-sealed (envelope.ts) with AAD "byok:<account_id>:<provider_id>"; never returned. */
  ciphertext: string;
  /** The KEK the envelope's data key is wrapped under. */
  kek_id: string;
  last4: string;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export interface ModelsTable {
  id: Generated<string>;
  /** The public name callers send as `model`. */
  name: string;
  provider_id: string;
  upstream_name: string;
  /** Prices in microcents per million tokens. */
  input_price: Int8;
  output_price: Int8;
  cached_input_price: Int8;
  max_output_tokens: number | null;
  status: ColumnType<ModelStatus, ModelStatus | undefined, ModelStatus>;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export interface LedgerEntriesTable {
  id: Generated<bigint>;
  /** Entries of one transaction share this id and sum to zero. */
  transaction_id: string;
  /** "customer:<account id>" or a system book such as "system:revenue". */
  book: string;
  account_id: string | null;
  kind: string;
  /** Signed microcents: positive credits the book, negative debits it. */
  amount: Int8;
  reference: string | null;
  memo: string | null;
  created_at: CreatedAt;
}

/** What a lease is leased from: a balance, a key's spend limit, or a month's free BYOK requests. */
export type AllowanceKind = "balance" | "key_limit" | "byok_free";

/** Part of a balance a gateway replica leased to reserve from in memory. */
export interface AllowancesTable {
  id: Generated<string>;
  account_id: string;
  kind: ColumnType<AllowanceKind, AllowanceKind | undefined, AllowanceKind>;
  /** The key of a key_limit lease. */
  api_key_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** The month (its first day, UTC) of a byok_free lease. */
  period: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  replica_id: string;
  amount: Int8;
  expires_at: Timestamp;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

/** An account's BYOK requests in one calendar month (UTC), and its free ones. */
export interface ByokMonthlyUsageTable {
  account_id: string;
  /** The month's first day. */
  month: ColumnType<Date, Date | string, Date | string>;
  /** BYOK requests counted (answered, cut or interrupted; failures are not). */
  requests: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  /** Of those, the ones without a routing fee. */
  free_requests: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  /** Free requests leased to replicas and not yet used. */
  reserved: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  updated_at: CreatedAt;
}

export interface UsageEventsTable {
  /** The request id; replaying an event is idempotent on it. */
  request_id: string;
  account_id: string;
  api_key_id: string;
  agent_name: string | null;
  agent_purpose: string | null;
  agent_owner: string | null;
  endpoint: string;
  /** The model the caller asked for. */
  model: string;
  provider_id: string | null;
  provider_name: string | null;
  upstream_model: string | null;
  status: number;
  error_code: string | null;
  stream: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  total_tokens: number;
  /** Microcents. */
  cost: Int8;
  /** Standard (prepaid, provider cost + fee) or BYOK (the customer's own provider key). */
  billing_mode: ColumnType<BillingMode, BillingMode | undefined, BillingMode>;
  /** The operator's fee charged on top of `cost`, in microcents. */
  fee: ColumnType<bigint, bigint | number | string | undefined, bigint | number | string>;
  /** True when usage was estimated (a cut stream), not reported upstream. */
  estimated: boolean;
  latency_ms: number;
  ttfb_ms: number | null;
  created_at: Timestamp;
  /** The ledger transaction that charged this request; null when it was not charged. */
  ledger_transaction_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface AgentsTable {
  id: Generated<string>;
  account_id: string;
  name: string;
  purpose: string | null;
  owner: string | null;
  first_seen_at: Timestamp;
  last_seen_at: Timestamp;
}

export interface AuditLogTable {
  id: Generated<bigint>;
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  /**
   * Written as JSON text. Cast it in SQL (`sql\`${text}::text::jsonb\``):
   * Postgres.js would otherwise encode the string again as a JSON string.
   */
  diff: JSONColumnType<Record<string, unknown>, string, string>;
  ip: string | null;
  request_id: string | null;
  prev_hash: string | null;
  hash: string;
  created_at: CreatedAt;
  /** The account the change concerns (its owners and admins may read it); null: gateway-wide. */
  account_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface AdminTokensTable {
  id: Generated<string>;
  token_hash: string;
  prefix: string;
  created_at: CreatedAt;
}

export interface Database {
  accounts: AccountsTable;
  users: UsersTable;
  memberships: MembershipsTable;
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
  api_keys: ApiKeysTable;
  providers: ProvidersTable;
  models: ModelsTable;
  routes: RoutesTable;
  ledger_entries: LedgerEntriesTable;
  allowances: AllowancesTable;
  byok_monthly_usage: ByokMonthlyUsageTable;
  usage_events: UsageEventsTable;
  audit_log: AuditLogTable;
  admin_tokens: AdminTokensTable;
  agents: AgentsTable;
  customer_provider_keys: CustomerProviderKeysTable;
}

export type Account = Selectable<AccountsTable>;
export type User = Selectable<UsersTable>;
export type Membership = Selectable<MembershipsTable>;
export type Session = Selectable<SessionsTable>;
export type ApiKey = Selectable<ApiKeysTable>;
export type NewApiKey = Insertable<ApiKeysTable>;
export type Provider = Selectable<ProvidersTable>;
export type Model = Selectable<ModelsTable>;
export type Route = Selectable<RoutesTable>;
export type ModelUpdate = Updateable<ModelsTable>;
export type UsageEvent = Selectable<UsageEventsTable>;
export type NewUsageEvent = Insertable<UsageEventsTable>;
export type AuditEntry = Selectable<AuditLogTable>;
export type CustomerProviderKey = Selectable<CustomerProviderKeysTable>;

/** The channel the policy-table triggers notify on. */
export const POLICY_CHANNEL = "tollgate_policy";

/** The payload of a policy notification. */
export interface PolicyChange {
  table: "accounts" | "api_keys" | "providers" | "models" | "routes" | "customer_provider_keys";
  op: "INSERT" | "UPDATE" | "DELETE";
  id: string;
}
