import { defineConfig } from "vite";

// No plugin needed: Vite compiles TSX itself. `dedupe` makes @natter/react (linked from
// sdk/react, which has React as a dev dependency for its tests) use this app's React.
export default defineConfig({
  base: "./",
  resolve: { dedupe: ["react", "react-dom", "@tanstack/react-query"] },
  oxc: { jsx: { runtime: "automatic" } },
  build: {
    sourcemap: true,
    rolldownOptions: {
      // React Query's "use client" directives mean nothing in a client bundle.
      onLog(level, log, handler) {
        if (log.code === "MODULE_LEVEL_DIRECTIVE") return;
        handler(level, log);
      },
    },
  },
});
