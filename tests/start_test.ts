import assert from "node:assert/strict";
import OpenAI from "openai";
import { TextLineStream } from "./helpers/text_lines.ts";

const ROOT = new URL("..", import.meta.url);

/** Runs main.ts (what `deno task start` runs) and collects its banner. */
async function start(dataDir: string) {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: ROOT,
    env: { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_GATEWAY_PORT: "0", TOLLGATE_CONTROL_PORT: "0" },
    clearEnv: false,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
    new TextLineStream(),
  ).getReader();
  const banner: string[] = [];
  const timer = setTimeout(() => process.kill("SIGKILL"), 60_000);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    banner.push(value);
    if (/Control plane/.test(value)) {
      // The admin token, when printed, follows within the same write.
      await new Promise((resolve) => setTimeout(resolve, 200));
      break;
    }
  }
  clearTimeout(timer);
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      banner.push(value);
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const text = () => banner.join("\n");
  const gateway = /Gateway.*?(http:\/\/\S+)/.exec(text())?.[1];
  const control = /Control plane.*?(http:\/\/\S+)/.exec(text())?.[1];
  return {
    gateway: gateway!,
    control: control!,
    adminToken: /(tga_[0-9A-Za-z]+)/.exec(text())?.[1],
    async stop() {
      process.kill("SIGTERM");
      await process.status;
      await rest.catch(() => {});
    },
  };
}

async function gql(url: string, token: string, query: string) {
  const response = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ query }),
  });
  return (await response.json()).data;
}

Deno.test({
  name:
    "deno task start on a fresh folder prints the admin token once and serves a metered completion",
  // Runs on the embedded database whatever DATABASE_URL says, so once is enough.
  ignore: Boolean(Deno.env.get("DATABASE_URL")),
  async fn() {
    const dataDir = await Deno.makeTempDir();
    try {
      const first = await start(dataDir);
      let adminToken: string;
      try {
        assert.match(first.gateway, /\/v1$/);
        assert.match(first.control, /\/graphql$/);
        assert.ok(first.adminToken, "the first start prints an admin token");
        adminToken = first.adminToken;
        const { createAccount } = await gql(
          first.control,
          adminToken,
          `mutation { createAccount(input: {name: "Acme"}) { ... on Account { id } } }`,
        );
        const { createApiKey } = await gql(
          first.control,
          adminToken,
          `mutation { createApiKey(input: {accountId: "${createAccount.id}", name: "laptop"}) { ... on CreatedApiKey { secret } } }`,
        );
        // As the quickstart does: requests are prepaid.
        const { adjustBalance } = await gql(
          first.control,
          adminToken,
          `mutation { adjustBalance(input: {accountId: "${createAccount.id}", amount: "10", reason: "quickstart"}) { ... on BalanceAdjustment { balance } } }`,
        );
        assert.equal(adjustBalance.balance, "10.00000000");
        const client = new OpenAI({
          baseURL: first.gateway,
          apiKey: createApiKey.secret,
          maxRetries: 0,
        });
        const completion = await client.chat.completions.create({
          model: "tollgate-mock",
          messages: [{ role: "user", content: "Hello, Tollgate!" }],
        });
        assert.ok(completion.usage!.total_tokens > 0);
      } finally {
        await first.stop();
      }

      const second = await start(dataDir);
      try {
        assert.equal(second.adminToken, undefined, "the token is printed only once");
        const { requestLogs } = await gql(
          second.control,
          adminToken,
          `{ requestLogs { edges { node { model totalTokens cost } } } }`,
        );
        const usage = requestLogs.edges.map((edge: { node: { model: string } }) => edge.node);
        assert.equal(usage.length, 1, "the completion was metered and survived the restart");
        assert.equal(usage[0].model, "tollgate-mock");
      } finally {
        await second.stop();
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
