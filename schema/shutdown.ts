/**
 * How each process stops on SIGINT or SIGTERM: `stop` once (a second signal
 * exits at once), and exit 1 if it has not finished by `deadlineMs`, the
 * spool keeping whatever usage a stuck database did not take.
 */
export function stopOnSignals(stop: () => Promise<void>, deadlineMs: number): void {
  let stopping = false;
  const onSignal = async () => {
    if (stopping) {
      console.error("Stopping now (second signal)");
      Deno.exit(1);
    }
    stopping = true;
    setTimeout(() => {
      console.error(`Shutdown is stuck after ${deadlineMs} ms (on the database?); exiting`);
      Deno.exit(1);
    }, deadlineMs);
    try {
      await stop();
    } catch (error) {
      console.error("Shutdown failed", error);
      Deno.exit(1);
    }
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, onSignal);
}
