/**
 * Tenant isolation, swept over the whole schema. Every Query and Mutation
 * field that takes an id (an argument or input field named `id` or
 * `<something>Id`) is found in the schema itself, so fields added later are
 * swept too; a field whose ids the sweep cannot tell the meaning of fails the
 * test until it gets a rule here. Account A's owner and A's management key
 * then call each field with account B's objects and with a random id that
 * names nothing: the two answers must be the same (up to the id itself). A
 * control makes each case count: an operator's answers for B's objects and
 * for the random id must differ, or the call never reached the id lookup.
 *
 * Then the role rules: a viewer mutates nothing, a member manages no
 * members, an admin does not touch owners, and an account keeps an owner.
 */
import assert from "node:assert/strict";
import {
  getNamedType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputField,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLOutputType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  isUnionType,
} from "graphql";
import { schema } from "../../control/graphql/schema.ts";
import {
  addMember,
  consoleUser,
  createAccount,
  createApiKey,
  createUser,
  dataOf,
  resultOf,
  signIn,
} from "../helpers/console.ts";
import { type GraphQLResult, type Stack, startStack } from "../helpers/stack.ts";

/** What an id names. `provider` is gateway-wide: no tenant owns one. */
type Kind = "account" | "apiKey" | "providerKey" | "user" | "provider" | "request";

/** A tenant's objects, one of each kind the sweep substitutes. */
type Objects = Record<Exclude<Kind, "provider">, string>;

/** Which object an id argument names, from its name and the field's. Null: cannot tell. */
function kindOf(fieldName: string, idName: string): Kind | null {
  const byName: Record<string, Kind> = {
    accountId: "account",
    userId: "user",
    apiKeyId: "apiKey",
    keyId: "apiKey",
    providerKeyId: "providerKey",
    providerId: "provider",
    // A metered request (its usage row), by its x-request-id.
    requestId: "request",
    // The audit log's target: any object; an API key is one that is audited.
    targetId: "apiKey",
  };
  if (idName !== "id") return byName[idName] ?? null;
  const byField: [RegExp, Kind][] = [
    [/providerkey/i, "providerKey"],
    [/apikey/i, "apiKey"],
    [/member|user/i, "user"],
    [/account/i, "account"],
  ];
  return byField.find(([pattern]) => pattern.test(fieldName))?.[1] ?? null;
}

/** One id in a field's arguments: the path to it, what it names, and whether it is required. */
interface Slot {
  path: [string] | [string, string];
  kind: Kind;
  required: boolean;
}

function isIdLike(name: string, type: GraphQLInputType): boolean {
  const named = getNamedType(type).name;
  return (named === "ID" || named === "String") && (name === "id" || /[a-z]Id$/.test(name));
}

/** The id slots of a field, and the id-like arguments it cannot classify. */
function slotsOf(field: GraphQLField<unknown, unknown>): { slots: Slot[]; unknown: string[] } {
  const slots: Slot[] = [];
  const unknown: string[] = [];
  const visit = (
    path: Slot["path"],
    arg: GraphQLArgument | GraphQLInputField,
    required: boolean,
  ) => {
    if (!isIdLike(arg.name, arg.type)) return;
    const kind = kindOf(field.name, arg.name);
    if (kind) slots.push({ path, kind, required });
    else unknown.push(path.join("."));
  };
  for (const arg of field.args) {
    const named = getNamedType(arg.type);
    if (isInputObjectType(named)) {
      for (const inner of Object.values(named.getFields())) {
        visit([arg.name, inner.name], inner, isNonNullType(arg.type) && isNonNullType(inner.type));
      }
    } else visit([arg.name], arg, isNonNullType(arg.type));
  }
  return { slots, unknown };
}

/** Values for required arguments that are not ids: plausible, so validation lets them pass. */
function defaultValue(
  name: string,
  type: GraphQLInputType,
  fixed: Record<string, unknown>,
): unknown {
  if (name in fixed) return fixed[name];
  if (isNonNullType(type)) return defaultValue(name, type.ofType, fixed);
  if (isListType(type)) return [defaultValue(name, type.ofType, fixed)];
  const named = getNamedType(type);
  if (isEnumType(named)) return named.getValues()[0]!.value;
  if (isInputObjectType(named)) return requiredFields(named.getFields(), fixed);
  switch (named.name) {
    case "Int":
    case "Float":
      return 1;
    case "Boolean":
      return false;
    case "ID":
      return crypto.randomUUID();
    case "DateTime":
      return "2099-01-01T00:00:00Z";
    case "Money":
      return "1";
    default:
      return "tenancy-sweep-value";
  }
}

function requiredFields(
  fields: Record<string, GraphQLInputField>,
  fixed: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of Object.values(fields)) {
    if (isNonNullType(field.type) && field.defaultValue === undefined) {
      out[field.name] = defaultValue(field.name, field.type, fixed);
    }
  }
  return out;
}

/** A selection that shows everything a leak could show: leaves, and objects 3 levels down. */
function selectionOf(type: GraphQLOutputType | GraphQLNamedType, depth = 3): string {
  const named = getNamedType(type);
  if (isLeafType(named)) return "";
  if (isUnionType(named) || isInterfaceType(named)) {
    const members = isUnionType(named) ? named.getTypes() : schema.getPossibleTypes(named);
    return `{ __typename ${
      members.map((m) => `... on ${m.name} ${selectionOf(m, depth)}`).join(" ")
    } }`;
  }
  if (!isObjectType(named)) return "";
  const parts = ["__typename"];
  for (const field of Object.values(named.getFields())) {
    if (field.args.some((a) => isNonNullType(a.type))) continue;
    if (isLeafType(getNamedType(field.type))) parts.push(field.name);
    else if (depth > 0) parts.push(`${field.name} ${selectionOf(field.type, depth - 1)}`);
  }
  return `{ ${parts.join(" ")} }`;
}

interface SweptField {
  root: "query" | "mutation";
  field: GraphQLField<unknown, unknown>;
  slots: Slot[];
}

/** Every root field with a tenant-owned id, and the fields whose ids cannot be told. */
function sweptFields(): { swept: SweptField[]; uncovered: string[]; global: string[] } {
  const swept: SweptField[] = [];
  const uncovered: string[] = [];
  const global: string[] = [];
  for (
    const [root, type] of [["query", schema.getQueryType()!], [
      "mutation",
      schema.getMutationType()!,
    ]] as const
  ) {
    for (const field of Object.values(type.getFields())) {
      const { slots, unknown } = slotsOf(field);
      if (unknown.length > 0) uncovered.push(`${type.name}.${field.name} (${unknown.join(", ")})`);
      else if (slots.some((s) => s.kind !== "provider")) swept.push({ root, field, slots });
      else if (slots.length > 0) global.push(`${type.name}.${field.name}`);
    }
  }
  return { swept, uncovered, global };
}

/** The operation calling `field` with `values` at the id slots (undefined: left out). */
function operation(
  swept: SweptField,
  values: Map<Slot, string | undefined>,
  fixed: Record<string, unknown>,
): { query: string; variables: Record<string, unknown> } {
  const { field, root } = swept;
  const variables: Record<string, unknown> = {};
  for (const arg of field.args) {
    const named = getNamedType(arg.type);
    let value: unknown = isNonNullType(arg.type)
      ? defaultValue(arg.name, arg.type, fixed)
      : undefined;
    const inner = [...values].filter(([slot]) => slot.path[0] === arg.name);
    if (isInputObjectType(named) && inner.length > 0) {
      value ??= requiredFields(named.getFields(), fixed);
    }
    for (const [slot, id] of inner) {
      if (slot.path.length === 1) value = id;
      else if (id === undefined) delete (value as Record<string, unknown>)[slot.path[1]];
      else (value as Record<string, unknown>)[slot.path[1]] = id;
    }
    if (value !== undefined) variables[arg.name] = value;
  }
  const used = field.args.filter((a) => a.name in variables);
  const definitions = used.map((a) => `$${a.name}: ${a.type}`).join(", ");
  const args = used.map((a) => `${a.name}: $${a.name}`).join(", ");
  const query = `${root} Sweep${definitions ? `(${definitions})` : ""} { ${field.name}${
    args ? `(${args})` : ""
  } ${selectionOf(field.type)} }`;
  return { query, variables };
}

/** What a caller can observe of an answer, with the given ids replaced by "<id>". */
function observed(result: GraphQLResult<unknown>, ids: string[]): string {
  let text = JSON.stringify({
    status: result.status,
    data: result.data ?? null,
    errors: result.errors?.map((e) => ({ message: e.message, code: e.extensions?.code })),
  });
  for (const id of ids) text = text.replaceAll(id, "<id>");
  return text;
}

interface Tenant {
  objects: Objects;
  owner: string;
  managementKey: string;
}

/** An account with one object of each kind the sweep substitutes, and some history. */
async function tenant(stack: Stack, name: string, providerId: string): Promise<Tenant> {
  const accountId = await createAccount(stack, name);
  const owner = await consoleUser(stack, accountId, "owner");
  const management = await createApiKey(stack, accountId, ["management"]);
  const apiKey = await createApiKey(stack, accountId, ["inference"]);
  const member = await createUser(stack);
  await addMember(stack, accountId, member.email, "viewer");
  const providerKey = resultOf<{ id: string }>(
    await stack.graphql(
      `mutation ($input: SetProviderKeyInput!) { setProviderKey(input: $input) {
        __typename ... on ProviderKey { id } ... on Error { message } } }`,
      { input: { accountId, providerId, apiKey: `sk-${name}-provider-key` } },
    ),
    "setProviderKey",
    "ProviderKey",
  ).id;
  resultOf(
    await stack.graphql(
      `mutation ($accountId: ID!) { adjustBalance(input: {
        accountId: $accountId, amount: "5", reason: "history" }) { __typename ... on Error { message } } }`,
      { accountId },
    ),
    "adjustBalance",
    "BalanceAdjustment",
  );
  const requestId = `req-${name}-${crypto.randomUUID()}`;
  await stack.database.db.db.insertInto("usage_events").values({
    request_id: requestId,
    account_id: accountId,
    api_key_id: apiKey.keyId,
    agent_name: "agent",
    agent_purpose: null,
    agent_owner: null,
    endpoint: "chat.completions",
    model: "mock-small",
    provider_id: providerId,
    provider_name: "mock",
    upstream_model: "mock-1",
    status: 200,
    error_code: null,
    stream: false,
    prompt_tokens: 10,
    completion_tokens: 5,
    cached_tokens: 0,
    total_tokens: 15,
    cost: 100,
    estimated: false,
    latency_ms: 12,
    ttfb_ms: null,
    created_at: new Date(),
  }).execute();
  return {
    objects: {
      account: accountId,
      apiKey: apiKey.keyId,
      providerKey,
      user: member.userId,
      request: requestId,
    },
    owner: owner.token,
    managementKey: management.secret,
  };
}

async function providerId(stack: Stack): Promise<string> {
  const row = await stack.database.db.db.selectFrom("providers").select("id").limit(1)
    .executeTakeFirstOrThrow();
  return row.id;
}

/** Destructive mutations go last, so the controls of the others still find B's objects. */
function destructiveLast(a: SweptField, b: SweptField): number {
  const rank = (s: SweptField) =>
    s.root === "query" ? 0 : /^(delete|remove|revoke)/.test(s.field.name) ? 2 : 1;
  return rank(a) - rank(b);
}

Deno.test("tenant isolation: A's owner and A's management key get the same answer for B's objects as for ids that name nothing, in every field that takes an id", async () => {
  const { swept, uncovered, global } = sweptFields();
  assert.deepEqual(
    uncovered,
    [],
    "These fields take ids the sweep cannot tell the meaning of: teach kindOf() what they name",
  );
  assert.ok(swept.length >= 10, `the sweep found only ${swept.map((s) => s.field.name)}`);

  const stack = await startStack();
  try {
    const provider = await providerId(stack);
    const a = await tenant(stack, "a", provider);
    const b = await tenant(stack, "b", provider);
    const outsider = await createUser(stack);
    const fixed: Record<string, unknown> = {
      email: outsider.email,
      role: "viewer",
      amount: "1",
      reason: "tenancy sweep",
      from: new Date(Date.now() - 30 * 86_400_000).toISOString(),
      to: new Date(Date.now() + 86_400_000).toISOString(),
      graceSeconds: 0,
      apiKey: "sk-tenancy-sweep-0000",
    };
    const bIds = Object.values(b.objects);
    const failures: string[] = [];
    const controls: {
      swept: SweptField;
      values: (id: (kind: Kind) => string) => Map<Slot, string | undefined>;
    }[] = [];

    for (const item of swept) {
      const name = `${item.root === "query" ? "Query" : "Mutation"}.${item.field.name}`;
      const tenantSlots = item.slots.filter((s) => s.kind !== "provider");
      const fill = (slotValue: (slot: Slot) => string | undefined) =>
        new Map(
          item.slots.map((slot) => [slot, slot.kind === "provider" ? provider : slotValue(slot)]),
        );
      // Every tenant id at once; then each alone, the other required ones being A's own.
      const variants: {
        label: string;
        values: (random: string) => Map<Slot, string | undefined>;
        b: Map<Slot, string | undefined>;
      }[] = [{
        label: "all ids",
        values: (random) => fill(() => random),
        b: fill((slot) => b.objects[slot.kind as keyof Objects]),
      }];
      if (tenantSlots.length > 1) {
        for (const only of tenantSlots) {
          const other = (slot: Slot) =>
            slot.required ? a.objects[slot.kind as keyof Objects] : undefined;
          variants.push({
            label: `only ${only.path.join(".")}`,
            values: (random) => fill((slot) => slot === only ? random : other(slot)),
            b: fill((slot) => slot === only ? b.objects[slot.kind as keyof Objects] : other(slot)),
          });
        }
      }
      for (
        const [who, token] of [["A's owner", a.owner], [
          "A's management key",
          a.managementKey,
        ]] as const
      ) {
        for (const variant of variants) {
          const random = crypto.randomUUID();
          const missing = operation(item, variant.values(random), fixed);
          const theirs = operation(item, variant.b, fixed);
          const forMissing = await stack.graphql(missing.query, missing.variables, token);
          const forTheirs = await stack.graphql(theirs.query, theirs.variables, token);
          const ids = [random, ...bIds];
          if (observed(forTheirs, ids) !== observed(forMissing, ids)) {
            failures.push(
              `${name} (${variant.label}) as ${who}:\n  B's object: ${observed(forTheirs, [])}\n` +
                `  no object:  ${observed(forMissing, [])}`,
            );
          }
          const leaked = bIds.filter((id) => JSON.stringify(forMissing).includes(id));
          if (leaked.length > 0) {
            failures.push(`${name} (${variant.label}) as ${who} shows B's ids ${leaked}`);
          }
        }
      }
      // With every id left out (where that is allowed), nothing of B's shows either.
      if (tenantSlots.every((slot) => !slot.required)) {
        for (
          const [who, token] of [["A's owner", a.owner], [
            "A's management key",
            a.managementKey,
          ]] as const
        ) {
          const { query, variables } = operation(item, fill(() => undefined), fixed);
          const text = JSON.stringify(await stack.graphql(query, variables, token));
          const leaked = bIds.filter((id) => text.includes(id));
          if (leaked.length > 0) {
            failures.push(`${name} (no ids) as ${who} shows B's ids ${leaked}`);
          }
        }
      }
      controls.push({ swept: item, values: (id) => fill((slot) => id(slot.kind)) });
    }

    // Queries that take no id (lists such as accounts, me): nothing of B's in A's answers.
    for (const field of Object.values(schema.getQueryType()!.getFields())) {
      if (slotsOf(field).slots.length > 0) continue;
      const item: SweptField = { root: "query", field, slots: [] };
      for (
        const [who, token] of [["A's owner", a.owner], [
          "A's management key",
          a.managementKey,
        ]] as const
      ) {
        const { query, variables } = operation(item, new Map(), fixed);
        const text = JSON.stringify(await stack.graphql(query, variables, token));
        const leaked = bIds.filter((id) => text.includes(id));
        if (leaked.length > 0) {
          failures.push(`Query.${field.name} as ${who} shows B's ids ${leaked}`);
        }
      }
    }

    // The controls: for an operator, B's objects and ids naming nothing answer differently.
    for (const control of controls.sort((x, y) => destructiveLast(x.swept, y.swept))) {
      const random = crypto.randomUUID();
      const missing = operation(control.swept, control.values(() => random), fixed);
      const theirs = operation(
        control.swept,
        control.values((kind) => b.objects[kind as keyof Objects]),
        fixed,
      );
      const forMissing = observed(await stack.graphql(missing.query, missing.variables), [
        random,
        ...bIds,
      ]);
      const forTheirs = observed(await stack.graphql(theirs.query, theirs.variables), [
        random,
        ...bIds,
      ]);
      if (forMissing === forTheirs) {
        failures.push(
          `${control.swept.field.name}: the operator's answer does not depend on the id, so this ` +
            `case proves nothing (give its other arguments values that pass validation): ${forTheirs}`,
        );
      }
    }
    assert.deepEqual(failures, [], failures.join("\n\n"));
    console.log(
      `Swept ${swept.length} fields: ${swept.map((s) => s.field.name).join(", ")}; gateway-wide ` +
        `ids only: ${global.join(", ") || "none"}`,
    );
  } finally {
    await stack.close();
  }
});

async function mutate(
  stack: Stack,
  token: string,
  field: string,
  inputType: string,
  input: Record<string, unknown>,
) {
  const result = await stack.graphql<Record<string, { __typename: string; message?: string }>>(
    `mutation ($input: ${inputType}!) { ${field}(input: $input) { __typename ... on Error { message } } }`,
    { input },
    token,
  );
  return dataOf(result)[field]!;
}

Deno.test("a viewer mutates nothing in its account; a member manages no members", async () => {
  const stack = await startStack();
  try {
    const provider = await providerId(stack);
    const a = await tenant(stack, "a", provider);
    const accountId = a.objects.account;
    const viewer = await consoleUser(stack, accountId, "viewer");
    const member = await consoleUser(stack, accountId, "member");
    const { email } = await createUser(stack);

    // Every mutation that takes an id, on the viewer's own account's objects: ForbiddenError.
    const { swept } = sweptFields();
    const fixed = {
      email,
      role: "viewer",
      amount: "1",
      reason: "r",
      graceSeconds: 0,
      apiKey: "sk-viewer-0000",
    };
    const mutations = swept.filter((s) => s.root === "mutation");
    assert.ok(mutations.length >= 8);
    for (const item of mutations) {
      const values = new Map(item.slots.map((slot) => [
        slot,
        slot.kind === "provider" ? provider : a.objects[slot.kind as keyof Objects],
      ]));
      const { query, variables } = operation(item, values, fixed);
      const result = await stack.graphql<Record<string, { __typename: string }>>(
        query,
        variables,
        viewer.token,
      );
      const answer = result.data?.[item.field.name]?.__typename ??
        result.errors?.[0]?.extensions?.code;
      assert.ok(
        answer === "ForbiddenError" || answer === "FORBIDDEN",
        `${item.field.name} as a viewer: ${JSON.stringify(result)}`,
      );
    }

    // A member manages no members.
    for (
      const [field, type, input] of [
        ["addMember", "AddMemberInput", { accountId, email, role: "viewer" }],
        ["updateMemberRole", "UpdateMemberRoleInput", {
          accountId,
          userId: viewer.userId,
          role: "member",
        }],
        ["removeMember", "RemoveMemberInput", { accountId, userId: viewer.userId }],
      ] as const
    ) {
      assert.equal(
        (await mutate(stack, member.token, field, type, input)).__typename,
        "ForbiddenError",
        field,
      );
    }
    // Viewers and members still read: the members list, the account.
    for (const token of [viewer.token, member.token]) {
      const members = dataOf(
        await stack.graphql<{ members: { edges: unknown[] } }>(
          `{ members(accountId: "${accountId}") { edges { node { role user { email } } } } }`,
          {},
          token,
        ),
      );
      assert.equal(
        members.members.edges.length,
        4,
        "the owner, the viewer from setup, a viewer, a member",
      );
    }
  } finally {
    await stack.close();
  }
});

Deno.test("an admin manages members below owner but cannot grant, change or remove an owner; the last owner stays", async () => {
  const stack = await startStack();
  try {
    const accountId = await createAccount(stack, "Acme");
    const owner = await consoleUser(stack, accountId, "owner");
    const admin = await consoleUser(stack, accountId, "admin");
    const newcomer = await createUser(stack);
    const role = (token: string, userId: string, to: string) =>
      mutate(stack, token, "updateMemberRole", "UpdateMemberRoleInput", {
        accountId,
        userId,
        role: to,
      });
    const remove = (token: string, userId: string) =>
      mutate(stack, token, "removeMember", "RemoveMemberInput", { accountId, userId });

    const grantOwner = await mutate(stack, admin.token, "addMember", "AddMemberInput", {
      accountId,
      email: newcomer.email,
      role: "owner",
    });
    assert.equal(grantOwner.__typename, "ForbiddenError");
    assert.equal(grantOwner.message, "Only an owner can make someone an owner");
    const added = await mutate(stack, admin.token, "addMember", "AddMemberInput", {
      accountId,
      email: newcomer.email,
      role: "admin",
    });
    assert.equal(added.__typename, "Member", "an admin may add another admin");
    assert.equal((await role(admin.token, newcomer.userId, "viewer")).__typename, "Member");
    assert.equal((await role(admin.token, newcomer.userId, "owner")).__typename, "ForbiddenError");
    assert.equal((await role(admin.token, owner.userId, "viewer")).__typename, "ForbiddenError");
    assert.equal((await remove(admin.token, owner.userId)).__typename, "ForbiddenError");

    // The last owner can neither be demoted nor removed, even by themselves or an operator.
    const demote = await role(owner.token, owner.userId, "admin");
    assert.equal(demote.__typename, "ForbiddenError");
    assert.match(demote.message!, /last owner/);
    assert.equal((await remove(owner.token, owner.userId)).__typename, "ForbiddenError");
    const asOperator = await stack.graphql<{ removeMember: { __typename: string } }>(
      `mutation ($a: ID!, $u: ID!) { removeMember(input: { accountId: $a, userId: $u }) { __typename } }`,
      { a: accountId, u: owner.userId },
    );
    assert.equal(dataOf(asOperator).removeMember.__typename, "ForbiddenError");

    // With a second owner, the first can step down, and be removed by the new one.
    assert.equal((await role(owner.token, newcomer.userId, "owner")).__typename, "Member");
    assert.equal((await role(owner.token, owner.userId, "viewer")).__typename, "Member");
    const { token: newOwner } = await signIn(stack, newcomer.email);
    assert.equal((await remove(newOwner, owner.userId)).__typename, "Member");
    assert.equal((await role(newOwner, newcomer.userId, "admin")).__typename, "ForbiddenError");
  } finally {
    await stack.close();
  }
});

Deno.test("a user sees only the accounts they are in; an account they create makes them its owner; pages follow keyset cursors", async () => {
  const stack = await startStack();
  try {
    const joined = [await createAccount(stack, "one"), await createAccount(stack, "two")];
    await createAccount(stack, "not theirs");
    const user = await consoleUser(stack, joined[0]!, "viewer");
    await addMember(stack, joined[1]!, user.email, "member");

    const created = await stack.graphql<{ createAccount: { __typename: string; id: string } }>(
      'mutation { createAccount(input: { name: "mine" }) { __typename ... on Account { id } } }',
      {},
      user.token,
    );
    const mine = dataOf(created).createAccount.id;
    const page = async (args: string) =>
      dataOf(
        await stack.graphql<{
          accounts: {
            edges: { cursor: string; node: { id: string; name: string } }[];
            pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; endCursor: string };
          };
        }>(
          `{ accounts${args} { edges { cursor node { id name } }
            pageInfo { hasNextPage hasPreviousPage endCursor } } }`,
          {},
          user.token,
        ),
      ).accounts;
    const all = await page("");
    assert.deepEqual(all.edges.map((e) => e.node.name), ["one", "two", "mine"], "oldest first");

    const first = await page("(first: 2)");
    assert.deepEqual(first.edges.map((e) => e.node.name), ["one", "two"]);
    assert.equal(first.pageInfo.hasNextPage, true);
    const rest = await page(`(first: 2, after: "${first.pageInfo.endCursor}")`);
    assert.deepEqual(rest.edges.map((e) => e.node.name), ["mine"]);
    assert.equal(rest.pageInfo.hasNextPage, false);
    const back = await page(`(last: 1, before: "${rest.edges[0]!.cursor}")`);
    assert.deepEqual(back.edges.map((e) => e.node.name), ["two"]);
    const bad = await stack.graphql(
      `{ accounts(after: "bm9wZQ") { edges { cursor } } }`,
      {},
      user.token,
    );
    assert.equal(bad.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");

    const me = dataOf(
      await stack.graphql<
        { me: { memberships: { edges: { node: { role: string; account: { name: string } } }[] } } }
      >(
        "{ me { memberships { edges { node { role account { name } } } } } }",
        {},
        user.token,
      ),
    ).me;
    assert.deepEqual(me.memberships.edges.map((e) => [e.node.account.name, e.node.role]), [
      ["one", "viewer"],
      ["two", "member"],
      ["mine", "owner"],
    ]);
    const members = dataOf(
      await stack.graphql<
        { members: { edges: { node: { role: string; user: { id: string } } }[] } }
      >(
        `{ members(accountId: "${mine}") { edges { node { role user { id } } } } }`,
        {},
        user.token,
      ),
    ).members;
    assert.deepEqual(members.edges.map((e) => e.node), [{
      role: "owner",
      user: { id: user.userId },
    }]);
    const operatorView = await stack.graphql<{ accounts: { edges: unknown[] } }>(
      "{ accounts { edges { cursor } } }",
    );
    assert.equal(dataOf(operatorView).accounts.edges.length, 4, "an operator sees every account");
  } finally {
    await stack.close();
  }
});
