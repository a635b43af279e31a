/* A stream of server-sent events that a page follows until the server says it has ended.

   EventSource reconnects by itself after a drop, sending the id of the last event it had
   (Last-Event-ID), so the server sends exactly what was missed. When it gives up instead (an error
   answer, such as a proxy's 502 while the server restarts), this opens a new one with that id in
   the address (?last_event_id=), after a pause that grows while the server stays away.

   Every event's data is JSON. After an "end" event the server closes the stream, and this lets
   it go instead of reconnecting. */

const FIRST_PAUSE_MS = 1000;
const LONGEST_PAUSE_MS = 30000;

/* url: the stream's address. handlers: { eventName: (data) => ... } for the events the page shows,
   and optionally end(data), called once when the server ends the stream.
   Returns { close() } to stop following it. */
export function followStream(url, handlers) {
  let source = null;
  let lastEventId = "";
  let pause = FIRST_PAUSE_MS;
  let closed = false;
  let ended = false;

  const open = () => {
    const address = lastEventId ? withParameter(url, "last_event_id", lastEventId) : url;
    source = new EventSource(address);
    source.addEventListener("open", () => { pause = FIRST_PAUSE_MS; });
    for (const name of Object.keys(handlers)) {
      if (name === "end") continue;
      source.addEventListener(name, (event) => {
        if (event.lastEventId) lastEventId = event.lastEventId;
        handlers[name](JSON.parse(event.data));
      });
    }
    source.addEventListener("end", (event) => {
      ended = true;
      // Closed once the server has closed it (the error event below), so the request ends as a
      // complete one; or soon anyway, before EventSource's own reconnection.
      setTimeout(close, 1000);
      if (handlers.end) handlers.end(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      if (ended) close();
      if (closed || source.readyState !== EventSource.CLOSED) return; // CONNECTING: EventSource retries by itself
      setTimeout(() => { if (!closed) open(); }, pause);
      pause = Math.min(pause * 2, LONGEST_PAUSE_MS);
    });
  };

  const close = () => {
    closed = true;
    if (source) source.close();
  };

  open();
  return { close };
}

function withParameter(url, name, value) {
  const address = new URL(url, window.location.href);
  address.searchParams.set(name, value);
  return address.toString();
}
