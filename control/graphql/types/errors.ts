/**
 * The expected errors as GraphQL types. Every error implements `Error`, so a
 * client can always select `... on Error { message }`.
 */
import { ForbiddenError, InvalidInputError, NotFoundError } from "../../errors.ts";
import { builder } from "../builder.ts";

export const ErrorInterface = builder.interfaceRef<Error>("Error").implement({
  fields: (t) => ({
    message: t.exposeString("message"),
  }),
});

builder.objectType(InvalidInputError, {
  name: "InvalidInputError",
  description: 'An input was refused; `field` names it (e.g. "inputPrice").',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    field: t.exposeString("field"),
  }),
});

builder.objectType(NotFoundError, {
  name: "NotFoundError",
  description: "A referenced record does not exist.",
  interfaces: [ErrorInterface],
});

builder.objectType(ForbiddenError, {
  name: "ForbiddenError",
  description: "The record is visible to the caller, but the caller's role does not allow this.",
  interfaces: [ErrorInterface],
});
