/**
 * Relay connections over keyset pages (services/pages.ts). Page sizes are
 * checked rather than clamped: `first: 5000` on a list that serves at most
 * 500 is a BAD_USER_INPUT naming `first`, not a silently shorter page that a
 * client would take for the end of the list.
 */
import { type DefaultConnectionArguments, resolveCursorConnection } from "@pothos/plugin-relay";
import { InvalidInputError, toGraphQLError } from "../errors.ts";
import type { PageRequest } from "../services/pages.ts";

export interface PageSizes {
  /** Rows on a page when neither first nor last is given. */
  defaultSize: number;
  /** The largest first or last accepted. */
  maxSize: number;
}

/**
 * Resolves a connection field: checks first/last against `sizes`, loads one
 * keyset page with `load` and builds the edges with `toCursor`. Expected
 * errors (bad input, a missing or hidden record, a role too low) become
 * GraphQL errors with a code; anything else is left for Yoga to mask.
 */
export async function keysetConnection<T>(
  args: DefaultConnectionArguments,
  sizes: PageSizes,
  toCursor: (node: T) => string,
  load: (page: PageRequest) => Promise<T[]>,
) {
  try {
    for (const field of ["first", "last"] as const) {
      const size = args[field];
      if (size != null && (size < 1 || size > sizes.maxSize)) {
        throw new InvalidInputError(`${field}: must be between 1 and ${sizes.maxSize}`, field);
      }
    }
    return await resolveCursorConnection<Promise<T[]>>(
      { args, ...sizes, toCursor: (node) => toCursor(node) },
      (page) => load(page),
    );
  } catch (error) {
    throw toGraphQLError(error);
  }
}
