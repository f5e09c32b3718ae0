// Where Natter is and who this tab is: `?server=http://host:port&user=ann` in the page URL,
// else VITE_NATTER_URL at build time, else http://127.0.0.1:4000.
const params = new URLSearchParams(window.location.search);

export const SERVER_URL = (params.get("server") ?? import.meta.env.VITE_NATTER_URL ?? "http://127.0.0.1:4000").replace(/\/+$/, "");
export const USER_ID = params.get("user") ?? `guest-${Math.random().toString(36).slice(2, 8)}`;
export const ORG_ID = params.get("org") ?? "default";
