// A reference Twilio Media Streams handler in Node.js: the `ws` package for both sockets, fetch for HTTP.
//
// Twilio -> RTZR streaming -> an OpenAI-compatible LLM (SSE) -> TTS (pcm 24 kHz, low-passed and decimated to
// 8 kHz) -> mu-law back to Twilio. The same decisions as the Python reference handlers' call_core.py, written
// again in this language's habits: console.log for progress, console.error(message, err) for errors (no level
// word, a stack trace), a send on a closed socket dropped by `ws` without an error unless a callback asks.
//
//   RTZR_API_BASE=... RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... OPENAI_BASE_URL=... TTS_BASE_URL=... \
//       node server.js --port 8080        # stream URL: ws://127.0.0.1:8080/media
//
// MUTANT=<name> puts one bug back (the proving ground's mutants; names as in call_core.py).
"use strict";

const { execFileSync } = require("child_process");
const { WebSocket, WebSocketServer } = require("ws");

const MUTANTS = [
  "no-credential-check", "silent-refusal", "no-reconnect", "closes-after-first-final", "no-stall-watchdog",
  "resends-finalized-audio", "drops-queued-final", "answers-mid-utterance", "reply-outlives-call", "state-race",
  "swallowed-race", "send-after-close", "silent-send-after-close", "leaves-rtzr-open", "no-stream-sid",
  "binary-media", "wrong-sample-rate", "one-early-clear", "words-twice", "no-barge-in", "answers-after-hangup",
  "blocks-event-loop", "blocks-on-tts", "one-current-call", "shared-history", // show only with several calls at once
  "pcm-payload", "audio-twice", "first-sentence-only", "sentences-as-tasks", "forgets-history", "token-once",
  "long-debounce", "keeps-audio", "deaf-while-speaking",
];
const BUG = process.env.MUTANT || "";
const KEPT = []; // keeps-audio: every call's audio, both ways, kept "for a later upload" that never comes
let TOKEN = ""; // the latest RTZR token (token-once: fetched once, used for every stream of every call)
if (BUG && !MUTANTS.includes(BUG)) {
  console.log(`MUTANT=${BUG}: not one of ${MUTANTS.join(", ")}`);
  process.exit(2);
}
if (BUG !== "no-credential-check") {
  const missing = ["RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET"].filter((n) => !process.env[n]);
  if (missing.length) {
    console.log(`missing environment variable(s): ${missing.join(", ")}`);
    process.exit(2);
  }
}
const strip = (url) => url.replace(/\/+$/, "");
const RTZR = strip(process.env.RTZR_API_BASE || "https://openapi.vito.ai");
const LLM = strip(process.env.OPENAI_BASE_URL || "https://api.openai.com/v1");
const TTS = strip(process.env.TTS_BASE_URL || "https://api.openai.com/v1");
const AUTH = { Authorization: `Bearer ${process.env.OPENAI_API_KEY || ""}` };

const FRAME_MS = 20;
const STALL_MS = 2500;
const EOS_WAIT_MS = 5000;
const SYSTEM = "간결하게 한국어로 답하세요.";
const APOLOGY = "죄송합니다. 지금은 음성 인식을 사용할 수 없습니다. 잠시 후 다시 걸어 주세요.";
const calls = {}; // by call SID; the race mutants drop a call from it while its reply runs on
let currentCall = null; // one-current-call: "the call", overwritten by each call that connects
const sharedHistory = [{ role: "system", content: SYSTEM }]; // shared-history: one conversation for every call
// blocks-event-loop, blocks-on-tts: a request made synchronously (a child node that fetches it, the event loop
// waiting on it): its status and body (base64) on stdout
const FETCH_SYNC = `let d = "";
process.stdin.on("data", (c) => (d += c)).on("end", async () => {
  const { url, init } = JSON.parse(d);
  const resp = await fetch(url, init);
  const body = Buffer.from(await resp.arrayBuffer()).toString("base64");
  process.stdout.write(JSON.stringify({ status: resp.status, body }));
});`;
function fetchSync(url, init) {
  const out = JSON.parse(execFileSync(process.execPath, ["-e", FETCH_SYNC], { input: JSON.stringify({ url, init }),
                                                                              maxBuffer: 64 * 1024 * 1024 }));
  return { status: out.status, ok: out.status >= 200 && out.status < 300, body: [Buffer.from(out.body, "base64")] };
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const BUSY_TRIES = 6; // a handshake RTZR refuses as busy (429) or failing (5xx) is tried again, with backoff, this many times

// After RTZR refused a stream's handshake: the ms to wait before trying again with a fresh token, or null to give up
// (credentials refused twice, a busy service past BUSY_TRIES, or anything else). As call_core.handshake_retry.
function handshakeRetry(status, refusals, busy) {
  if (status === 401) return refusals < 2 ? 0 : null;
  if (status === 429 || status >= 500) return busy < BUSY_TRIES ? Math.min(2000, 100 * 2 ** busy) : null;
  return null;
}

// ------------------------------------------------------------------ audio
const ULAW_TO_PCM = new Int16Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const magnitude = (((u & 0x0f) << 3) + 0x84) << ((u >> 4) & 0x07);
  ULAW_TO_PCM[i] = u & 0x80 ? 0x84 - magnitude : magnitude - 0x84;
}
function pcmToUlaw(sample) {
  let x = Math.max(-32635, Math.min(32635, sample));
  const sign = x < 0 ? 0x80 : 0;
  x = Math.abs(x) + 0x84;
  const exponent = Math.floor(Math.log2(x)) - 7;
  const mantissa = (x >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}
const SPEECH_POWER = (32768 * 10 ** (-40 / 20)) ** 2;
function isSpeech(frame) {
  let power = 0;
  for (const byte of frame) power += ULAW_TO_PCM[byte] ** 2;
  return frame.length > 0 && power > SPEECH_POWER * frame.length;
}
// 24 kHz -> 8 kHz: a windowed-sinc low-pass at 3.4 kHz, then every third sample
const TAPS = (() => {
  const n = 31, fc = 3400 / 24000, taps = [];
  for (let k = 0; k < n; k++) {
    const m = k - (n - 1) / 2;
    const sinc = m === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * m) / (Math.PI * m);
    taps.push(sinc * (0.54 - 0.46 * Math.cos((2 * Math.PI * k) / (n - 1))));
  }
  const sum = taps.reduce((a, b) => a + b, 0);
  return taps.map((t) => t / sum);
})();
class Downsampler {
  constructor() { this.history = []; this.phase = 0; }
  push(samples) {
    const out = [];
    for (const s of samples) {
      this.history.push(s);
      if (this.history.length > TAPS.length) this.history.shift();
      if (this.phase++ % 3 === 0 && this.history.length === TAPS.length) {
        let acc = 0;
        for (let k = 0; k < TAPS.length; k++) acc += TAPS[k] * this.history[k];
        out.push(Math.round(acc));
      }
    }
    return out;
  }
}

// ------------------------------------------------------------------ one call
class Call {
  constructor(ws, callSid, streamSid) {
    Object.assign(this, { ws, callSid, streamSid });
    this.frames = []; // the whole call, 20 ms each
    this.base = 0; // the first frame no final has covered
    this.streamBase = 0;
    this.sent = 0;
    this.pending = []; // speech frames RTZR has not answered (stream ms at their end)
    this.pendingSince = null;
    this.heldFinals = []; // [endFrame, text] waiting for the audio after them
    // the shared-history mutant: every call's turns in the one module-level list, earlier calls' words go to the LLM
    this.history = BUG === "shared-history" ? sharedHistory : [{ role: "system", content: SYSTEM }];
    this.busy = false;
    this.queued = [];
    this.heldText = [];
    this.marks = new Set();
    this.sending = 0;
    this.markCount = 0;
    this.clearedOnce = false;
    this.ended = false;
    this.reply = null; // { abort: AbortController, done: Promise }
    this.newAudio = null;
    this.lastResult = Date.now();
    this.turns = 0;
  }

  // -------------------------------------------------------- to Twilio
  send(event, body = {}) {
    if (this.ended && BUG !== "send-after-close" && BUG !== "silent-send-after-close") return;
    const to = BUG === "one-current-call" && currentCall ? currentCall : this; // the mutant: the latest call's socket
    const message = { event, ...(BUG === "no-stream-sid" ? {} : { streamSid: to.streamSid }), ...body };
    const data = BUG === "binary-media" && event === "media" ? Buffer.from(body.media.payload, "base64") : JSON.stringify(message);
    if (BUG === "send-after-close") {
      to.ws.send(data, (err) => err && console.error(`call ${this.callSid}: send failed`, err));
    } else {
      to.ws.send(data); // on a closed socket `ws` drops it without a word (the correct handler never gets here)
    }
  }

  async speak(text, signal) {
    this.sending++;
    try {
      const init = {
        method: "POST", headers: { ...AUTH, "Content-Type": "application/json" },
        body: JSON.stringify({ model: "tts-1", voice: "alloy", input: text, response_format: "pcm" }),
      };
      const resp = BUG === "blocks-on-tts" // a synchronous request: every call of this process waits for the TTS
        ? fetchSync(`${TTS}/audio/speech`, init) : await fetch(`${TTS}/audio/speech`, { ...init, signal });
      if (!resp.ok) throw new Error(`TTS answered ${resp.status}`);
      const down = new Downsampler();
      let left = Buffer.alloc(0);
      for await (const chunk of resp.body) {
        if (BUG === "keeps-audio") KEPT.push(Buffer.from(chunk));
        const data = Buffer.concat([left, Buffer.from(chunk)]);
        const whole = data.length - (data.length % 2);
        left = data.subarray(whole);
        const samples = [];
        for (let i = 0; i < whole; i += 2) samples.push(data.readInt16LE(i));
        const out = BUG === "wrong-sample-rate" ? samples : down.push(samples);
        if (!out.length) continue;
        // the pcm-payload mutant: the 8 kHz samples as they are (16-bit little-endian), never mu-law encoded
        const audio = BUG === "pcm-payload" ? Buffer.from(Int16Array.from(out).buffer) : Buffer.from(out.map(pcmToUlaw));
        const media = { media: { payload: audio.toString("base64") } };
        this.send("media", media);
        if (BUG === "audio-twice") this.send("media", media); // the mutant: the same chunk sent again
      }
    } finally {
      this.sending--;
    }
    const name = `mk${++this.markCount}`;
    this.marks.add(name);
    this.send("mark", { mark: { name } });
  }

  // -------------------------------------------------------- replies
  ask(messages) {
    if (!messages) return;
    const abort = new AbortController();
    this.reply = { abort, done: this.answer(messages, abort.signal) };
  }

  async answer(messages, signal) {
    while (messages && !signal.aborted) {
      let said = "";
      try {
        if (BUG === "long-debounce") await sleep(2500); // the mutant: waits in case the caller goes on, answers late
        said = await this.generate(messages, signal);
      } catch (err) {
        if (signal.aborted) return;
        console.error(`call ${this.callSid}: reply failed`, err);
        try { await this.speak("죄송합니다. 다시 한 번 말씀해 주세요.", signal); } catch { return; }
      }
      if (BUG === "state-race" || BUG === "swallowed-race") {
        try {
          calls[this.callSid].turns += 1; // the report's failure 3: TypeError once the call is gone
        } catch (err) {
          if (BUG === "state-race") console.error(`call ${this.callSid}: reply bookkeeping failed`, err);
        }
      }
      if (signal.aborted) return;
      messages = this.replied(said);
    }
  }

  async generate(messages, signal) {
    if (BUG === "words-twice") { // the caller's words, already the history's last message, added again
      messages = [...messages, { role: "user", content: messages[messages.length - 1].content }];
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      const init = {
        method: "POST", headers: { ...AUTH, "Content-Type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages, stream: true }),
      };
      let resp;
      if (BUG === "blocks-event-loop") { // a synchronous request: every call of this process waits for the LLM
        resp = fetchSync(`${LLM}/chat/completions`, init);
      } else {
        resp = await fetch(`${LLM}/chat/completions`, { ...init, signal });
      }
      if (resp.status >= 500 && attempt === 0) {
        console.log(`call ${this.callSid}: LLM answered ${resp.status}, retrying`);
        continue;
      }
      if (!resp.ok) throw new Error(`LLM answered ${resp.status}`);
      let text = "", buffer = "", lines = "", spoken = 0;
      const speaking = []; // sentences-as-tasks: each sentence's speech its own promise, all awaited at the reply's end
      const say = async (sentence) => {
        if (BUG === "first-sentence-only" && spoken > 0) return; // the mutant: the rest is read and kept, never spoken
        spoken++;
        if (BUG === "sentences-as-tasks") speaking.push(this.speak(sentence, signal));
        else await this.speak(sentence, signal);
      };
      const decoder = new TextDecoder();
      try {
        for await (const chunk of resp.body) {
          lines += decoder.decode(chunk, { stream: true });
          const parts = lines.split("\n");
          lines = parts.pop();
          for (const line of parts) {
            if (!line.startsWith("data: ") || line.trim() === "data: [DONE]") continue;
            const choice = (JSON.parse(line.slice(6)).choices || [{}])[0] || {};
            const delta = (choice.delta || {}).content || "";
            text += delta;
            buffer += delta;
            const sentences = buffer.split(/(?<=[.?!])\s+/);
            buffer = sentences.pop();
            for (const sentence of sentences) if (sentence.trim()) await say(sentence);
          }
        }
        if (buffer.trim()) await say(buffer.trim());
      } finally {
        await Promise.all(speaking); // none left to reject unawaited if the LLM's stream breaks off
      }
      return text;
    }
    return "";
  }

  final(text, talksOn) {
    console.log(`call ${this.callSid}: final ${JSON.stringify(text)}${talksOn ? " (caller talks on)" : ""}`);
    if (this.ended && BUG !== "answers-after-hangup") return; // the mutant answers a final that came after the hang-up
    if (talksOn) { this.heldText.push(text); return; }
    const all = [...this.heldText, text].join(" ");
    this.heldText = [];
    if (this.busy) {
      if (BUG !== "drops-queued-final") this.queued.push(all);
      return;
    }
    this.ask(this.askWith(all));
  }

  askWith(text) {
    this.history.push({ role: "user", content: text });
    this.busy = true;
    // the forgets-history mutant: the system prompt and this turn only, as if every turn began the call
    if (BUG === "forgets-history") return [{ role: "system", content: SYSTEM }, { role: "user", content: text }];
    return this.history.map((m) => ({ ...m }));
  }

  replied(text) {
    if (text.trim()) this.history.push({ role: "assistant", content: text.trim() });
    this.busy = false;
    if (this.queued.length && !this.ended) {
      const next = this.queued.join(" ");
      this.queued = [];
      return this.askWith(next);
    }
    return null;
  }

  bargesIn(partial) {
    if (BUG === "no-barge-in") return false; // never clears, and so never cuts the reply short
    if (BUG === "one-early-clear") {
      const first = !this.clearedOnce;
      this.clearedOnce = true;
      return first;
    }
    return partial.trim() !== "" && (this.marks.size > 0 || this.sending > 0);
  }

  clear() {
    this.marks.clear();
    if (this.reply && this.busy) {
      this.reply.abort.abort();
      this.ask(this.replied(""));
    }
    this.send("clear");
  }

  // -------------------------------------------------------- recognition
  addFrame(frame) {
    this.frames.push(frame);
    this.releaseHeld(false, false);
    if (this.newAudio) this.newAudio();
  }

  releaseHeld(anotherFinal, finishing) {
    while (this.heldFinals.length) {
      const [end, text] = this.heldFinals[0];
      const probe = this.frames.slice(end + 100 / FRAME_MS, end + 300 / FRAME_MS);
      let talksOn;
      if (anotherFinal || BUG === "answers-mid-utterance") talksOn = anotherFinal && BUG !== "answers-mid-utterance";
      else if (probe.some(isSpeech)) talksOn = true;
      else if (probe.length >= 200 / FRAME_MS || finishing) talksOn = false;
      else return; // the audio that tells has not come yet
      this.heldFinals.shift();
      this.final(text, talksOn);
    }
  }

  onResult(result) {
    this.lastResult = Date.now();
    const reach = (result.start_at || 0) + (result.final ? result.duration || 0 : 0);
    this.pending = this.pending.filter((end) => end > reach);
    this.pendingSince = this.pending.length ? Date.now() : null;
    const text = ((result.alternatives || [{}])[0] || {}).text || "";
    if (!result.final) {
      if (this.bargesIn(text)) this.clear();
      this.releaseHeld(false, false);
      return;
    }
    const endFrame = this.streamBase + Math.floor(((result.start_at || 0) + (result.duration || 0)) / FRAME_MS);
    this.base = Math.max(this.base, Math.min(endFrame, this.frames.length));
    this.releaseHeld(true, false);
    if (text.trim()) this.heldFinals.push([endFrame, text.trim()]);
    // the answers-after-hangup mutant: no audio comes after the hang-up to tell, so a final then is handed on at once
    this.releaseHeld(false, BUG === "answers-after-hangup" && this.ended);
  }

  async token() {
    if (BUG === "token-once" && TOKEN) return TOKEN; // the mutant: one token per process, kept past its expire_at
    TOKEN = await this.freshToken();
    return TOKEN;
  }

  async freshToken() {
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        const [id, secret] = [process.env.RTZR_CLIENT_ID, process.env.RTZR_CLIENT_SECRET];
        if (id === undefined || secret === undefined) throw new TypeError("RTZR credentials are not set");
        const resp = await fetch(`${RTZR}/v1/authenticate`, {
          method: "POST", body: new URLSearchParams({ client_id: id, client_secret: secret }),
        });
        if ([400, 401, 403].includes(resp.status)) throw Object.assign(new Error(`token refused (${resp.status})`), { refused: true });
        if (resp.ok) return (await resp.json()).access_token;
        console.log(`call ${this.callSid}: RTZR token endpoint answered ${resp.status}, retrying`);
      } catch (err) {
        if (err.refused || err instanceof TypeError && err.message.startsWith("RTZR credentials")) throw err;
        console.log(`call ${this.callSid}: RTZR token endpoint unreachable (${err.message}), retrying`);
      }
      await sleep(Math.min(2000, 100 * 2 ** attempt));
    }
    throw Object.assign(new Error("no RTZR token"), { refused: true });
  }

  connect(token) {
    const url = RTZR.replace(/^http/, "ws") + "/v1/transcribe:streaming?sample_rate=8000&encoding=MULAW&use_itn=true";
    return new Promise((resolve, reject) => {
      const rtzr = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
      rtzr.once("open", () => resolve(rtzr));
      rtzr.once("unexpected-response", (req, res) => { rtzr.terminate(); reject(Object.assign(new Error(`RTZR answered ${res.statusCode}`), { status: res.statusCode })); });
      rtzr.once("error", reject);
    });
  }

  async recognize() {
    let refusals = 0, busy = 0, giveUpAt = null;
    for (;;) {
      const token = await this.token();
      let rtzr;
      try {
        rtzr = await this.connect(token);
      } catch (err) {
        if (!err.status) throw err;
        if (err.status === 401) refusals++; else busy++;
        const wait = handshakeRetry(err.status, refusals, busy);
        if (wait === null) throw Object.assign(err, { refused: true });
        console.log(`call ${this.callSid}: RTZR refused the stream (${err.status}), trying again`);
        await sleep(wait);
        continue;
      }
      const how = await this.converse(rtzr);
      console.log(`call ${this.callSid}: RTZR stream ${how}`);
      if (how === "finished" || how === "handler closed" || (how === "closed" && BUG === "no-reconnect")) return;
      if (this.ended) {
        giveUpAt = giveUpAt || Date.now() + EOS_WAIT_MS;
        if (Date.now() > giveUpAt) return;
      }
    }
  }

  converse(rtzr) {
    this.streamBase = BUG === "resends-finalized-audio" ? 0 : this.base;
    this.sent = 0;
    this.pending = [];
    this.pendingSince = null;
    return new Promise((resolve) => {
      let how = null, eosAt = null;
      const done = (why) => { if (!how) { how = why; clearInterval(ticker); this.newAudio = null; } };
      const pump = () => {
        if (how || rtzr.readyState !== WebSocket.OPEN) return;
        const frames = this.frames.slice(this.streamBase + this.sent);
        for (const frame of frames) {
          rtzr.send(frame);
          this.sent++;
          if (isSpeech(frame)) {
            this.pending.push(this.sent * FRAME_MS);
            if (this.pendingSince === null) this.pendingSince = Date.now();
          }
        }
        const unanswered = this.pending.length * FRAME_MS;
        if (BUG !== "no-stall-watchdog" && unanswered >= 100 && this.pendingSince !== null && Date.now() - this.pendingSince >= STALL_MS) {
          console.log(`call ${this.callSid}: RTZR stalled, reconnecting`);
          done("stalled");
          rtzr.close();
          return;
        }
        if (this.ended && eosAt === null && BUG !== "leaves-rtzr-open") {
          this.releaseHeld(false, true);
          rtzr.send("EOS");
          eosAt = Date.now();
        }
        if (eosAt !== null && Date.now() - eosAt > EOS_WAIT_MS) {
          done("finished");
          rtzr.close();
        }
      };
      const ticker = setInterval(pump, 250);
      this.newAudio = pump;
      rtzr.on("message", (data) => {
        let result;
        try {
          result = JSON.parse(data.toString());
        } catch (err) {
          result = null;
        }
        if (result === null || typeof result !== "object" || Array.isArray(result)) {
          // a message that cannot be read: skipped, as aicall does (the stream is alive all the same)
          this.lastResult = Date.now();
          console.log(`call ${this.callSid}: rtzr sent a message that is not a result: ${data.toString().slice(0, 80)}`);
          return;
        }
        this.onResult(result);
        if (result.final && BUG === "closes-after-first-final" && !this.ended && !how) {
          done("handler closed");
          rtzr.send("EOS");
        }
      });
      rtzr.on("close", (code) => {
        done(this.ended && code === 1000 ? "finished" : "closed");
        resolve(how);
      });
      rtzr.on("error", () => {});
      pump();
    });
  }

  async recognizeOrRefuse() {
    try {
      await this.recognize();
    } catch (err) {
      if (!err.refused) { // not a refusal: nobody planned for it
        console.error(`call ${this.callSid}: recognizer failed`, err);
        this.ended = true;
        this.ws.close(1011);
        return;
      }
      console.error(`call ${this.callSid}: speech recognition unavailable`, err);
      if (BUG !== "silent-refusal") {
        try {
          await this.speak(APOLOGY, undefined);
          const deadline = Date.now() + 15000;
          while (this.marks.size && Date.now() < deadline && !this.ended) await sleep(50); // until the apology's mark echoes
        } catch (spoken) { // TTS down too: the call still ends (an unhandled rejection would end every call at once)
          console.error(`call ${this.callSid}: the apology could not be spoken`, spoken);
        }
      }
      this.ended = true;
      this.ws.close(1000);
    }
  }

  hangUp() {
    console.log(`call ${this.callSid}: hung up`);
    this.ended = true;
    clearInterval(this.quietTimer);
    if (BUG === "state-race" || BUG === "swallowed-race") delete calls[this.callSid]; // the state goes, the reply runs on
    else if (this.reply && !["reply-outlives-call", "send-after-close", "silent-send-after-close"].includes(BUG)) this.reply.abort.abort();
    if (this.newAudio) this.newAudio();
  }

  start() {
    this.recognizer = this.recognizeOrRefuse();
    this.quietTimer = setInterval(() => {
      if (this.heldText.length && !this.busy && Date.now() - this.lastResult > 3000) {
        const text = this.heldText.join(" ");
        this.heldText = [];
        this.ask(this.askWith(text));
      }
    }, 500);
  }
}

// ------------------------------------------------------------------ the server
const port = Number((process.argv.indexOf("--port") > 0 && process.argv[process.argv.indexOf("--port") + 1]) || process.env.PORT || 8080);

// The stream at ws://127.0.0.1:{port}/media. `onRequest`, when given, answers the port's plain HTTP requests
// (deployed.js's voice webhook); without it they get ws's own 426.
function serve({ onRequest } = {}) {
  const http = onRequest ? require("http").createServer(onRequest) : null;
  const server = new WebSocketServer({ ...(http ? { server: http } : { host: "127.0.0.1", port }), path: "/media",
                                       maxPayload: 1 << 20 });
  server.on("connection", (ws) => onConnection(ws));
  server.on("listening", () => console.log(`listening on ws://127.0.0.1:${port}/media${BUG ? ` (mutant ${BUG})` : ""}`));
  if (http) http.listen(port, "127.0.0.1");
  return server;
}

function onConnection(ws) {
  let call = null;
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    const message = JSON.parse(data.toString());
    if (message.event === "start") {
      call = calls[message.start.callSid] = new Call(ws, message.start.callSid, message.start.streamSid);
      if (BUG === "one-current-call") currentCall = call; // the bot's sends go wherever the latest call is
      console.log(`call ${call.callSid}: started`);
      call.start();
    } else if (message.event === "media" && call) {
      let frame = Buffer.from(message.media.payload, "base64");
      // the mutant: "so the bot does not hear itself" while it replies; the caller is not heard either
      if (BUG === "deaf-while-speaking" && (call.busy || call.marks.size)) frame = Buffer.alloc(frame.length, 0xff);
      if (BUG === "keeps-audio") KEPT.push(frame);
      call.addFrame(frame);
    } else if (message.event === "mark" && call) {
      call.marks.delete(message.mark.name);
    } else if (message.event === "stop" && call && !call.ended) {
      call.hangUp();
    }
  });
  ws.on("close", async () => {
    if (!call) return;
    if (!call.ended) call.hangUp();
    await call.recognizer;
    if (BUG !== "state-race" && BUG !== "swallowed-race") delete calls[call.callSid];
    console.log(`call ${call.callSid}: ended`);
  });
}

if (require.main === module) serve();
else module.exports = { Call, serve, port }; // deployed.js: the same calls behind its own webhook
