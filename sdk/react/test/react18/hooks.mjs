// Module resolution hook for register.mjs.
const HERE = new URL("./package.json", import.meta.url).href;
const REDIRECT = /^(react|react-dom|scheduler|@tanstack\/react-query|@tanstack\/query-core|@testing-library\/react|@testing-library\/dom)(\/.*)?$/;

export async function resolve(specifier, context, nextResolve) {
  if (REDIRECT.test(specifier)) return nextResolve(specifier, { ...context, parentURL: HERE });
  return nextResolve(specifier, context);
}
