// Chat: send a message as a job and stream its answer as it is produced. One EventSource per
// conversation, closed on the `done` or `error` event. The conversation and the answer being streamed
// (its text so far and the id of the last event it came with) are kept in sessionStorage, so a reload
// mid-answer shows what had arrived and resumes the stream right after that event: no token twice,
// none lost.

import { get, post, withQuery } from "./api.js";

const STORE = "ashao.chat";
const ENDED = new Set(["done", "failed", "cancelled", "expired"]);
const REOPEN_TRIES = 5;

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE)) ?? {};
  } catch {
    return {};
  }
}

export class Chat {
  /** `els`: the message list, composer form, prompt, tier select, state line and error line. */
  constructor(els, { onSettled }) {
    this.els = els;
    this.onSettled = onSettled;
    this.saved = load(); // {conversationId, tier, job: {id, lastEventId, text} | null}
    this.source = null;
    this.answer = null; // the <li> of the answer being streamed
    this.reopened = 0;
    if (this.saved.tier) els.tier.value = this.saved.tier;
    els.tier.addEventListener("change", () => this.save({ tier: els.tier.value }));
    els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send(els.prompt.value.trim());
    });
    els.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        els.form.requestSubmit();
      }
    });
  }

  save(changes = {}) {
    Object.assign(this.saved, changes);
    sessionStorage.setItem(STORE, JSON.stringify(this.saved));
  }

  /** Show the saved conversation; resume its answer if one was streaming when the page went away. */
  async restore() {
    const { conversationId, job } = this.saved;
    if (!conversationId) return;
    let messages;
    try {
      ({ messages } = await get(`/api/conversations/${encodeURIComponent(conversationId)}`));
    } catch (error) {
      if (error.status === 404 || error.status === 401) return this.reset();
      return this.fail(error.message);
    }
    this.clear();
    for (const m of messages) this.add(m.role, m.content, "done");
    // The answer is stored with the conversation once it is complete: if it is there, nothing to resume.
    if (job && messages.at(-1)?.role === "user") {
      this.answer = this.add("assistant", job.text, "streaming");
      this.stream(job);
    } else if (job) {
      this.save({ job: null });
    }
  }

  async send(content) {
    if (!content || this.source) return; // one answer at a time per conversation
    this.fail("");
    const tier = this.els.tier.value;
    this.busy(true);
    let sent;
    try {
      const body = { tier, content };
      if (this.saved.conversationId) body.conversationId = this.saved.conversationId;
      sent = await post("/api/chat/send", body);
    } catch (error) {
      this.busy(false);
      return this.fail(error.message);
    }
    if (!this.saved.conversationId) this.clear();
    this.els.prompt.value = "";
    this.add("user", content, "done");
    const job = { id: sent.jobId, lastEventId: "0", text: "" };
    this.save({ conversationId: sent.conversationId, tier, job });
    this.answer = this.add("assistant", "", "streaming");
    this.stream(job);
    this.onSettled();
  }

  stream(job) {
    this.busy(true);
    this.state("waiting for a worker…");
    const params = { jobId: job.id };
    if (job.lastEventId !== "0") params.lastEventId = job.lastEventId; // EventSource sends the header itself only on its own reconnects
    const source = new EventSource(withQuery("/api/chat/stream", params));
    this.source = source;
    source.onmessage = (event) => {
      if (source !== this.source) return;
      if (event.lastEventId && BigInt(event.lastEventId) <= BigInt(job.lastEventId)) return; // seen already
      const data = JSON.parse(event.data);
      if (event.lastEventId) job.lastEventId = event.lastEventId;
      if (data.type === "token") {
        job.text += data.value;
        this.answer.textContent = job.text;
        this.state("streaming");
        this.save({ job });
      } else if (data.type === "done") {
        this.finish("done", "");
      } else if (data.type === "error") {
        this.finish("error", data.message);
      }
    };
    source.onerror = () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) this.settle(job); // refused, not a dropped connection
      else this.state("reconnecting…"); // EventSource resumes by itself with Last-Event-ID
    };
  }

  /** The stream was refused (the job ended, is unknown, or the core was briefly away): ask the job. */
  async settle(job) {
    this.source?.close();
    this.source = null;
    let state = "";
    try {
      state = (await get(`/api/jobs/${encodeURIComponent(job.id)}`)).job.state;
    } catch (error) {
      return this.finish("error", error.message);
    }
    if (ENDED.has(state)) {
      this.save({ job: null });
      this.busy(false);
      this.state("");
      return this.restore(); // the stored conversation holds the complete answer
    }
    if (this.reopened++ < REOPEN_TRIES) {
      this.state("reconnecting…");
      setTimeout(() => this.stream(job), 1000);
    } else {
      this.finish("error", "the stream was lost; reload to try again");
    }
  }

  finish(state, message) {
    this.source?.close();
    this.source = null;
    this.reopened = 0;
    if (this.answer) this.answer.dataset.state = state;
    this.save({ job: null });
    this.busy(false);
    this.state("");
    this.fail(message);
    this.onSettled();
  }

  /** Start a new conversation (an answer still streaming goes on being stored with the old one). */
  reset() {
    this.source?.close();
    this.source = null;
    this.save({ conversationId: null, job: null });
    this.clear();
    this.busy(false);
    this.state("");
  }

  add(role, text, state) {
    const li = document.createElement("li");
    li.className = `message ${role}`;
    li.dataset.state = state;
    li.textContent = text;
    this.els.list.append(li);
    li.scrollIntoView({ block: "end" });
    return li;
  }

  clear() {
    this.els.list.replaceChildren();
    this.answer = null;
  }

  busy(on) {
    this.els.send.disabled = on;
  }

  state(text) {
    this.els.state.textContent = text;
  }

  fail(message) {
    this.els.error.textContent = message;
  }
}
