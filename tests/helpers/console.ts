/**
 * Console credentials for tests: users with a role in an account and their
 * bearer tokens, accounts and API keys, all made through GraphQL the way an
 * operator would (with the stack's admin token).
 */
import type { GraphQLResult, Stack } from "./stack.ts";

export type Role = "owner" | "admin" | "member" | "viewer";

export interface ConsoleUser {
  userId: string;
  email: string;
  password: string;
  /** The access token: send it as the `token` argument of stack.graphql. */
  token: string;
  refreshToken: string;
}

export const DEFAULT_PASSWORD = "correct horse battery staple";

const SESSION_FIELDS = "accessToken refreshToken accessTokenExpiresAt refreshTokenExpiresAt " +
  "user { id email }";

export interface SessionResult {
  __typename: string;
  message?: string;
  accessToken?: string;
  refreshToken?: string;
  accessTokenExpiresAt?: string;
  refreshTokenExpiresAt?: string;
  retryAfterSeconds?: number;
  user?: { id: string; email: string };
}

/** The data of a response that must have succeeded, or a thrown error showing it. */
export function dataOf<T>(result: GraphQLResult<T>): T {
  if (result.status !== 200 || result.errors || !result.data) {
    throw new Error(`GraphQL call failed: ${JSON.stringify(result)}`);
  }
  return result.data;
}

/** The union result `field` of a mutation, which must be a `typename`. */
export function resultOf<T>(
  result: GraphQLResult<Record<string, unknown>>,
  field: string,
  typename: string,
): T {
  const got = dataOf(result)[field] as { __typename?: string } | undefined;
  if (got?.__typename !== typename) {
    throw new Error(`${field} did not return a ${typename}: ${JSON.stringify(result)}`);
  }
  return got as T;
}

/** An account made by the operator; returns its id. */
export async function createAccount(stack: Stack, name = "Acme"): Promise<string> {
  const result = await stack.graphql(
    `mutation ($name: String!) { createAccount(input: { name: $name }) {
      __typename ... on Account { id } ... on Error { message } } }`,
    { name },
  );
  return resultOf<{ id: string }>(result, "createAccount", "Account").id;
}

/** A user made by the operator (no memberships yet). */
export async function createUser(
  stack: Stack,
  options: { email?: string; name?: string; password?: string } = {},
): Promise<{ userId: string; email: string; password: string }> {
  const email = options.email ?? `user-${crypto.randomUUID().slice(0, 8)}@example.com`;
  const password = options.password ?? DEFAULT_PASSWORD;
  const result = await stack.graphql(
    `mutation ($input: CreateUserInput!) { createUser(input: $input) {
      __typename ... on User { id } ... on Error { message } } }`,
    { input: { email, name: options.name ?? "Test User", password } },
  );
  return { userId: resultOf<{ id: string }>(result, "createUser", "User").id, email, password };
}

/** Adds a user to an account with a role, as the operator. */
export async function addMember(
  stack: Stack,
  accountId: string,
  email: string,
  role: Role,
): Promise<void> {
  const result = await stack.graphql(
    `mutation ($input: AddMemberInput!) { addMember(input: $input) {
      __typename ... on Error { message } } }`,
    { input: { accountId, email, role } },
  );
  resultOf(result, "addMember", "Member");
}

/** Calls signIn (without any Authorization header) and returns its result as it is. */
export async function signInResult(
  stack: Stack,
  email: string,
  password: string,
): Promise<SessionResult> {
  const result = await stack.graphql<{ signIn: SessionResult }>(
    `mutation ($input: SignInInput!) { signIn(input: $input) {
      __typename ... on Session { ${SESSION_FIELDS} } ... on Error { message }
      ... on TooManyAttemptsError { retryAfterSeconds } } }`,
    { input: { email, password } },
    null,
  );
  return dataOf(result).signIn;
}

/** Calls refreshSession (without any Authorization header) and returns its result. */
export async function refreshResult(stack: Stack, refreshToken: string): Promise<SessionResult> {
  const result = await stack.graphql<{ refreshSession: SessionResult }>(
    `mutation ($input: RefreshSessionInput!) { refreshSession(input: $input) {
      __typename ... on Session { ${SESSION_FIELDS} } ... on Error { message } } }`,
    { input: { refreshToken } },
    null,
  );
  return dataOf(result).refreshSession;
}

/** Signs a user in; fails unless it works. */
export async function signIn(
  stack: Stack,
  email: string,
  password = DEFAULT_PASSWORD,
): Promise<{ token: string; refreshToken: string }> {
  const session = await signInResult(stack, email, password);
  if (session.__typename !== "Session") {
    throw new Error(`signIn failed: ${JSON.stringify(session)}`);
  }
  return { token: session.accessToken!, refreshToken: session.refreshToken! };
}

/**
 * A user with `role` in `accountId`, signed in: pass `token` to
 * stack.graphql to act as them.
 */
export async function consoleUser(
  stack: Stack,
  accountId: string,
  role: Role,
  options: { email?: string; password?: string } = {},
): Promise<ConsoleUser> {
  const user = await createUser(stack, options);
  await addMember(stack, accountId, user.email, role);
  return { ...user, ...await signIn(stack, user.email, user.password) };
}

/** An API key on an existing account, made by the operator; returns its id and secret. */
export async function createApiKey(
  stack: Stack,
  accountId: string,
  scopes: ("inference" | "management")[] = ["management"],
): Promise<{ keyId: string; secret: string }> {
  const result = await stack.graphql(
    `mutation ($accountId: ID!, $scopes: [ApiKeyScope!]) {
      createApiKey(input: { accountId: $accountId, name: "test key", scopes: $scopes }) {
        __typename ... on CreatedApiKey { secret apiKey { id } } ... on Error { message }
      }
    }`,
    { accountId, scopes },
  );
  const created = resultOf<{ secret: string; apiKey: { id: string } }>(
    result,
    "createApiKey",
    "CreatedApiKey",
  );
  return { keyId: created.apiKey.id, secret: created.secret };
}
