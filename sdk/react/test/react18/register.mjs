// `node --import ./test/react18/register.mjs`: resolves React, React DOM, React Query and the
// testing library from this folder (React 18) instead of sdk/react/node_modules (React 19),
// for every importer, so the hooks and the tests run on React 18 unchanged.
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
