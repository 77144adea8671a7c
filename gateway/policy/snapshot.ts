/**
 * The in-memory policy snapshot: keys (by hash), accounts, providers and
 * models, loaded at start and kept current by NOTIFY from the policy-table
 * triggers, with a periodic full resync as a safety net. The hot path reads
 * only these maps; it never waits on the database.
 */
import type { Kysely } from "kysely";
import {
  type Database,
  openCredential,
  POLICY_CHANNEL,
  type PolicyChange,
  type Prices,
  type ProviderKind,
  type RouteStrategy,
  type ServerKeys,
} from "../../schema/mod.ts";
import type { Db } from "../../schema/db.ts";
import { openEnvelope, providerKeyAad } from "../../schema/envelope.ts";
import { type IpRange, parseIpRange } from "../../schema/ip_ranges.ts";

export interface KeyPolicy {
  id: string;
  accountId: string;
  name: string;
  scopes: readonly string[];
  revoked: boolean;
  expiresAt: number | null;
  /** null: every model; otherwise the model and alias names this key may call. */
  allowedModels: ReadonlySet<string> | null;
  /** Lifetime spend limit in units of 1e-8 USD (enforced by billing); null: none. */
  spendLimit: bigint | null;
  /** null: any client address; otherwise the ranges a request may come from. */
  allowedIps: readonly IpRange[] | null;
  /** Requests and tokens per minute (auth/rate_limiter.ts); null: not limited. */
  rpmLimit: number | null;
  tpmLimit: number | null;
  /**
   * The hash of the secret the latest rotation replaced (also a key of the
   * snapshot's key map) and when it stops working, in ms since the epoch:
   * authentication compares that with its clock, so no write ends the grace.
   */
  previousKeyHash: string | null;
  previousExpiresAt: number | null;
}

export interface AccountPolicy {
  id: string;
  active: boolean;
}

export interface ProviderPolicy {
  id: string;
  name: string;
  kind: ProviderKind;
  baseUrl: string | null;
  credential: string | null;
  /** The openai_compat vendor preset, or null. */
  preset: string | null;
  /** Set on a copy whose credential is a customer's own key (BYOK: billing/byok.ts). */
  byok?: true;
}

/** An account's own key for a provider (BYOK). */
export interface CustomerKeyPolicy {
  id: string;
  accountId: string;
  providerId: string;
  /**
   * The key in clear: opened on first use and kept in memory, so a key never
   * used is never decrypted; null when it does not open (logged once).
   */
  secret(): string | null;
}

export interface ModelPolicy {
  id: string;
  name: string;
  providerId: string;
  upstreamName: string;
  prices: Prices;
  maxOutputTokens: number | null;
  createdAt: number;
}

export interface RoutePolicy {
  id: string;
  name: string;
  strategy: RouteStrategy;
  /** Target model names, in order. */
  targets: readonly string[];
  timeoutMs: number | null;
  createdAt: number;
}

export interface Policy {
  key(hash: string): KeyPolicy | undefined;
  account(id: string): AccountPolicy | undefined;
  model(name: string): ModelPolicy | undefined;
  /** An active alias by name. */
  route(name: string): RoutePolicy | undefined;
  routes(): Iterable<RoutePolicy>;
  provider(id: string): ProviderPolicy | undefined;
  models(): Iterable<ModelPolicy>;
  /**
   * The account's own provider keys (BYOK) by provider id; undefined when it
   * has none. (Optional so that a fake policy without BYOK need not say so.)
   */
  customerKeys?(accountId: string): ReadonlyMap<string, CustomerKeyPolicy> | undefined;
  /** Reloads everything from the database. */
  resync(): Promise<void>;
  close(): Promise<void>;
}

export interface PolicyDeps {
  db: Db;
  keys: ServerKeys;
  resyncMs: number;
  log?: (message: string, error?: unknown) => void;
  /** Called after each change has been applied (tests and metrics). */
  onApplied?: (change: PolicyChange | "resync") => void;
}

interface Maps {
  keysByHash: Map<string, KeyPolicy>;
  keyHashById: Map<string, string>;
  accounts: Map<string, AccountPolicy>;
  providers: Map<string, ProviderPolicy>;
  modelsByName: Map<string, ModelPolicy>;
  modelNameById: Map<string, string>;
  routesByName: Map<string, RoutePolicy>;
  routeNameById: Map<string, string>;
  /** Customer keys by account, then provider id; and each key's place by its id. */
  customerKeys: Map<string, Map<string, CustomerKeyPolicy>>;
  customerKeyById: Map<string, CustomerKeyPolicy>;
}

function emptyMaps(): Maps {
  return {
    keysByHash: new Map(),
    keyHashById: new Map(),
    accounts: new Map(),
    providers: new Map(),
    modelsByName: new Map(),
    modelNameById: new Map(),
    routesByName: new Map(),
    routeNameById: new Map(),
    customerKeys: new Map(),
    customerKeyById: new Map(),
  };
}

/** Loads the snapshot and subscribes to changes; resolves once it is warm. */
export async function createPolicy(deps: PolicyDeps): Promise<Policy> {
  const { db } = deps.db;
  const log = deps.log ?? ((message, error) => console.error(message, error ?? ""));
  let maps = emptyMaps();
  // Changes are applied one at a time, in arrival order, so a row reload can
  // never interleave with (and be overwritten by) an older full resync.
  let queue: Promise<void> = Promise.resolve();
  const enqueue = (work: () => Promise<void>) => {
    queue = queue.then(work).catch((error) => log("Policy refresh failed", error));
    return queue;
  };

  const resync = () =>
    enqueue(async () => {
      maps = await loadAll(db, deps.keys, log);
      deps.onApplied?.("resync");
    });

  await resync();
  const unlisten = await deps.db.listen(
    POLICY_CHANNEL,
    (payload) => {
      const change = parseChange(payload);
      if (!change) return void log(`Ignoring malformed policy notification ${payload}`);
      enqueue(async () => {
        await applyChange(db, deps.keys, maps, change, log);
        deps.onApplied?.(change);
      });
    },
    // A (re)connected listener may have missed notifications: resync.
    () => void resync(),
  );
  const timer = setInterval(() => void resync(), deps.resyncMs);
  Deno.unrefTimer(timer);

  return {
    key: (hash) => maps.keysByHash.get(hash),
    account: (id) => maps.accounts.get(id),
    model: (name) => maps.modelsByName.get(name),
    provider: (id) => maps.providers.get(id),
    models: () => maps.modelsByName.values(),
    route: (name) => maps.routesByName.get(name),
    routes: () => maps.routesByName.values(),
    customerKeys: (accountId) => maps.customerKeys.get(accountId),
    resync,
    async close() {
      clearInterval(timer);
      await unlisten();
      await queue;
    },
  };
}

function parseChange(payload: string): PolicyChange | undefined {
  try {
    const change = JSON.parse(payload) as PolicyChange;
    return typeof change.table === "string" && typeof change.id === "string" ? change : undefined;
  } catch {
    return undefined;
  }
}

async function loadAll(
  db: Kysely<Database>,
  keys: ServerKeys,
  log: NonNullable<PolicyDeps["log"]>,
): Promise<Maps> {
  const [keyRows, accountRows, providerRows, modelRows, routeRows, customerKeyRows] = await Promise
    .all([
      db.selectFrom("api_keys").selectAll().execute(),
      db.selectFrom("accounts").select(["id", "status"]).execute(),
      db.selectFrom("providers").selectAll().execute(),
      db.selectFrom("models").selectAll().execute(),
      db.selectFrom("routes").selectAll().execute(),
      db.selectFrom("customer_provider_keys").select(CUSTOMER_KEY_COLUMNS).execute(),
    ]);
  const maps = emptyMaps();
  for (const row of keyRows) putKey(maps, row);
  for (const row of accountRows) maps.accounts.set(row.id, toAccount(row));
  for (const row of providerRows) maps.providers.set(row.id, toProvider(row, keys, log));
  for (const row of modelRows) putModel(maps, row);
  for (const row of routeRows) putRoute(maps, row);
  for (const row of customerKeyRows) putCustomerKey(maps, row, keys, log);
  return maps;
}

async function applyChange(
  db: Kysely<Database>,
  keys: ServerKeys,
  maps: Maps,
  change: PolicyChange,
  log: NonNullable<PolicyDeps["log"]>,
): Promise<void> {
  switch (change.table) {
    case "api_keys": {
      const row = await db.selectFrom("api_keys").selectAll().where("id", "=", change.id)
        .executeTakeFirst();
      const oldHash = maps.keyHashById.get(change.id);
      if (oldHash) {
        const previous = maps.keysByHash.get(oldHash)?.previousKeyHash;
        if (previous) maps.keysByHash.delete(previous);
        maps.keysByHash.delete(oldHash);
      }
      maps.keyHashById.delete(change.id);
      if (row) putKey(maps, row);
      return;
    }
    case "accounts": {
      const row = await db.selectFrom("accounts").select(["id", "status"])
        .where("id", "=", change.id).executeTakeFirst();
      if (row) maps.accounts.set(row.id, toAccount(row));
      else maps.accounts.delete(change.id);
      return;
    }
    case "providers": {
      const row = await db.selectFrom("providers").selectAll().where("id", "=", change.id)
        .executeTakeFirst();
      if (row) maps.providers.set(row.id, toProvider(row, keys, log));
      else maps.providers.delete(change.id);
      return;
    }
    case "models": {
      const row = await db.selectFrom("models").selectAll().where("id", "=", change.id)
        .executeTakeFirst();
      const oldName = maps.modelNameById.get(change.id);
      if (oldName) maps.modelsByName.delete(oldName);
      maps.modelNameById.delete(change.id);
      if (row) putModel(maps, row);
      return;
    }
    case "routes": {
      const row = await db.selectFrom("routes").selectAll().where("id", "=", change.id)
        .executeTakeFirst();
      const oldName = maps.routeNameById.get(change.id);
      if (oldName) maps.routesByName.delete(oldName);
      maps.routeNameById.delete(change.id);
      if (row) putRoute(maps, row);
      return;
    }
    case "customer_provider_keys": {
      const row = await db.selectFrom("customer_provider_keys").select(CUSTOMER_KEY_COLUMNS)
        .where("id", "=", change.id).executeTakeFirst();
      const old = maps.customerKeyById.get(change.id);
      if (old) {
        maps.customerKeyById.delete(old.id);
        const byProvider = maps.customerKeys.get(old.accountId);
        byProvider?.delete(old.providerId);
        if (byProvider?.size === 0) maps.customerKeys.delete(old.accountId);
      }
      if (row) putCustomerKey(maps, row, keys, log);
      return;
    }
  }
}

type Row<T extends keyof Database> = import("kysely").Selectable<Database[T]>;

function putKey(maps: Maps, row: Row<"api_keys">): void {
  const key: KeyPolicy = {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    scopes: row.scopes,
    revoked: row.status !== "active",
    expiresAt: row.expires_at ? row.expires_at.getTime() : null,
    allowedModels: row.allowed_models ? new Set(row.allowed_models) : null,
    spendLimit: row.spend_limit,
    allowedIps: row.allowed_ips ? toRanges(row.allowed_ips) : null,
    rpmLimit: row.rpm_limit,
    tpmLimit: row.tpm_limit,
    previousKeyHash: row.previous_key_hash,
    previousExpiresAt: row.previous_expires_at ? row.previous_expires_at.getTime() : null,
  };
  maps.keysByHash.set(row.key_hash, key);
  // The previous secret stays in the map after its grace (until a rotation
  // replaces it); authentication refuses it by its end.
  if (row.previous_key_hash) maps.keysByHash.set(row.previous_key_hash, key);
  maps.keyHashById.set(row.id, row.key_hash);
}

/** A stored IP allowlist as ranges; the control plane stored only valid ones. */
function toRanges(texts: readonly string[]): IpRange[] {
  const ranges: IpRange[] = [];
  for (const text of texts) {
    const range = parseIpRange(text);
    if (typeof range !== "string") ranges.push(range);
  }
  return ranges;
}

function toAccount(row: { id: string; status: string }): AccountPolicy {
  return { id: row.id, active: row.status === "active" };
}

function toProvider(
  row: Row<"providers">,
  keys: ServerKeys,
  log: NonNullable<PolicyDeps["log"]>,
): ProviderPolicy {
  let credential: string | null = null;
  if (row.credential_ciphertext) {
    try {
      credential = openCredential(
        row.credential_ciphertext,
        keys.credentials,
        `provider:${row.id}`,
      );
    } catch (error) {
      // A credential that won't open (wrong server secret, tampering) leaves the
      // provider without one: its upstream answers 401, and we say why here.
      log(`Cannot open the credential of provider "${row.name}"`, error);
    }
  }
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    baseUrl: row.base_url,
    credential,
    preset: row.preset,
  };
}

function putModel(maps: Maps, row: Row<"models">): void {
  if (row.status !== "active") return;
  maps.modelsByName.set(row.name, {
    id: row.id,
    name: row.name,
    providerId: row.provider_id,
    upstreamName: row.upstream_name,
    prices: {
      input: row.input_price,
      output: row.output_price,
      cachedInput: row.cached_input_price,
    },
    maxOutputTokens: row.max_output_tokens,
    createdAt: row.created_at.getTime(),
  });
  maps.modelNameById.set(row.id, row.name);
}

function putRoute(maps: Maps, row: Row<"routes">): void {
  if (row.status !== "active") return;
  maps.routesByName.set(row.name, {
    id: row.id,
    name: row.name,
    strategy: row.strategy,
    targets: row.targets,
    timeoutMs: row.timeout_ms,
    createdAt: row.created_at.getTime(),
  });
  maps.routeNameById.set(row.id, row.name);
}

const CUSTOMER_KEY_COLUMNS = ["id", "account_id", "provider_id", "ciphertext"] as const;

function putCustomerKey(
  maps: Maps,
  row: Pick<Row<"customer_provider_keys">, (typeof CUSTOMER_KEY_COLUMNS)[number]>,
  keys: ServerKeys,
  log: NonNullable<PolicyDeps["log"]>,
): void {
  let opened: string | null | undefined;
  const key: CustomerKeyPolicy = {
    id: row.id,
    accountId: row.account_id,
    providerId: row.provider_id,
    secret() {
      if (opened !== undefined) return opened;
      try {
        opened = openEnvelope(
          row.ciphertext,
          keys.keyring,
          providerKeyAad(row.account_id, row.provider_id),
        );
      } catch (error) {
        // A key that won't open (its KEK is not configured here, tampering):
        // its requests are refused (billing/byok.ts), never billed as Standard.
        opened = null;
        log(`Cannot open the provider key ${row.id} of account ${row.account_id}`, error);
      }
      return opened;
    },
  };
  let byProvider = maps.customerKeys.get(row.account_id);
  if (!byProvider) maps.customerKeys.set(row.account_id, byProvider = new Map());
  byProvider.set(row.provider_id, key);
  maps.customerKeyById.set(row.id, key);
}
