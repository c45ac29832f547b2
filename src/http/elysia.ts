/** What Elysia's way of compiling routes asks of our handlers. */

/**
 * A handler that answers without a promise. Elysia reads a handler's source to decide whether to
 * await it, and takes `return f(...)` or `=> f(...)` for a function that may return a promise: it
 * then awaits every answer, a promise and a microtask turn more per request. So the answer is
 * assigned to a variable and the variable returned (Bun's transpiler turns `const x = f(); return x`
 * into `return f()`, hence the `let`). The context is destructured so that Elysia, which reads which
 * parts a handler uses, prepares only the params and the query (the request is there anyway). test/http/routes.test.ts checks that
 * the routes built with it answer at once; `BENCH_ONLY=http make bench` prices the difference.
 */
export function answerAtOnce<C extends { params?: unknown; query?: unknown; request?: Request }, R>(answer: (context: C) => R) {
  return ({ params, query, request }: C): R => {
    let answered;
    answered = answer({ params, query, request } as C);
    return answered;
  };
}
