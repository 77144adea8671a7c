/**
 * A throwaway Postgres server of the test's own (initdb in a temporary
 * folder, on a free port), for tests that stop and start the server: the
 * suite's shared server keeps running for everything else. Uses the
 * machine's Postgres binaries (Debian's /usr/lib/postgresql/<version>/bin);
 * as root, runs them as the postgres user, as initdb requires.
 */

export interface ScratchPostgres {
  /** The server's `postgres` database, for freshDatabase({ serverUrl }). */
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its folder. */
  close(): Promise<void>;
}

/** The folder of initdb and pg_ctl, or null when this machine has none. */
export function postgresBinaries(): string | null {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name)
      .sort((a, b) => Number(b) - Number(a));
    for (const version of versions) {
      const dir = `/usr/lib/postgresql/${version}/bin`;
      if (Deno.statSync(`${dir}/pg_ctl`).isFile) return dir;
    }
  } catch {
    // No Debian layout.
  }
  return null;
}

export async function startScratchPostgres(): Promise<ScratchPostgres> {
  const bin = postgresBinaries();
  if (!bin) throw new Error("Cannot start a scratch Postgres: no /usr/lib/postgresql/*/bin");
  const dir = await Deno.makeTempDir({ prefix: "tollgate-pg-" });
  const asRoot = Deno.uid() === 0;
  if (asRoot) await run("chown", ["postgres", dir]);
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const pg = (tool: string, args: string[]) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", `${bin}/${tool}`, ...args]) : run(
      `${bin}/${tool}`,
      args,
    );
  await pg("initdb", ["-D", `${dir}/data`, "-A", "trust", "-U", "postgres", "--no-sync"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const start = () =>
    pg("pg_ctl", ["-D", `${dir}/data`, "-o", options, "-w", "-l", `${dir}/log`, "start"]);
  const stop = () => pg("pg_ctl", ["-D", `${dir}/data`, "-m", "fast", "-w", "stop"]);
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    stop,
    async close() {
      await stop().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function run(command: string, args: string[]): Promise<void> {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    const text = new TextDecoder().decode(new Uint8Array([...stdout, ...stderr]));
    throw new Error(`${command} ${args.join(" ")} exited with ${code}: ${text}`);
  }
}
