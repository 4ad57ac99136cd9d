// edgemc lab demo: joins the demo meeting from the browser over WebTransport
// and drives the signaling protocol by hand. Development tool only.
//
// Automation: window.edgemcDemo exposes join/mute/hostMute/askUnmute/leave
// and the state; the DOM exposes #status, #error, #notice,
// tr[data-participant-id] rows and #media li[data-mh-url] items.
// /lab/join?role=host&name=Alice&autojoin=1 joins on load.
//
// What a participant sees follows what they may do: only hosts get the
// host-mute buttons (not on their own row), and a host-muted participant
// gets "Ask to unmute" (an UnmuteRequest to the hosts) instead of a
// self-mute button that could not unmute them.
//
// Like a client SDK should, the page connects to the media handlers its
// JoinResponse names and reports each connection's state to edgemc
// (MediaConnectionUpdate), and when edgemc redirects it (RedirectToMc, sent
// before a drain closes the session) it reconnects to the endpoint given,
// with its correlation id and binding token and a fresh join token for the
// same user, retrying with backoff until the reconnect window passes.

import {
  ConnectionState, decodeServerMessage, encodeClientMessage, encodeMhClientMessage, ErrorCode, FrameReader, frame,
} from './proto.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const role = params.get('role') === 'host' ? 'host' : 'participant';

const state = {
  role,
  status: 'not joined',
  meetingId: '',
  selfId: '',
  roster: new Map(), // participant id -> {id, name, audioSelfMuted, ...}
  error: null, // {code, message}
  notice: '', // an unmute request, for hosts
  asked: { audio: false, video: false }, // unmute requests sent and not yet answered
  log: [], // kinds of server messages received, in order
  name: '',
  sub: '', // the join token's subject, asked for again on a reconnect
  redirect: '', // set by RedirectToMc: where to reconnect
  reconnects: 0, // successful reconnections
  media: new Map(), // media handler URL -> {state, reason}
};
let transport = null;
let writer = null;
let joining = null; // {resolve, reject} of the join under way
let joinInfo = null; // the last join-info answer (it holds the join token)
// The session binding of the last JoinResponse; kept out of state, which
// automation reads, as the token is a secret.
let binding = { correlationId: '', token: '' };
let reconnecting = false;
let reconnectWindowMs = 60000;
let mediaSessions = []; // WebTransport sessions to media handlers
let mediaGen = 0; // bumped whenever those sessions are replaced

function setStatus(s) {
  state.status = s;
  $('status').textContent = s;
}

function showError(code, message) {
  state.error = { code, message };
  const e = $('error');
  e.textContent = message ? `${code}: ${message}` : code;
  e.hidden = false;
}

function clearError() {
  state.error = null;
  $('error').hidden = true;
  $('error').textContent = '';
}

function setNotice(text) {
  state.notice = text;
  $('notice').textContent = text;
  $('notice').hidden = !text;
}

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function upsert(p) {
  const prev = state.roster.get(p.participantId) ?? {
    id: p.participantId, name: '', audioSelfMuted: false, videoSelfMuted: false,
    audioHostMuted: false, videoHostMuted: false,
  };
  state.roster.set(p.participantId, { ...prev, ...(p.name !== undefined ? { name: p.name } : {}) });
}

function muteLabel(self, host) {
  return host ? 'host-muted' : self ? 'muted' : 'on';
}

function renderRoster() {
  const rows = [...state.roster.values()].map((p) => {
    const tr = document.createElement('tr');
    tr.dataset.participantId = p.id;
    tr.dataset.audio = muteLabel(p.audioSelfMuted, p.audioHostMuted);
    tr.dataset.video = muteLabel(p.videoSelfMuted, p.videoHostMuted);
    const cell = (label, text) => {
      const td = document.createElement('td');
      td.dataset.label = label;
      td.textContent = text;
      tr.append(td);
      return td;
    };
    cell('Name', p.name + (p.id === state.selfId ? ' (you)' : '')).className = 'name';
    const id = document.createElement('span');
    id.className = 'mono';
    id.textContent = p.id;
    cell('Participant', '').append(id);
    cell('Audio', tr.dataset.audio);
    cell('Video', tr.dataset.video);
    if (role !== 'host') return tr;
    const actions = document.createElement('span');
    actions.className = 'actions';
    cell('Host mute', '').append(actions);
    if (p.id === state.selfId) return tr; // a host does not host-mute themself
    for (const kind of ['audio', 'video']) {
      const muted = kind === 'audio' ? p.audioHostMuted : p.videoHostMuted;
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `host-mute-${kind}`;
      b.textContent = `${muted ? 'Unmute' : 'Mute'} ${kind}`;
      b.setAttribute('aria-pressed', String(muted));
      b.addEventListener('click', () => hostMute(p.id, kind === 'audio' ? !muted : p.audioHostMuted,
        kind === 'video' ? !muted : p.videoHostMuted));
      actions.append(b);
    }
    return tr;
  });
  $('roster').tBodies[0].replaceChildren(...rows);
  $('roster-count').textContent = `(${rows.length})`;
  for (const th of document.querySelectorAll('.host-only')) th.hidden = role !== 'host';
  const self = state.roster.get(state.selfId);
  for (const kind of ['audio', 'video']) {
    const muted = !!self?.[`${kind}SelfMuted`];
    const hostMuted = !!self?.[`${kind}HostMuted`];
    if (!hostMuted) state.asked[kind] = false;
    const b = $(`mute-${kind}`);
    b.hidden = hostMuted;
    b.setAttribute('aria-pressed', String(muted));
    b.textContent = `${muted ? 'Unmute' : 'Mute'} ${kind}`;
    const ask = $(`ask-${kind}`);
    ask.hidden = !hostMuted;
    ask.disabled = state.asked[kind];
    ask.textContent = state.asked[kind] ? `Asked to unmute ${kind}` : `Ask to unmute ${kind}`;
  }
}

// unmuteRequester names who may have sent an unmute request (it carries no
// participant id): the participants host-muted for what it asks.
function unmuteRequester(r) {
  const who = [...state.roster.values()].filter((p) => p.id !== state.selfId
    && ((r.requestAudio && p.audioHostMuted) || (r.requestVideo && p.videoHostMuted)));
  return who.length === 1 ? who[0].name : 'A host-muted participant';
}

async function send(msg) {
  if (!writer) throw new Error('not joined');
  await writer.write(frame(encodeClientMessage(msg)));
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

function certOpts(hex) {
  return hex ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: hexToBytes(hex) }] } : {};
}

function renderMedia() {
  const items = [...state.media].map(([url, m]) => {
    const li = document.createElement('li');
    li.dataset.mhUrl = url;
    li.dataset.state = m.state;
    li.textContent = `${url}: ${m.state.toLowerCase()}${m.reason ? ` (${m.reason})` : ''}`;
    return li;
  });
  $('media').replaceChildren(...items);
  $('media-none').hidden = items.length > 0;
}

// reportMedia records a media handler connection's state and tells edgemc.
function reportMedia(gen, url, st, reason = '') {
  if (gen !== mediaGen) return; // a connection of an earlier session
  state.media.set(url, { state: st, reason });
  renderMedia();
  const now = Date.now();
  const status = {
    mhUrl: url, state: ConnectionState[st],
    observedAt: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 },
  };
  if (reason) status.failureReason = reason.slice(0, 200);
  send({ mediaConnectionUpdate: { statuses: [status] } }).catch(() => {});
}

// connectMedia opens a session to each media handler with the join token,
// as a media client would, and reports how each goes.
function connectMedia(urls, info) {
  closeMedia();
  const gen = mediaGen;
  for (const url of urls) {
    (async () => {
      try {
        const t = new WebTransport(url, certOpts(info.cert_sha256));
        mediaSessions.push(t);
        await t.ready;
        const s = await t.createBidirectionalStream();
        const w = s.writable.getWriter();
        await w.write(frame(encodeMhClientMessage({ connectRequest: { joinToken: info.token } })));
        reportMedia(gen, url, 'CONNECTED');
        t.closed.then(() => reportMedia(gen, url, 'DISCONNECTED'),
          (e) => reportMedia(gen, url, 'DISCONNECTED', String(e.message ?? e)));
      } catch (e) {
        reportMedia(gen, url, 'FAILED', String(e.message ?? e));
      }
    })();
  }
}

function closeMedia() {
  mediaGen++;
  for (const t of mediaSessions) {
    try { t.close(); } catch { /* already closed */ }
  }
  mediaSessions = [];
  state.media.clear();
  renderMedia();
}

function handle(m) {
  state.log.push(m.kind ?? 'unknown');
  switch (m.kind) {
    case 'joinResponse': {
      const j = m.joinResponse;
      state.roster.clear();
      state.selfId = j.participantId;
      binding = { correlationId: j.correlationId, token: j.bindingToken };
      for (const p of j.existingParticipants) upsert(p);
      upsert({ participantId: j.participantId, name: state.name });
      setStatus('joined');
      $('controls').hidden = false;
      joining?.resolve();
      joining = null;
      connectMedia(j.mediaServers.map((s) => s.mediaHandlerUrl), joinInfo);
      break;
    }
    case 'participantJoined':
      if (m.participantJoined.participant) upsert(m.participantJoined.participant);
      break;
    case 'participantLeft':
      state.roster.delete(m.participantLeft.participantId);
      break;
    case 'participantMuteUpdate': {
      const u = m.participantMuteUpdate;
      upsert({ participantId: u.participantId });
      Object.assign(state.roster.get(u.participantId), {
        audioSelfMuted: u.audioSelfMuted, videoSelfMuted: u.videoSelfMuted,
        audioHostMuted: u.audioHostMuted, videoHostMuted: u.videoHostMuted,
      });
      break;
    }
    case 'error':
      if (joining) { // the join was refused; a reconnect tries again
        joining.reject(new Error(`${ErrorCode[m.error.code] ?? m.error.code}: ${m.error.message}`));
        joining = null;
        if (reconnecting) break;
      }
      showError(ErrorCode[m.error.code] ?? `error ${m.error.code}`, m.error.message);
      break;
    case 'unmuteRequest': {
      const r = m.unmuteRequest;
      const what = [r.requestAudio && 'audio', r.requestVideo && 'video'].filter(Boolean).join(' and ');
      setNotice(`${unmuteRequester(r)} asks to be unmuted (${what}): use Unmute on their row to allow it.`);
      break;
    }
    case 'unmuteResponse':
      state.asked = { audio: false, video: false };
      setStatus(`joined: unmute ${m.unmuteResponse.audioApproved || m.unmuteResponse.videoApproved ? 'approved' : 'declined'}`);
      break;
    case 'redirectToMc':
      // The session closes next; reconnect there instead of giving up.
      state.redirect = m.redirectToMc.newMcEndpoint;
      setStatus('reconnecting: the meeting controller is moving this meeting');
      break;
    default:
      break; // messages the demo does not use
  }
  renderRoster();
}

// readLoop handles server frames until the server ends the stream, then
// ends ours too: the server waits for that before it closes the session.
async function readLoop(readable, w) {
  const reader = readable.getReader();
  const frames = new FrameReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const f of frames.push(value)) handle(decodeServerMessage(f));
    }
    await w.close();
  } catch (e) {
    if (state.status !== 'left') showError('STREAM', String(e.message ?? e));
  }
}

// fetchJoinInfo fetches the join details. While the lab's demo meeting is
// not held yet the server answers 503 with Retry-After: the page says so and
// asks again.
async function fetchJoinInfo() {
  const q = new URLSearchParams({ role, name: state.name });
  if (state.sub) q.set('sub', state.sub);
  let r;
  for (let attempt = 1; ; attempt++) {
    r = await fetch(`/lab/api/join-info?${q}`, { cache: 'no-store', credentials: 'same-origin' });
    if (r.ok) break;
    if (r.status !== 503 || attempt >= 60) throw new Error(`join-info: HTTP ${r.status}`);
    if (!reconnecting) setStatus('waiting for the demo meeting');
    const wait = Math.min(Math.max(Number(r.headers.get('Retry-After')) || 1, 1), 10);
    await sleep(wait * 1000);
    if (!reconnecting) setStatus('fetching join details');
  }
  const info = await r.json();
  state.meetingId = info.meeting_id;
  state.sub = info.sub || state.sub;
  if (info.reconnect_window_ms) reconnectWindowMs = info.reconnect_window_ms;
  joinInfo = info;
  return info;
}

// open opens a session to url and sends the join request (with the binding
// of the last session when rejoin is set). It resolves once joined and
// rejects when the session ends or the join is refused first.
function open(info, url, rejoin) {
  return new Promise((resolve, reject) => {
    joining = { resolve, reject };
    const t = new WebTransport(url, certOpts(info.cert_sha256));
    transport = t;
    t.closed.then((i) => onClosed(t, i?.reason ? `closed: ${i.reason}` : 'closed'),
      (e) => onClosed(t, `closed: ${e.message ?? e}`));
    (async () => {
      await t.ready;
      const stream = await t.createBidirectionalStream();
      writer = stream.writable.getWriter();
      readLoop(stream.readable, writer);
      setStatus(rejoin ? 'rejoining' : 'joining');
      await send({
        joinRequest: {
          meetingId: info.meeting_id,
          joinToken: info.token,
          participantName: state.name,
          capabilities: { audioCodecs: ['opus'], videoCodecs: ['vp8'] },
          correlationId: rejoin ? binding.correlationId : '',
          bindingToken: rejoin ? binding.token : '',
        },
      });
    })().catch((e) => {
      if (joining) { joining.reject(e); joining = null; }
      try { t.close(); } catch { /* not open */ }
    });
  });
}

async function join(name) {
  name = (name ?? $('name').value).trim();
  $('name').value = name;
  if (!name) { showError('INVALID', 'enter a display name'); return; }
  if (transport) return;
  clearError();
  state.name = name;
  state.sub = '';
  state.redirect = '';
  $('join').disabled = true;
  try {
    setStatus('fetching join details');
    const info = await fetchJoinInfo();
    setStatus('connecting');
    await open(info, info.url, false);
  } catch (e) {
    showError('CONNECT', String(e.message ?? e));
    onClosed(transport, 'not joined');
  }
}

// reconnect comes back after a RedirectToMc: to the endpoint given, as the
// same participant (correlation id, binding token, a fresh token for the
// same sub), with backoff from 250 ms to 4 s, within the reconnect window
// (the appliance's drain timeout plus its disconnect grace).
async function reconnect() {
  if (reconnecting) return;
  reconnecting = true;
  const until = Date.now() + reconnectWindowMs;
  let delay = 250;
  for (let attempt = 1; Date.now() < until && state.status !== 'left'; attempt++) {
    setStatus(`reconnecting (attempt ${attempt})`);
    try {
      const info = await fetchJoinInfo();
      await open(info, state.redirect || info.url, true);
      state.redirect = '';
      state.reconnects++;
      reconnecting = false;
      clearError();
      return;
    } catch {
      // The appliance is still restarting: try again.
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 4000);
  }
  reconnecting = false;
  state.redirect = '';
  if (state.status !== 'left') setStatus('closed: could not reconnect');
  $('join').disabled = false;
}

// onClosed resets the page after session t ended: out of the meeting, the
// roster is no longer known. A session the user has already left or
// replaced by a new join changes nothing. After a RedirectToMc the page
// reconnects instead.
function onClosed(t, status) {
  if (t !== transport) return;
  if (joining) { joining.reject(new Error(status)); joining = null; }
  transport = null;
  writer = null;
  closeMedia();
  state.roster.clear();
  state.asked = { audio: false, video: false };
  setNotice('');
  renderRoster();
  $('controls').hidden = true;
  if (reconnecting) return; // the reconnect loop goes on
  if (state.redirect && state.status !== 'left') {
    reconnect();
    return;
  }
  if (state.status !== 'left') setStatus(status);
  $('join').disabled = false;
}

async function mute(audioMuted, videoMuted) {
  await send({ muteRequest: { audioMuted, videoMuted } });
}

async function hostMute(participantId, audioMuted, videoMuted) {
  clearError();
  setNotice('');
  await send({ hostMuteRequest: { participantId, audioMuted, videoMuted, reason: 'lab demo' } });
}

// askUnmute asks the hosts to lift this participant's host-mute of kind.
async function askUnmute(kind) {
  clearError();
  state.asked[kind] = true;
  renderRoster();
  await send({ unmuteRequest: { requestAudio: kind === 'audio', requestVideo: kind === 'video' } });
}

function leave() {
  if (!transport) return;
  clearError(); // an error of the session just left is stale
  setStatus('left');
  state.redirect = '';
  transport.close({ closeCode: 0, reason: 'leave' });
  onClosed(transport, 'left');
}

function selfMuted(kind) { return !!state.roster.get(state.selfId)?.[`${kind}SelfMuted`]; }

$('role').textContent = role;
$('name').value = params.get('name') ?? '';
$('join-form').addEventListener('submit', (e) => { e.preventDefault(); join(); });
$('mute-audio').addEventListener('click', () => mute(!selfMuted('audio'), selfMuted('video')));
$('mute-video').addEventListener('click', () => mute(selfMuted('audio'), !selfMuted('video')));
$('ask-audio').addEventListener('click', () => askUnmute('audio'));
$('ask-video').addEventListener('click', () => askUnmute('video'));
$('leave').addEventListener('click', leave);
renderRoster();

window.edgemcDemo = {
  state,
  roster: () => [...state.roster.values()],
  join, mute, hostMute, askUnmute, leave,
};
if (params.get('autojoin') === '1' && $('name').value) join();
