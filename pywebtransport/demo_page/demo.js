// The pywebtransport demo page (served by `python -m pywebtransport demo`).
//
// On load it connects to the demo's /echo route with the certificate hash the server
// injected into index.html, then takes a short tour that uses the same functions as the
// buttons: the draft the server negotiated (read from /stats), a bidi echo of the text
// box, 10 datagrams, a uni-stream round trip. It POSTs the tour's result as JSON to
// /report (the demo prints it as a BROWSER line) and stays connected for the buttons.
// With `#close=CODE,REASON` in the URL it also closes the session with that code and
// reason after the tour and reports what `transport.closed` resolved with.
"use strict";

const config = JSON.parse(document.getElementById("demo-config").textContent);
const certHash = Uint8Array.from(config.certHash.match(/../g), (h) => parseInt(h, 16));
const enc = new TextEncoder();
const dec = new TextDecoder();
const $ = (id) => document.getElementById(id);

let transport = null;
let datagramWriter = null;
const counters = { sent: 0, received: 0 };
let uniWaiters = [];

function log(text) {
  const line = `${new Date().toISOString().slice(11, 23)}  ${text}\n`;
  $("log").textContent += line;
  $("log").scrollTop = $("log").scrollHeight;
  console.log(`demo: ${text}`);
}

function describe(err) {
  const text = `${err && err.name}: ${err && err.message}`;
  if (err && "source" in err) return `${text} (source ${err.source}, code ${err.streamErrorCode})`;
  return text;
}

function setState(text, cls) {
  $("state").textContent = text;
  $("state").className = cls || "";
}

function limit(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function readAll(readable) {
  const reader = readable.getReader();
  const parts = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.byteLength; }
  return out;
}

function open(path) {
  return new WebTransport(config.server + path, {
    serverCertificateHashes: [{ algorithm: "sha-256", value: certHash }],
  });
}

// -------------------------------------------------------------------- the session

async function connect() {
  setState("connecting…");
  counters.sent = counters.received = 0;
  showCounters();
  const wt = open(config.echoPath);
  transport = wt;
  wt.closed.then(
    (info) => closedWith(wt, { closeCode: info.closeCode, reason: info.reason }),
    (err) => closedWith(wt, { error: describe(err) }),
  );
  await wt.ready;
  setState("connected", "connected");
  log(`connected to ${config.server}${config.echoPath}`);
  const dg = wt.datagrams;
  if ("incomingHighWaterMark" in dg) dg.incomingHighWaterMark = 100;
  datagramWriter = (typeof dg.createWritable === "function" ? dg.createWritable() : dg.writable).getWriter();
  $("max-datagram").textContent = `${dg.maxDatagramSize} bytes`;
  readDatagrams(wt);
  readUniStreams(wt);
  return wt;
}

function closedWith(wt, info) {
  if (wt !== transport) return;
  const text = info.error ? `abruptly: ${info.error}` : `code ${info.closeCode}, reason "${info.reason}"`;
  $("closed").textContent = text;
  setState("closed", "closed");
  log(`session closed ${text}`);
}

async function readDraft() {
  const stats = open(config.statsPath);
  await stats.ready;
  const stream = await stats.createBidirectionalStream();
  await stream.writable.getWriter().close();
  const answer = JSON.parse(dec.decode(await readAll(stream.readable)));
  stats.close({ closeCode: 0, reason: "" });
  $("draft").textContent = answer.draft;
  log(`the server negotiated WebTransport ${answer.draft}`);
  return answer.draft;
}

// -------------------------------------------------------------------- bidi streams

async function sendBidi(text) {
  const started = performance.now();
  const stream = await transport.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  const payload = enc.encode(text);
  const writing = writer.write(payload).then(() => writer.close());
  const [echoed] = await Promise.all([readAll(stream.readable), writing]);
  const back = dec.decode(echoed);
  const ms = Math.round(performance.now() - started);
  $("bidi-echo").textContent = `"${back}" (${echoed.byteLength} bytes, ${ms} ms)`;
  log(`bidi stream: sent ${payload.byteLength} bytes, echoed ${echoed.byteLength}`);
  return { sent: payload.byteLength, received: echoed.byteLength, equal: back === text };
}

// -------------------------------------------------------------------- datagrams

function showCounters() {
  $("dg-sent").textContent = counters.sent;
  $("dg-received").textContent = counters.received;
}

async function readDatagrams(wt) {
  const reader = wt.datagrams.readable.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || wt !== transport) return;
      counters.received++;
      $("dg-last").textContent = dec.decode(value);
      showCounters();
    }
  } catch (err) {
    // the session ended
  }
}

async function sendDatagrams(count) {
  const target = counters.received + count;
  const sent = counters.sent;
  for (let i = 0; i < count; i++) {
    counters.sent++;
    showCounters();
    await datagramWriter.write(enc.encode(`datagram #${counters.sent} from the page`));
  }
  const end = performance.now() + 3000;
  while (counters.received < target && performance.now() < end) await sleep(10);
  const received = Math.min(count, counters.received - (target - count));
  log(`datagrams: sent ${counters.sent - sent}, ${received} echoed`);
  return { sent: counters.sent - sent, received };
}

// -------------------------------------------------------------------- uni streams

async function readUniStreams(wt) {
  const reader = wt.incomingUnidirectionalStreams.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || wt !== transport) return;
      const data = await readAll(value);
      const waiter = uniWaiters.shift();
      $("uni-echo").textContent = `"${dec.decode(data)}" (${data.byteLength} bytes)`;
      if (waiter) waiter(data);
    }
  } catch (err) {
    // the session ended
  }
}

async function uniRoundTrip(text) {
  const payload = enc.encode(text);
  const answer = new Promise((resolve) => uniWaiters.push(resolve));
  const stream = await transport.createUnidirectionalStream();
  const writer = stream.getWriter();
  await writer.write(payload);
  await writer.close();
  const data = await answer;
  log(`uni stream: sent ${payload.byteLength} bytes, the server's uni stream brought ${data.byteLength}`);
  return { sent: payload.byteLength, received: data.byteLength, equal: dec.decode(data) === text };
}

// -------------------------------------------------------------------- close

async function closeSession(code, reason) {
  const wt = transport;
  wt.close({ closeCode: code, reason });
  try {
    const info = await wt.closed;
    return { resolved: true, closeCode: info.closeCode, reason: info.reason };
  } catch (err) {
    return { resolved: false, error: describe(err) };
  }
}

// -------------------------------------------------------------------- buttons

function button(id, action) {
  $(id).addEventListener("click", async () => {
    try {
      await action();
    } catch (err) {
      log(`${id}: ${describe(err)}`);
    }
  });
}

button("bidi-send", () => sendBidi($("bidi-text").value));
button("dg-send-1", () => sendDatagrams(1));
button("dg-send-10", () => sendDatagrams(10));
button("uni-send", () => uniRoundTrip(`uni stream from the page at ${new Date().toISOString()}`));
button("close", () => closeSession(parseInt($("close-code").value, 10) || 0, $("close-reason").value));
button("reconnect", async () => {
  if (transport) transport.close({ closeCode: 0, reason: "reconnecting" });
  uniWaiters = [];
  $("closed").textContent = "—";
  await connect();
});

// -------------------------------------------------------------------- the tour

async function tour() {
  const result = { ok: false, steps: {}, userAgent: navigator.userAgent };
  let step = "connect";
  try {
    await limit(connect(), 10000, step);
    step = "draft";
    result.draft = await limit(readDraft(), 10000, step);
    step = "bidi";
    result.steps.bidi = await limit(sendBidi($("bidi-text").value), 10000, step);
    step = "datagrams";
    result.steps.datagrams = await limit(sendDatagrams(10), 10000, step);
    step = "uni";
    result.steps.uni = await limit(uniRoundTrip("uni stream from the page"), 10000, step);
    const close = new URLSearchParams(location.hash.slice(1)).get("close");
    if (close !== null) {
      step = "close";
      const [code, ...rest] = close.split(",");
      $("close-code").value = code;
      $("close-reason").value = rest.join(",");
      result.steps.closed = await limit(
        closeSession(parseInt(code, 10), rest.join(",")), 10000, step);
    }
    result.ok = result.steps.bidi.equal && result.steps.uni.equal
      && result.steps.datagrams.received > 0;
  } catch (err) {
    result.failedStep = step;
    result.error = describe(err);
    setState(`failed at ${step}: ${result.error}`, "failed");
    log(`${step} failed: ${result.error}`);
  }
  await fetch("/report", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(result),
  }).catch((err) => log(`report: ${describe(err)}`));
}

$("server-url").textContent = config.server + config.echoPath;
if (typeof WebTransport === "undefined") {
  setState("this browser has no WebTransport (or the page is not in a secure context)", "failed");
  fetch("/report", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ok: false, error: "no WebTransport", userAgent: navigator.userAgent }),
  });
} else {
  tour();
}
