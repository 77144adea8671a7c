/** The control plane's GraphQL schema: every type file, then toSchema(). */
import { builder } from "./builder.ts";
import "./types/errors.ts";
import "./types/account.ts";
import "./types/user.ts";
import "./types/session.ts";
import "./types/api_key.ts";
import "./types/provider.ts";
import "./types/provider_key.ts";
import "./types/model.ts";
import "./types/route.ts";
import "./types/usage.ts";
import "./types/request_log.ts";
import "./types/ledger.ts";
import "./types/audit.ts";

export const schema = builder.toSchema();
