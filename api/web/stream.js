// A run's events (`GET v1/{id}/events`) read from a streamed fetch(): an EventSource cannot
// send the Authorization header. Reconnects with Last-Event-ID until the `end` event.
import { V1, authHeaders, checkUnauthorized, sleep } from "./core.js";

// The Server-Sent Events in `text`: complete events, and what is left of an unfinished one.
export function parseEvents(text) {
  const events = [];
  const blocks = text.split("\n\n");
  const rest = blocks.pop();
  for (const block of blocks) {
    const event = { id: null, event: "message", data: [] };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue; // a comment: `: ping`
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") event.id = value;
      else if (field === "event") event.event = value;
      else if (field === "data") event.data.push(value);
    }
    if (event.data.length || event.id !== null) events.push({ ...event, data: event.data.join("\n") });
  }
  return { events, rest };
}

// Calls onEvent(kind, data) for each event until the run ends or `signal` aborts; onState
// tells the connection's state ("live", "reconnecting", or an error message).
export async function followRun(id, { signal, onEvent, onState }) {
  let lastId = null;
  let ended = false;
  let pause = 500;
  while (!ended && !signal.aborted) {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    try {
      const response = await fetch(`${V1}/${encodeURIComponent(id)}/events`, {
        headers, signal, cache: "no-store",
      });
      await checkUnauthorized(response);
      onState("live");
      pause = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        // the server ends lines with CRLF: normalise all but a CR that may start a pair
        const held = buffer.endsWith("\r") ? "\r" : "";
        buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n");
        const { events, rest } = parseEvents(buffer);
        buffer = rest + held;
        for (const event of events) {
          if (event.id !== null) lastId = event.id;
          let data = null;
          try { data = JSON.parse(event.data); } catch (_) { data = event.data; }
          if (event.event === "end") ended = true;
          onEvent(event.event, data);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error.status && error.status < 500 && error.status !== 429) {
        onState(error.message);
        return;
      }
    }
    if (!ended && !signal.aborted) {
      onState("reconnecting");
      await sleep(pause, signal);
      pause = Math.min(pause * 2, 10000);
    }
  }
}
