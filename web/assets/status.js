// edgemc status page: renders /api/v1/events (server-sent events), falling
// back to polling /api/v1/status. Every value is written with textContent,
// never as HTML, because display names come from meeting participants.

const $ = (id) => document.getElementById(id);
let last = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const isSet = (t) => t && !t.startsWith('0001-01-01');

function ago(t) {
  if (!isSet(t)) return 'never';
  const s = Math.round((Date.now() - Date.parse(t)) / 1000);
  const abs = Math.abs(s);
  const span = abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min`
    : abs < 172800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
  return s >= 0 ? `${span} ago` : `in ${span}`;
}

function when(t) {
  if (!isSet(t)) return el('span', { class: 'muted', text: 'never' });
  return el('time', { datetime: t, title: new Date(t).toLocaleString(), text: ago(t) });
}

const secs = (ns) => (ns ? `${+(ns / 1e9).toFixed(1)} s` : '—');

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function badge(text, cls) { return el('span', { class: `badge ${cls}`, text }); }

// fill replaces the <dl> content with [label, value, field] rows. A value may
// be a string or a Node; field becomes data-field for tests and tooling.
function fill(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([label, value, field]) => {
    const dd = el('dd', field ? { 'data-field': field } : {});
    dd.append(value);
    return [el('dt', { text: label }), dd];
  }));
}

// bar draws a labelled progress bar; it turns amber at 80 % and red at 95 %,
// the appliance's degraded and not-ready thresholds.
function bar(label, pct, text, field) {
  pct = Math.max(0, Math.min(100, pct || 0));
  const fill = el('div', { class: `fill${pct >= 95 ? ' bad' : pct >= 80 ? ' warn' : ''}` });
  fill.style.width = `${pct}%`;
  return el('div', { class: 'meter', 'data-field': field },
    el('div', { class: 'label' }, el('span', { text: label }), el('span', { class: 'value', text })),
    el('div', { class: 'track', role: 'meter', 'aria-valuenow': pct.toFixed(0), 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': label }, fill));
}

function meter(label, value = 0, max = 0, field) {
  if (max <= 0) return bar(label, 0, `${value} (no limit)`, field);
  const pct = (value / max) * 100;
  return bar(label, pct, `${value} / ${max} (${pct.toFixed(0)} %)`, field);
}

const percent = (p) => `${(p || 0).toFixed(1)} %`;
const meterPercent = (label, p, field) => bar(label, p, percent(p), field);

function muteText(self, host) {
  if (host) return 'host-muted';
  if (self) return 'muted';
  return 'on';
}

// mediaCell shows a participant's media connections: how many of the
// meeting's media handlers say it is connected, and every handler where the
// client's own report disagrees with the handler's.
function mediaCell(m) {
  if (!m) return el('span', { class: 'muted', text: '—' });
  const out = el('span', { class: 'media', 'data-connected': String(m.connected), 'data-total': String(m.total) },
    `media: ${m.connected}/${m.total} handlers`);
  for (const h of m.handlers ?? []) {
    if (!h.disagree) continue;
    const says = `${h.mh_id}: client says ${h.client_state}${h.client_failure_reason ? ` (${h.client_failure_reason})` : ''},`
      + ` handler says ${h.mh_connected ? 'connected' : 'not connected'}`;
    out.append(' ', el('span', { class: 'badge no', 'data-disagree': h.mh_id, text: says }));
  }
  return out;
}

// mhState shows a media handler's answer to RegisterMeeting.
function mhState(r) {
  const cls = { registered: 'yes', failed: 'no', registering: 'warn' }[r.state] ?? 'muted';
  const span = el('span', { class: `badge ${cls}`, 'data-mh-id': r.mh_id, 'data-state': r.state, text: `${r.mh_id} ${r.state}` });
  if (r.last_error) span.title = `${r.attempts} attempt(s): ${r.last_error}`;
  return span;
}

function participantRow(p) {
  const conn = p.connected ? el('span', { class: 'badge yes', text: 'connected' })
    : el('span', {}, badge('disconnected', 'no'), ' ', when(p.disconnected_since));
  const cell = (label, child, cls) => {
    const td = el('td', { 'data-label': label, ...(cls ? { class: cls } : {}) });
    td.append(child);
    return td;
  };
  return el('tr', { 'data-participant-id': p.id },
    cell('Participant', el('span', { class: 'mono', text: p.id })),
    cell('Name', p.name, 'name'),
    cell('Role', p.role),
    cell('Audio', muteText(p.audio_self_muted, p.audio_host_muted)),
    cell('Video', muteText(p.video_self_muted, p.video_host_muted)),
    cell('Connection', conn),
    cell('Media', mediaCell(p.media)),
    cell('Joined', when(p.joined_at)));
}

function meetingCard(m) {
  const parts = m.participants ?? [];
  const head = el('header', {},
    el('strong', { class: 'mono', text: m.id }),
    el('span', { class: 'muted', text: `generation ${m.generation}` }),
    el('span', { class: 'muted' }, 'created ', when(m.created_at)),
    m.mh_registrations?.length
      ? el('span', { class: 'muted mh' }, 'media handlers: ', ...m.mh_registrations.flatMap((r, i) => (i ? [' ', mhState(r)] : [mhState(r)])))
      : el('span', { class: 'muted', text: `media handlers: ${(m.media_handlers ?? []).join(', ') || 'none'}` }),
    el('span', { class: 'muted', text: `${parts.length} participant${parts.length === 1 ? '' : 's'}` }));
  const card = el('section', { class: 'card meeting', 'data-meeting-id': m.id }, head);
  if (parts.length) {
    const thead = el('thead', {}, el('tr', {}, ...['Participant', 'Name', 'Role', 'Audio', 'Video', 'Connection', 'Media', 'Joined']
      .map((h) => el('th', { text: h }))));
    card.append(el('div', { class: 'scroll' }, el('table', { class: 'stack' }, thead, el('tbody', {}, ...parts.map(participantRow)))));
  }
  return card;
}

function render(s) {
  last = s;
  // The first update replaces "connecting…" with the cards.
  $('connecting').hidden = true;
  $('cards').hidden = false;
  $('meetings-section').hidden = false;
  const id = s.identity ?? {};
  $('mc-id').textContent = id.id ?? '';
  document.title = `edgemc ${id.id ?? ''} — ${s.health}`;
  const h = $('health');
  h.textContent = s.draining && s.health !== 'DRAINING' ? `${s.health} (draining)` : s.health;
  h.className = `badge ${s.health}`;

  fill($('identity'), [
    ['ID', el('span', { class: 'mono', text: id.id ?? '' }), 'identity.id'],
    ['Region', id.region ?? '', 'identity.region'],
    ['Version', id.version ?? '', 'identity.version'],
    ['WebTransport', el('span', { class: 'mono', text: id.webtransport_url ?? '' }), 'identity.webtransport_url'],
    ['gRPC', el('span', { class: 'mono', text: id.grpc_endpoint ?? '' }), 'identity.grpc_endpoint'],
    ['Cert SHA-256', el('span', { class: 'mono', text: id.cert_sha256 ?? '' }), 'identity.cert_sha256'],
    ['Cert expires', certExpiry(id.cert_not_after), 'identity.cert_not_after'],
    ['Started', when(id.started_at), 'identity.started_at'],
  ]);

  const gc = s.gc ?? {};
  const gcRows = gc.configured ? [
    ['Target', el('span', { class: 'mono', text: gc.target }), 'gc.target'],
    ['Registered', gc.registered ? badge('registered', 'yes') : badge('not registered', 'no'), 'gc.registered'],
    ['Registered at', when(gc.last_registered), 'gc.last_registered'],
    ['Fast heartbeat', el('span', {}, when(gc.last_fast), ` · every ${secs(gc.fast_interval_ns)}`), 'gc.last_fast'],
    ['Comprehensive', el('span', {}, when(gc.last_comprehensive), ` · every ${secs(gc.comprehensive_interval_ns)}`), 'gc.last_comprehensive'],
    ['Failures in a row', el('span', { class: gc.consecutive_failures ? 'bad' : '', text: String(gc.consecutive_failures) }), 'gc.consecutive_failures'],
  ] : [['Mode', 'running without a global controller', 'gc.configured']];
  if (gc.configured && isSet(gc.down_since)) {
    gcRows.push(['Link down', el('span', { class: 'bad' }, 'since ', when(gc.down_since), ' · meetings held here go on'), 'gc.down_since']);
  }
  if (gc.configured && gc.waiting_for_token) gcRows.push(['Waiting', el('span', { class: 'warn', text: 'for a service token before registering' }), 'gc.waiting_for_token']);
  if (gc.configured && isSet(gc.next_retry)) gcRows.push(['Next retry', when(gc.next_retry), 'gc.next_retry']);
  if (gc.last_error) gcRows.push(['Last error', el('span', { class: 'bad', text: gc.last_error }), 'gc.last_error']);
  const ac = s.ac;
  if (ac) {
    gcRows.push(
      ['Auth Controller', el('span', { class: 'mono', text: `${ac.url} (client ${ac.client_id})` }), 'ac.url'],
      ['Service token', ac.has_token
        ? el('span', {}, badge('valid', 'yes'), ' until ', when(ac.expires_at))
        : el('span', {}, badge('none', 'no'), ' waiting for the Auth Controller'), 'ac.has_token'],
    );
    if (ac.scope) gcRows.push(['Token scope', el('span', { class: 'mono', text: ac.scope }), 'ac.scope']);
    if (isSet(ac.next_attempt)) gcRows.push(['Next token request', when(ac.next_attempt), 'ac.next_attempt']);
    if (ac.last_error) {
      gcRows.push(['Token error', el('span', { class: 'bad', text: `${ac.last_error} (${ac.consecutive_failures} in a row)` }), 'ac.last_error']);
    }
  }
  fill($('gc'), gcRows);

  fill($('control-plane'), (s.control_plane ?? []).map(link => [link.label, tlsLink(link), `control_plane.${link.name}`]));

  const c = s.capacity ?? {};
  $('capacity').replaceChildren(
    meter('Meetings', c.meetings, c.max_meetings, 'capacity.meetings'),
    meter('Participants', c.participants, c.max_participants, 'capacity.participants'));

  const sys = s.system ?? {};
  const sysDl = el('dl');
  fill(sysDl, [['edgemc RSS', bytes(sys.rss_bytes ?? 0), 'system.rss_bytes'], ['Goroutines', String(sys.goroutines ?? 0), 'system.goroutines']]);
  // The bar is the whole host's CPU; edgemc's own share is named beside it.
  const cpu = meterPercent('Host CPU', sys.cpu_percent ?? 0, 'system.cpu_percent');
  cpu.querySelector('.value').append(' · ',
    el('span', { 'data-field': 'system.process_cpu_percent', text: `edgemc ${percent(sys.process_cpu_percent)}` }));
  $('system').replaceChildren(cpu,
    meterPercent('Host memory', sys.memory_percent ?? 0, 'system.memory_percent'), sysDl);

  const st = s.store ?? {};
  const stRows = [
    ['State', st.ok ? badge('ok', 'yes') : badge('unavailable', 'no'), 'store.ok'],
    ['File', el('span', { class: 'mono', text: st.path ?? '' }), 'store.path'],
    ['Size', bytes(st.file_size ?? 0), 'store.file_size'],
    ['Meetings', String(st.meetings ?? 0), 'store.meetings'],
    ['Generation', String(st.max_generation ?? 0), 'store.max_generation'],
  ];
  if (st.error) stRows.push(['Error', el('span', { class: 'bad', text: st.error }), 'store.error']);
  fill($('store'), stRows);

  const meetings = s.meetings ?? [];
  $('meeting-count').textContent = `(${meetings.length})`;
  $('meetings').replaceChildren(...(meetings.length ? meetings.map(meetingCard)
    : [el('p', { class: 'muted', text: 'No meetings.' })]));

  const lab = $('lab');
  lab.hidden = !s.lab;
  if (s.lab) {
    $('lab-note').textContent = s.lab.note;
    $('lab-host').href = `${s.lab.join_path}?role=host`;
    $('lab-participant').href = `${s.lab.join_path}?role=participant`;
  }
  $('updated').textContent = new Date().toLocaleTimeString();
}

// tlsLink shows how one control-plane link is secured: TLS or plaintext,
// mutual TLS, the certificate and its days left, and any problem.
function tlsLink(l) {
  const head = el('div', {},
    l.tls ? badge('TLS', 'yes') : badge('plaintext', l.warning ? 'warn' : ''),
    ' ', l.tls ? badge(l.mtls ? 'mTLS on' : 'mTLS off', l.mtls ? 'yes' : '') : '',
    ' ', el('span', { class: 'mono', text: l.url ?? '' }));
  const out = el('div', {}, head);
  if (l.cert_subject) {
    const days = l.cert_days_left ?? 0;
    const date = new Date(l.cert_not_after).toLocaleDateString();
    const text = days < 0 ? `expired ${date} (${ago(l.cert_not_after)})`
      : `expires ${date} (${days} day${days === 1 ? '' : 's'} left)`;
    out.append(el('div', {}, el('span', { class: 'mono', text: l.cert_subject }), ' · ',
      el('span', { class: days < 14 ? (days < 3 ? 'bad' : 'warn') : '', text })));
  } else if (l.tls) {
    out.append(el('div', { class: 'muted', text: 'no handshake yet' }));
  }
  if (l.warning) out.append(el('div', { class: 'warn', text: `⚠ ${l.warning}` }));
  if (l.problem) out.append(el('div', { class: 'bad', text: l.problem }));
  return out;
}

function certExpiry(t) {
  if (!isSet(t)) return el('span', { class: 'muted', text: 'unknown' });
  const days = (Date.parse(t) - Date.now()) / 86400000;
  const span = when(t);
  span.textContent = `${new Date(t).toLocaleDateString()} (${ago(t)})`;
  if (days < 3) span.className = days < 0 ? 'bad' : 'warn';
  return span;
}

function setLive(on, text) {
  const l = $('live');
  l.className = `live ${on ? 'on' : 'off'}`;
  l.textContent = text;
}

async function poll() {
  try {
    const r = await fetch('/api/v1/status', { cache: 'no-store', credentials: 'same-origin' });
    if (r.status === 401) { setLive(false, 'sign-in needed: reload the page'); return; }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
    setLive(true, 'live (polling)');
  } catch {
    setLive(false, 'offline, retrying');
  }
  setTimeout(poll, 5000);
}

// The live stream sends the whole status first ("status"), then only what
// changed ("patch"): a JSON merge patch (RFC 7396) of the status with its
// meetings keyed by id.
function keyed(s) {
  return { ...s, meetings: Object.fromEntries((s.meetings ?? []).map((m) => [m.id, m])) };
}

function unkeyed(k) {
  const meetings = Object.values(k.meetings ?? {}).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { ...k, meetings };
}

function mergePatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = (target !== null && typeof target === 'object' && !Array.isArray(target)) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]; else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function start() {
  if (!window.EventSource) { poll(); return; }
  const es = new EventSource('/api/v1/events');
  let doc = null;
  es.addEventListener('status', (e) => { doc = keyed(JSON.parse(e.data)); render(unkeyed(doc)); setLive(true, 'live'); });
  es.addEventListener('patch', (e) => {
    if (!doc) return;
    doc = mergePatch(doc, JSON.parse(e.data));
    render(unkeyed(doc));
    setLive(true, 'live');
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) { poll(); return; }
    setLive(false, 'reconnecting…');
  };
}

// Relative times ("12 s ago") stay fresh between updates.
setInterval(() => { if (last) render(last); }, 10000);
window.edgemcStatus = { last: () => last };
start();
