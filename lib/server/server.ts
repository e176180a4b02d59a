/**
 * The old import path of hsyncd's handler, kept only for the client-side
 * tests that import it (tests/pull_test.ts, tests/follow_test.ts,
 * tests/_resume_fixture.ts); the handler is lib/server/handler.ts. Remove
 * this file once they import that.
 */
export {
  type AccessLogEntry,
  createHandler,
  type Handler,
  type HandlerOptions,
} from "./handler.ts";
