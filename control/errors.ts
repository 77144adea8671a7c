/**
 * Expected errors: thrown by services, returned by mutations as typed
 * results (the Pothos errors plugin turns them into union members).
 * Anything else is unexpected and masked by Yoga.
 */
import { GraphQLError } from "graphql";
import { z } from "zod";

/** An input was refused; `field` names the offending input field ("inputPrice"). */
export class InvalidInputError extends Error {
  override readonly name = "InvalidInputError";
  constructor(message: string, readonly field: string) {
    super(message);
  }
}

/** A referenced record does not exist. */
export class NotFoundError extends Error {
  override readonly name = "NotFoundError";
  constructor(message: string) {
    super(message);
  }
}

/** The actor may see the record but its role does not allow this action. */
export class ForbiddenError extends Error {
  override readonly name = "ForbiddenError";
  constructor(message: string) {
    super(message);
  }
}

/** Parses `input` with `schema`, or throws an InvalidInputError naming the first bad field. */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue?.path.map(String).join(".") || "input";
  throw new InvalidInputError(`${field}: ${issue?.message ?? "is invalid"}`, field);
}

// deno-lint-ignore no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/** A trimmed, non-empty, single-line string of at most `max` characters. */
export function textField(max: number) {
  return z.string().trim().min(1, "must not be empty").max(max, `must be at most ${max} characters`)
    .refine((text) => !CONTROL_CHARACTERS.test(text), "must not contain control characters");
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * True for a well-formed id. Ids are uuids: a malformed one simply names no
 * record (a NotFoundError), instead of failing as a Postgres cast error.
 */
export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

/**
 * An expected error as a plain GraphQL error, for fields without typed
 * results (queries): it keeps its message and gets a code, where Yoga would
 * otherwise mask it as unexpected.
 */
export function toGraphQLError(error: unknown): unknown {
  if (error instanceof InvalidInputError) {
    return new GraphQLError(error.message, {
      extensions: { code: "BAD_USER_INPUT", field: error.field },
    });
  }
  if (error instanceof NotFoundError) {
    return new GraphQLError(error.message, { extensions: { code: "NOT_FOUND" } });
  }
  if (error instanceof ForbiddenError) {
    return new GraphQLError(error.message, { extensions: { code: "FORBIDDEN" } });
  }
  return error;
}
