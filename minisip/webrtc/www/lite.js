// minisip lite: call a number of the SIP domain from the browser over MCCP (docs/mccp.md).
// lite.html?server=HOST[:PORT]&clr=100&pwd=100&cld=101 calls at once; without cld the page logs in as
// clr and waits for its calls (they ring here and on its phones alike); without the others a form asks.
// Plain script, no build step, nothing loaded from elsewhere.
"use strict";

(function () {
  const SUBPROTOCOL = "mccp.v1";
  const DEFAULT_PORT = 5062;
  const STORE_KEY = "minisip.lite";
  const GATHER_LIMIT_MS = 3000; // the server is ICE-lite: host candidates are enough, do not wait long
  const DTMF_DURATION = 100;
  const DTMF_GAP = 70;

  const $ = (id) => document.getElementById(id);
  const ui = {
    setup: $("setup"), server: $("server"), clr: $("clr"), pwd: $("pwd"), cld: $("cld"),
    phone: $("phone"), who: $("who"), status: $("status"), timer: $("timer"), notice: $("notice"),
    pad: $("pad"), sent: $("sent"), mute: $("mute"), hangup: $("hangup"), again: $("again"),
    change: $("change"), accept: $("accept"), acceptLink: $("accept-link"), remote: $("remote"),
    wait: $("wait"), line: $("line"), answer: $("answer"), decline: $("decline"), stop: $("stop"),
  };

  let params = null;   // {server, clr, pwd, cld} of the current or last call
  let call = null;     // the current call, or null
  let line = null;     // the connection logged in and waiting for calls, or null
  let retryDelay = 1000; // after a lost line, the next login attempt waits this long (doubling to 30 s)

  // --- the address of the server ---

  // "host", "host:port", "[v6]" or "[v6]:port" -> "host:port" (IPv6 in brackets); null if unusable.
  function hostPort(server) {
    const text = (server || "").trim().replace(/^(wss|https):\/\//i, "").replace(/\/.*$/, "");
    const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)(?::(\d{1,5}))?$/.exec(text);
    if (!match) {
      if (/^[0-9A-Fa-f:]+$/.test(text) && text.includes(":")) return "[" + text + "]:" + DEFAULT_PORT;
      return null;
    }
    const port = match[2] ? Number(match[2]) : DEFAULT_PORT;
    if (port < 1 || port > 65535) return null;
    return match[1] + ":" + port;
  }

  function defaultServer() {
    // Served by minisip itself: the same host and port.
    return location.protocol === "https:" ? location.host : "";
  }

  // --- the page's two faces ---

  function showForm(message) {
    stopTimer();
    const saved = load();
    ui.server.value = (params && params.server) || saved.server || defaultServer();
    ui.clr.value = (params && params.clr) || saved.clr || "";
    ui.cld.value = (params && params.cld) || saved.cld || "";
    ui.pwd.value = (params && params.pwd) || "";
    ui.phone.hidden = true;
    ui.setup.hidden = false;
    notice(message);
    (ui.server.value ? (ui.clr.value ? (ui.pwd.value ? ui.cld : ui.pwd) : ui.clr) : ui.server).focus();
  }

  function load() {
    try {
      return JSON.parse(localStorage.getItem(STORE_KEY) || "{}") || {};
    } catch (e) {
      return {};
    }
  }

  function save(p) {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify({ server: p.server, clr: p.clr, cld: p.cld }));
    } catch (e) {
      // storage may be disabled (private windows, file pages in some browsers): the form still works
    }
  }

  function setStatus(text, kind) {
    ui.status.textContent = text;
    ui.status.className = "status" + (kind ? " " + kind : "");
    document.title = text + " \u2013 minisip lite";
  }

  function notice(text) {
    ui.notice.textContent = text || "";
    ui.notice.hidden = !text;
  }

  function showInCall(active) {
    ui.setup.hidden = true;
    ui.phone.hidden = false;
    ui.hangup.hidden = !active;
    ui.mute.hidden = !active;
    ui.again.hidden = active;
    ui.change.hidden = active;
    ui.answer.hidden = true;
    ui.decline.hidden = true;
    if (active) {
      ui.pad.hidden = true;
      ui.sent.textContent = "";
      ui.accept.hidden = true;
      ui.mute.setAttribute("aria-pressed", "false");
      ui.mute.textContent = "Mute";
    }
  }

  // --- the timer ---

  let timerHandle = null;

  function startTimer() {
    const begin = Date.now();
    ui.timer.hidden = false;
    const tick = () => {
      const s = Math.floor((Date.now() - begin) / 1000);
      const h = Math.floor(s / 3600);
      const mm = String(Math.floor((s % 3600) / 60));
      const ss = String(s % 60).padStart(2, "0");
      ui.timer.textContent = h ? h + ":" + mm.padStart(2, "0") + ":" + ss : mm + ":" + ss;
    };
    tick();
    timerHandle = setInterval(tick, 1000);
  }

  function stopTimer() {
    if (timerHandle !== null) clearInterval(timerHandle);
    timerHandle = null;
  }

  // --- a call ---

  function newCallId() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return "c" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function startCall(p) {
    const address = hostPort(p.server);
    params = p;
    notice("");
    ui.timer.hidden = true;
    showInCall(true);
    ui.who.textContent = p.clr + " \u2192 " + p.cld;
    if (!address) {
      end("Not a server address: " + p.server);
      return;
    }
    ui.acceptLink.href = "https://" + address + "/";
    const c = {
      id: newCallId(), address: address, ws: null, pc: null, stream: null,
      state: "starting", answered: false, ended: false,
    };
    call = c;
    setStatus("Calling\u2026");

    try {
      c.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (e) {
      end("No microphone: " + (e && e.message ? e.message : e));
      return;
    }
    if (c.ended) return;

    c.pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
    c.stream.getAudioTracks().forEach((track) => c.pc.addTrack(track, c.stream));
    c.pc.ontrack = (event) => {
      ui.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    c.pc.onconnectionstatechange = () => {
      if (call === c && c.pc.connectionState === "failed") hangUp("Media connection failed", "media failed");
    };

    c.ws = new WebSocket("wss://" + address + "/mccp", SUBPROTOCOL);
    const opened = new Promise((resolve, reject) => {
      c.ws.onopen = resolve;
      c.ws.onerror = () => reject(new Error("cannot connect"));
    });
    opened.catch(() => {}); // awaited below; this only keeps the console free of "uncaught" noise
    c.ws.onmessage = (event) => onMessage(c, event.data);
    c.ws.onclose = (event) => onClose(c, event);

    let offer;
    try {
      await c.pc.setLocalDescription(await c.pc.createOffer({ offerToReceiveAudio: true }));
      await gathered(c.pc);
      offer = c.pc.localDescription.sdp;
      await opened;
    } catch (e) {
      if (!c.ended) end("Cannot reach the server at " + address, true);
      return;
    }
    if (c.ended) return;
    if (c.ws.protocol !== SUBPROTOCOL) {
      end("The server does not speak " + SUBPROTOCOL);
      return;
    }
    send(c, { op: "call", call: c.id, caller: p.clr, password: p.pwd, callee: p.cld, sdp: offer });
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, GATHER_LIMIT_MS);
    });
  }

  function send(c, message) {
    if (c.ws && c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(message));
  }

  async function onMessage(c, data) {
    if (call !== c || c.ended) return;
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (!m || typeof m !== "object") return;
    if (m.op === "error") {
      // An error names a frame we sent; for our call before it started (e.g. busy) it ends the attempt.
      if (c.state === "starting" && (m.call === c.id || m.call === undefined)) {
        end("Refused: " + (m.reason || m.code));
      } else {
        notice("Server: " + (m.reason || m.code));
      }
      return;
    }
    if (m.call !== c.id) return;
    try {
      if (m.op === "progress") {
        if (m.state === "trying") {
          c.state = "trying";
          setStatus("Calling\u2026");
        } else if (m.state === "ringing") {
          c.state = "ringing";
          setStatus("Ringing\u2026");
        } else if (m.state === "early") {
          c.state = "early";
          await c.pc.setRemoteDescription({ type: "pranswer", sdp: m.sdp });
          setStatus("Ringing\u2026 (early media)");
          ui.pad.hidden = false;
        }
      } else if (m.op === "answer") {
        await c.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
        if (c.ended) return;
        c.state = "connected";
        c.answered = true;
        setStatus("Connected", "connected");
        ui.pad.hidden = false;
        startTimer();
      } else if (m.op === "hangup") {
        c.state = "ended";
        if (c.incoming && !c.answered) {
          end("Missed call from " + c.from + (m.status && m.status !== 487 ? " (" + m.status + ")" : ""));
        } else {
          end(describe(m.status, m.reason, c.answered));
        }
        close(c, 1000);
      }
    } catch (e) {
      hangUp("Media setup failed: " + (e && e.message ? e.message : e), "media setup failed");
    }
  }

  function describe(status, reason, answered) {
    if (answered && (status === 200 || status === undefined)) return "Call ended" + (reason ? ": " + reason : "");
    const words = {
      403: "Refused: wrong number or password", 404: "Number not found", 408: "No answer",
      480: "Not available", 486: "Busy", 487: "Cancelled", 488: "Media not acceptable",
      503: "Service unavailable", 603: "Declined",
    };
    const base = words[status] || (status ? "Call failed" : "Call ended");
    return base + (status ? " (" + status + (reason ? " " + reason : "") + ")" : reason ? ": " + reason : "");
  }

  function onClose(c, event) {
    if (call !== c || c.ended) return;
    if (c.state === "starting" && !event.wasClean) {
      end("Cannot reach the server at " + c.address, true);
    } else {
      end("Connection lost" + (event.code && event.code !== 1000 ? " (" + event.code + (event.reason ? " " + event.reason : "") + ")" : ""));
    }
  }

  // The user hangs up (or the media failed): tell the server, then end here.
  function hangUp(text, reason) {
    const c = call;
    if (!c || c.ended) return;
    send(c, { op: "hangup", call: c.id, reason: reason || "hung up" });
    end(text || "You hung up");
    close(c, 1000);
  }

  function close(c, code) {
    if (c.incoming) return; // the waiting line's connection outlives its calls
    if (c.ws && c.ws.readyState <= WebSocket.OPEN) {
      try {
        c.ws.close(code);
      } catch (e) {
        // already closing
      }
    }
  }

  function end(text, unreachable) {
    stopRinging();
    const c = call;
    if (c) {
      c.ended = true;
      if (c.pc) c.pc.close();
      if (c.stream) c.stream.getTracks().forEach((t) => t.stop());
      if (c.ws && c.ws.readyState === WebSocket.CONNECTING) close(c, 1000);
    }
    stopTimer();
    ui.remote.srcObject = null;
    setStatus(text, "ended");
    showInCall(false);
    ui.pad.hidden = true;
    // A page served by that very server has accepted its certificate already; elsewhere it may not have.
    const servedByIt = c && location.protocol === "https:" && location.host === c.address;
    ui.accept.hidden = !unreachable || !!servedByIt;
    if (line) {
      ui.again.hidden = true;
      ui.change.hidden = true;
    }
    showLine();
  }

  // --- waiting for calls: logged in as the extension, the page rings like its phones ---

  function showLine() {
    ui.line.hidden = !line;
    ui.line.textContent = !line ? "" : line.state === "waiting" ? "Waiting for calls as " + line.user
      : line.state === "reconnecting" ? "Reconnecting as " + line.user + "\u2026"
        : "Logging in as " + line.user + "\u2026";
    ui.stop.hidden = !line || !!(call && !call.ended);
  }

  function wait(p) {
    const address = hostPort(p.server);
    params = p;
    notice("");
    stopLine();
    if (!address) {
      showForm("Not a server address: " + p.server);
      return;
    }
    ui.acceptLink.href = "https://" + address + "/";
    const l = { address: address, user: p.clr, ws: null, state: "login" };
    line = l;
    call = null;
    showInCall(false);
    ui.again.hidden = true;
    ui.change.hidden = true;
    ui.accept.hidden = true;
    ui.timer.hidden = true;
    ui.who.textContent = "";
    setStatus("Connecting\u2026");
    showLine();
    l.ws = new WebSocket("wss://" + address + "/mccp", SUBPROTOCOL);
    l.ws.onopen = () => {
      if (line !== l) return;
      if (l.ws.protocol !== SUBPROTOCOL) {
        endLine("The server does not speak " + SUBPROTOCOL);
        return;
      }
      l.ws.send(JSON.stringify({ op: "login", user: p.clr, password: p.pwd }));
    };
    l.ws.onmessage = (event) => { if (line === l) onLineMessage(l, event.data); };
    l.ws.onclose = (event) => {
      if (line !== l) return;
      if (l.state === "waiting") {
        // Logged in before (the server restarted, the network dropped): log in again, backing off.
        if (call && call.incoming && !call.ended) end("Connection lost");
        l.state = "reconnecting";
        setStatus("Connection lost: reconnecting\u2026", "ended");
        showLine();
        const delay = retryDelay;
        retryDelay = Math.min(2 * retryDelay, 30000);
        l.retry = setTimeout(() => { if (line === l) wait(params); }, delay);
        return;
      }
      const unreachable = l.state === "login" && !event.wasClean;
      endLine(unreachable ? "Cannot reach the server at " + address : "Connection lost", unreachable);
    };
  }

  function onLineMessage(l, data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (!m || typeof m !== "object") return;
    const c = call && call.incoming && !call.ended ? call : null;
    if (m.op === "registered") {
      l.state = "waiting";
      retryDelay = 1000;
      if (!c) setStatus("Waiting for calls");
      showLine();
    } else if (m.op === "error" && l.state === "login") {
      endLine(m.code === "refused" ? "Refused: wrong number or password" : "Refused: " + (m.reason || m.code));
    } else if (m.op === "incoming") {
      ring(l, m);
    } else if (c && (m.op === "error" || m.call === c.id)) {
      onMessage(c, data);
    }
  }

  // A ring tone made here (no sound file to load): 440 + 480 Hz, 2 s on, 4 s off, for up to 3 minutes.
  let ringer = null;

  function startRinging() {
    stopRinging();
    try {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return;
      const ctx = new Context();
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(ctx.destination);
      [440, 480].forEach((f) => {
        const osc = ctx.createOscillator();
        osc.frequency.value = f;
        osc.connect(gain);
        osc.start();
      });
      for (let i = 0, t = ctx.currentTime; i < 30; i++) {
        gain.gain.setValueAtTime(0.08, t + 6 * i);
        gain.gain.setValueAtTime(0, t + 6 * i + 2);
      }
      ringer = ctx;
    } catch (e) {
      ringer = null; // no audio output, or the browser refused it without a click: the page still shows the call
    }
  }

  function stopRinging() {
    const ctx = ringer;
    ringer = null;
    if (ctx) ctx.close().catch(() => {});
  }

  function ring(l, m) {
    const c = {
      id: m.call, address: l.address, ws: l.ws, pc: null, stream: null, state: "incoming",
      answered: false, ended: false, incoming: true, offer: m.sdp,
      from: m.name ? m.name + " (" + m.caller + ")" : m.caller,
    };
    call = c;
    notice("");
    ui.timer.hidden = true;
    showInCall(true);
    ui.hangup.hidden = true;
    ui.mute.hidden = true;
    ui.answer.hidden = false;
    ui.decline.hidden = false;
    ui.who.textContent = "From " + c.from;
    setStatus("Incoming call\u2026", "ringing");
    showLine();
    startRinging();
  }

  // An incoming call this page cannot answer after all: the server hears why, the user reads it.
  function refuseAnswer(c, status, reason, text, e) {
    if (c.ended) return;
    send(c, { op: "hangup", call: c.id, status: status, reason: reason });
    end(text + ": " + (e && e.message ? e.message : e));
  }

  async function answerCall() {
    const c = call;
    if (!c || !c.incoming || c.state !== "incoming") return;
    c.state = "answering";
    stopRinging();
    ui.answer.hidden = true;
    ui.decline.hidden = true;
    ui.hangup.hidden = false;
    setStatus("Connecting\u2026");
    try {
      c.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (e) {
      refuseAnswer(c, 480, "no microphone", "No microphone", e);
      return;
    }
    if (c.ended) return;
    // The offer comes from a SIP phone through the relay: one audio stream and no BUNDLE group, which
    // max-bundle would refuse; rtcp-mux is always offered.
    c.pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "balanced", rtcpMuxPolicy: "require" });
    c.pc.ontrack = (event) => {
      ui.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    c.pc.onconnectionstatechange = () => {
      if (call === c && c.pc.connectionState === "failed") hangUp("Media connection failed", "media failed");
    };
    if (!c.offer) {
      // The caller made no offer (SIP late offer): our answer carries our offer, the server's answer follows.
      try {
        c.stream.getAudioTracks().forEach((track) => c.pc.addTrack(track, c.stream));
        await c.pc.setLocalDescription(await c.pc.createOffer({ offerToReceiveAudio: true }));
        await gathered(c.pc);
      } catch (e) {
        refuseAnswer(c, 488, "media setup failed", "Media setup failed", e);
        return;
      }
      if (c.ended) return;
      ui.mute.hidden = false;
      send(c, { op: "answer", call: c.id, sdp: c.pc.localDescription.sdp });
      return; // "answer" from the server completes it (onMessage)
    }
    try {
      await c.pc.setRemoteDescription({ type: "offer", sdp: c.offer });
      // the offer made an audio transceiver: our microphone is what it sends
      const track = c.stream.getAudioTracks()[0];
      const transceiver = c.pc.getTransceivers().find((t) => t.receiver.track && t.receiver.track.kind === "audio");
      if (transceiver && track) {
        await transceiver.sender.replaceTrack(track);
        transceiver.sender.setStreams && transceiver.sender.setStreams(c.stream);
        transceiver.direction = "sendrecv";
      } else if (track) {
        c.pc.addTrack(track, c.stream);
      }
      await c.pc.setLocalDescription(await c.pc.createAnswer());
      await gathered(c.pc);
    } catch (e) {
      refuseAnswer(c, 488, "media setup failed", "Media setup failed", e);
      return;
    }
    if (c.ended) return;
    send(c, { op: "answer", call: c.id, sdp: c.pc.localDescription.sdp });
    c.state = "connected";
    c.answered = true;
    setStatus("Connected", "connected");
    ui.pad.hidden = false;
    ui.mute.hidden = false;
    startTimer();
  }

  function declineCall() {
    const c = call;
    if (!c || !c.incoming || c.ended || c.state !== "incoming") return;
    send(c, { op: "hangup", call: c.id, status: 603, reason: "declined" });
    end("Declined the call from " + c.from);
  }

  function stopLine() {
    const l = line;
    line = null;
    if (l && l.retry) clearTimeout(l.retry);
    if (l && l.ws && l.ws.readyState <= WebSocket.OPEN) {
      try {
        l.ws.close(1000);
      } catch (e) {
        // already closing
      }
    }
  }

  // The waiting line is over (refused, lost, or the user stopped): its call, if any, ends with it.
  function endLine(text, unreachable) {
    stopLine();
    if (call && call.incoming && !call.ended) call.ended = true;
    end(text, unreachable);
    ui.again.textContent = "Wait again";
  }

  // --- DTMF and mute ---

  function dtmf(digit) {
    const c = call;
    if (!c || c.ended || !(c.state === "connected" || c.state === "early")) return;
    const sender = c.pc && c.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
    if (sender && sender.dtmf && sender.dtmf.canInsertDTMF) {
      // RFC 4733 events in the media; the server passes them to the other side.
      sender.dtmf.insertDTMF(digit, DTMF_DURATION, DTMF_GAP);
    } else {
      send(c, { op: "dtmf", call: c.id, digits: digit, duration: DTMF_DURATION });
    }
    ui.sent.textContent = (ui.sent.textContent + digit).slice(-24);
  }

  function toggleMute() {
    const c = call;
    if (!c || !c.stream) return;
    const muted = ui.mute.getAttribute("aria-pressed") !== "true";
    c.stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
    ui.mute.setAttribute("aria-pressed", String(muted));
    ui.mute.textContent = muted ? "Unmute" : "Mute";
  }

  // --- wiring ---

  ui.setup.addEventListener("submit", (event) => {
    event.preventDefault();
    const p = { server: ui.server.value.trim(), clr: ui.clr.value.trim(), pwd: ui.pwd.value, cld: ui.cld.value.trim() };
    if (!hostPort(p.server)) {
      notice("Not a server address: " + p.server);
      ui.server.focus();
      return;
    }
    save(p);
    startCall(p);
  });
  ui.hangup.addEventListener("click", () => hangUp());
  ui.mute.addEventListener("click", toggleMute);
  ui.again.addEventListener("click", () => {
    if (params && params.waiting) wait(params);
    else if (params) startCall(params);
  });
  ui.wait.addEventListener("click", () => {
    const p = {
      server: ui.server.value.trim(), clr: ui.clr.value.trim(), pwd: ui.pwd.value, cld: ui.cld.value.trim(),
      waiting: true,
    };
    if (!hostPort(p.server)) {
      notice("Not a server address: " + p.server);
      ui.server.focus();
      return;
    }
    if (!p.clr) {
      notice("Your number is needed to wait for its calls");
      ui.clr.focus();
      return;
    }
    save(p);
    wait(p);
  });
  ui.answer.addEventListener("click", answerCall);
  ui.decline.addEventListener("click", declineCall);
  ui.stop.addEventListener("click", () => endLine("Stopped waiting for calls"));
  ui.change.addEventListener("click", () => showForm());
  ui.pad.addEventListener("click", (event) => {
    const digit = event.target && event.target.getAttribute && event.target.getAttribute("data-digit");
    if (digit) dtmf(digit);
  });
  document.addEventListener("keydown", (event) => {
    if (ui.pad.hidden || event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[0-9*#]$/.test(event.key)) dtmf(event.key);
  });
  window.addEventListener("pagehide", () => {
    const c = call;
    if (c && !c.ended) {
      send(c, { op: "hangup", call: c.id, reason: "page closed" });
      close(c, 1001);
    }
    stopLine();
  });

  // Start: with the parameters, call at once (and take the password out of the address bar).
  const q = new URLSearchParams(location.search);
  const given = { server: q.get("server") || "", clr: q.get("clr") || "", pwd: q.get("pwd") || "", cld: q.get("cld") || "" };
  const hasPassword = q.has("pwd");
  if (hasPassword && history.replaceState) {
    q.delete("pwd");
    const rest = q.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  // pwd must be given (it may be empty: pwd=); without it the form asks for it.
  if ((given.server || defaultServer()) && given.clr && given.cld && hasPassword) {
    startCall({ server: given.server || defaultServer(), clr: given.clr, pwd: given.pwd, cld: given.cld });
  } else if ((given.server || defaultServer()) && given.clr && hasPassword) {
    wait({ server: given.server || defaultServer(), clr: given.clr, pwd: given.pwd, cld: "", waiting: true });
  } else {
    params = given.server || given.clr || given.cld ? given : null;
    showForm();
  }
})();
