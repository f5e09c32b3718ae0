// Three pages, one per seed style. The hash picks the page: #/support (seed 002),
// #/conversations (seed 004), #/socket (seeds 000/001).
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { configureWebSocket } from "@natter/react";
import { SERVER_URL, USER_ID } from "./config";
import { SupportWidget } from "./SupportWidget";
import { ConversationPage } from "./ConversationPage";
import { SocketChat } from "./SocketChat";

// Seed 004: configure the shared WebSocketService before first use.
configureWebSocket({ url: SERVER_URL, auth: { userId: USER_ID }, reconnectionDelay: 500 });

const queryClient = new QueryClient();

const PAGES = {
  "#/support": { title: "Support widget (seed 002)", Page: SupportWidget },
  "#/conversations": { title: "Conversations (seed 004)", Page: ConversationPage },
  "#/socket": { title: "AIChatSocket (seeds 000/001)", Page: SocketChat },
} as const;
type Route = keyof typeof PAGES;

function useRoute(): Route {
  const read = (): Route => (window.location.hash in PAGES ? (window.location.hash as Route) : "#/support");
  const [route, setRoute] = useState<Route>(read);
  useEffect(() => {
    const onHash = () => setRoute(read());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  return route;
}

function App() {
  const route = useRoute();
  const { Page } = PAGES[route];
  return (
    <>
      <nav>
        {(Object.keys(PAGES) as Route[]).map((r) => (
          <a key={r} href={r} className={r === route ? "active" : ""}>
            {PAGES[r].title}
          </a>
        ))}
      </nav>
      <main>
        <Page key={route} />
      </main>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
