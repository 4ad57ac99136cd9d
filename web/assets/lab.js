// edgemc lab demo: joins the demo meeting from the browser over WebTransport
// and drives the signaling protocol by hand. Development tool only.
//
// Automation: window.edgemcDemo exposes join/mute/hostMute/askUnmute/leave
// and the state; the DOM exposes #status, #error, #notice and
// tr[data-participant-id] rows. /lab/join?role=host&name=Alice&autojoin=1
// joins on load.
//
// What a participant sees follows what they may do: only hosts get the
// host-mute buttons (not on their own row), and a host-muted participant
// gets "Ask to unmute" (an UnmuteRequest to the hosts) instead of a
// self-mute button that could not unmute them.

import { decodeServerMessage, encodeClientMessage, ErrorCode, FrameReader, frame } from './proto.js';

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
};
let transport = null;
let writer = null;

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

function handle(m) {
  state.log.push(m.kind ?? 'unknown');
  switch (m.kind) {
    case 'joinResponse': {
      const j = m.joinResponse;
      state.selfId = j.participantId;
      for (const p of j.existingParticipants) upsert(p);
      upsert({ participantId: j.participantId, name: $('name').value.trim() });
      setStatus('joined');
      $('controls').hidden = false;
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
      setStatus(`redirected to ${m.redirectToMc.newMcEndpoint}`);
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

// joinInfo fetches the join details. While the lab's demo meeting is not
// held yet the server answers 503 with Retry-After: the page says so and
// asks again.
async function joinInfo(name) {
  const q = new URLSearchParams({ role, name });
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(`/lab/api/join-info?${q}`, { cache: 'no-store', credentials: 'same-origin' });
    if (r.ok) return r.json();
    if (r.status !== 503 || attempt >= 60) throw new Error(`join-info: HTTP ${r.status}`);
    setStatus('waiting for the demo meeting');
    const wait = Math.min(Math.max(Number(r.headers.get('Retry-After')) || 1, 1), 10);
    await new Promise((resolve) => { setTimeout(resolve, wait * 1000); });
    setStatus('fetching join details');
  }
}

async function join(name) {
  name = (name ?? $('name').value).trim();
  $('name').value = name;
  if (!name) { showError('INVALID', 'enter a display name'); return; }
  if (transport) return;
  clearError();
  $('join').disabled = true;
  try {
    setStatus('fetching join details');
    const info = await joinInfo(name);
    state.meetingId = info.meeting_id;
    setStatus('connecting');
    const opts = info.cert_sha256
      ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: hexToBytes(info.cert_sha256) }] } : {};
    const t = new WebTransport(info.url, opts);
    transport = t;
    t.closed.then((i) => onClosed(t, i?.reason ? `closed: ${i.reason}` : 'closed'),
      (e) => onClosed(t, `closed: ${e.message ?? e}`));
    await t.ready;
    const stream = await t.createBidirectionalStream();
    writer = stream.writable.getWriter();
    readLoop(stream.readable, writer);
    setStatus('joining');
    await send({
      joinRequest: {
        meetingId: info.meeting_id,
        joinToken: info.token,
        participantName: name,
        capabilities: { audioCodecs: ['opus'], videoCodecs: ['vp8'] },
      },
    });
  } catch (e) {
    showError('CONNECT', String(e.message ?? e));
    onClosed(transport, 'not joined');
  }
}

// onClosed resets the page after session t ended: out of the meeting, the
// roster is no longer known. A session the user has already left or
// replaced by a new join changes nothing.
function onClosed(t, status) {
  if (t !== transport) return;
  if (state.status !== 'left') setStatus(status);
  transport = null;
  writer = null;
  state.roster.clear();
  state.asked = { audio: false, video: false };
  setNotice('');
  renderRoster();
  $('join').disabled = false;
  $('controls').hidden = true;
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
