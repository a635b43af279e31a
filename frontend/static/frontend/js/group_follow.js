/* A group's page (repeats, folds, a sweep) follows the group: its JSON (GET /api/groups/<id>/) is asked again every
   2 s until the group has settled (`summary.settled`: nothing more will change without someone acting), and
   `show()` draws each answer. Leaving the page stops the asking. The page keeps the group in `state.group`, which it
   may also replace itself (a sweep's Stop answers the group): the next ask reads whatever is there. */
import { api } from "./api.js";

const POLL_MS = 2000;

export function followGroup(state, show) {
  let timer = null;
  let leaving = false;
  window.addEventListener("pagehide", () => { leaving = true; clearTimeout(timer); });
  function next() {
    if (state.group.summary.settled || leaving) return;
    timer = setTimeout(async () => {
      try {
        state.group = await api("GET", `/api/groups/${state.id}/`);
        show();
      } catch {
        // A dropped request: the next one tries again (the page keeps what it showed).
      }
      next();
    }, POLL_MS);
  }
  next();
}
