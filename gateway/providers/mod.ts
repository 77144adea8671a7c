/** Builds the adapter for a provider, once per snapshot version of its row. */
import type { ProviderPolicy } from "../policy/snapshot.ts";
import { createMockProvider } from "./mock.ts";
import { createOpenAICompatProvider } from "./openai_compat.ts";
import type { Provider, ProviderDeps } from "./provider.ts";
import { createAnthropicProvider } from "./anthropic/mod.ts";

export type { Operation, Provider, UpstreamCall, UpstreamReply } from "./provider.ts";

export function createProviderRegistry(deps: ProviderDeps): (config: ProviderPolicy) => Provider {
  // Keyed by the snapshot object: a changed provider row is a new object, so
  // its adapter is rebuilt and the old one is collected with the old row.
  const adapters = new WeakMap<ProviderPolicy, Provider>();
  return (config) => {
    let adapter = adapters.get(config);
    if (!adapter) {
      adapter = build(config, deps);
      adapters.set(config, adapter);
    }
    return adapter;
  };
}

function build(config: ProviderPolicy, deps: ProviderDeps): Provider {
  switch (config.kind) {
    case "openai_compat":
      return createOpenAICompatProvider(config, deps);
    case "mock":
      return createMockProvider();
    case "anthropic":
      return createAnthropicProvider(config, deps);
  }
}
