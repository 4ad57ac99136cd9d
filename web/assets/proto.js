// Minimal protobuf codec for the Dark Tower signaling messages the edgemc lab
// demo uses (package dark_tower.signaling.v1, and the connect request a
// client sends a media handler), plus the 4-byte big-endian length framing
// of the signaling stream. Hand-written, no dependencies.
//
// Messages are plain objects with camelCase field names. uint64 fields decode
// to a Number when exact, otherwise to a decimal string. Unknown fields are
// skipped; malformed input throws an Error.

export const MAX_FRAME = 65536;

// Field tables: number -> [name, kind, message type, repeated].
const T = {
  ParticipantCapabilities: {
    1: ['videoCodecs', 'string', null, true],
    2: ['audioCodecs', 'string', null, true],
    3: ['supportsSimulcast', 'bool'],
    4: ['maxVideoStreams', 'uint32'],
  },
  JoinRequest: {
    1: ['meetingId', 'string'],
    2: ['joinToken', 'string'],
    3: ['participantName', 'string'],
    4: ['capabilities', 'message', 'ParticipantCapabilities'],
    5: ['correlationId', 'string'],
    6: ['bindingToken', 'string'],
  },
  MuteRequest: { 1: ['audioMuted', 'bool'], 2: ['videoMuted', 'bool'] },
  HostMuteRequest: {
    1: ['participantId', 'string'],
    2: ['audioMuted', 'bool'],
    3: ['videoMuted', 'bool'],
    4: ['reason', 'string'],
  },
  UnmuteRequest: { 1: ['requestAudio', 'bool'], 2: ['requestVideo', 'bool'] },
  UnmuteResponse: {
    1: ['participantId', 'string'],
    2: ['audioApproved', 'bool'],
    3: ['videoApproved', 'bool'],
  },
  Timestamp: { 1: ['seconds', 'uint64'], 2: ['nanos', 'uint32'] },
  MhConnectionStatus: {
    1: ['mhUrl', 'string'],
    2: ['state', 'enum'],
    3: ['failureReason', 'string'],
    4: ['failureCode', 'string'],
    5: ['observedAt', 'message', 'Timestamp'],
  },
  MediaConnectionUpdate: { 1: ['statuses', 'message', 'MhConnectionStatus', true] },
  ClientMessage: {
    1: ['joinRequest', 'message', 'JoinRequest'],
    7: ['muteRequest', 'message', 'MuteRequest'],
    8: ['hostMuteRequest', 'message', 'HostMuteRequest'],
    9: ['unmuteRequest', 'message', 'UnmuteRequest'],
    10: ['unmuteResponse', 'message', 'UnmuteResponse'],
    11: ['mediaConnectionUpdate', 'message', 'MediaConnectionUpdate'],
    20: ['traceParent', 'string'],
    21: ['traceState', 'string'],
  },
  // What a client sends a media handler first (MhClientMessage).
  MhConnectRequest: { 1: ['joinToken', 'string'] },
  MhClientMessage: {
    1: ['connectRequest', 'message', 'MhConnectRequest'],
    20: ['traceParent', 'string'],
    21: ['traceState', 'string'],
  },
  Participant: {
    1: ['participantId', 'string'],
    2: ['name', 'string'],
    4: ['joinedAt', 'uint64'],
  },
  MediaServerInfo: { 1: ['mediaHandlerUrl', 'string'] },
  EncryptionKeys: { 1: ['publicKey', 'bytes'], 2: ['keyId', 'string'] },
  JoinResponse: {
    1: ['participantId', 'string'],
    2: ['userId', 'uint64'],
    3: ['existingParticipants', 'message', 'Participant', true],
    4: ['mediaServers', 'message', 'MediaServerInfo', true],
    5: ['encryptionKeys', 'message', 'EncryptionKeys'],
    6: ['correlationId', 'string'],
    7: ['bindingToken', 'string'],
  },
  ParticipantJoined: { 1: ['participant', 'message', 'Participant'] },
  ParticipantLeft: { 1: ['participantId', 'string'], 2: ['reason', 'enum'] },
  ErrorMessage: { 1: ['code', 'enum'], 2: ['message', 'string'], 3: ['details', 'map'] },
  ParticipantMuteUpdate: {
    1: ['participantId', 'string'],
    2: ['audioSelfMuted', 'bool'],
    3: ['videoSelfMuted', 'bool'],
    4: ['audioHostMuted', 'bool'],
    5: ['videoHostMuted', 'bool'],
    6: ['hostMutedBy', 'string'],
  },
  RedirectToMc: {
    1: ['newMcEndpoint', 'string'],
    2: ['meetingId', 'string'],
    3: ['reason', 'string'],
  },
  ServerMessage: {
    1: ['joinResponse', 'message', 'JoinResponse'],
    2: ['participantJoined', 'message', 'ParticipantJoined'],
    3: ['participantLeft', 'message', 'ParticipantLeft'],
    7: ['error', 'message', 'ErrorMessage'],
    8: ['participantMuteUpdate', 'message', 'ParticipantMuteUpdate'],
    9: ['unmuteRequest', 'message', 'UnmuteRequest'],
    10: ['unmuteResponse', 'message', 'UnmuteResponse'],
    11: ['redirectToMc', 'message', 'RedirectToMc'],
    20: ['traceParent', 'string'],
    21: ['traceState', 'string'],
  },
};

// The oneof members of ClientMessage and ServerMessage (field numbers < 20).
const ONEOF = { ClientMessage: true, ServerMessage: true };

export const ErrorCode = ['UNKNOWN', 'INVALID_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND',
  'CONFLICT', 'INTERNAL_ERROR', 'CAPACITY_EXCEEDED', 'STREAM_ERROR'];
export const LeaveReason = ['VOLUNTARY', 'KICKED', 'CONNECTION_LOST', 'MEETING_ENDED', 'TIMEOUT'];
// ConnectionState values of MhConnectionStatus.state.
export const ConnectionState = { UNSPECIFIED: 0, CONNECTED: 1, FAILED: 2, DISCONNECTED: 3 };

const WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5;
const utf8Enc = new TextEncoder();
const utf8Dec = new TextDecoder('utf-8', { fatal: true });

class Writer {
  constructor() { this.parts = []; this.len = 0; }
  byte(b) { this.parts.push(Uint8Array.of(b)); this.len++; }
  raw(u8) { this.parts.push(u8); this.len += u8.length; }
  varint(n) {
    let v = BigInt.asUintN(64, BigInt(n));
    const out = [];
    while (v >= 0x80n) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
    out.push(Number(v));
    this.raw(Uint8Array.from(out));
  }
  tag(field, wire) { this.varint((field << 3) | wire); }
  lenDelimited(field, u8) { this.tag(field, WIRE_LEN); this.varint(u8.length); this.raw(u8); }
  finish() {
    const out = new Uint8Array(this.len);
    let off = 0;
    for (const p of this.parts) { out.set(p, off); off += p.length; }
    return out;
  }
}

function encodeValue(w, field, kind, type, v) {
  switch (kind) {
    case 'string': w.lenDelimited(field, utf8Enc.encode(v)); break;
    case 'bytes': w.lenDelimited(field, v); break;
    case 'message': w.lenDelimited(field, encode(type, v)); break;
    case 'bool': w.tag(field, WIRE_VARINT); w.varint(v ? 1 : 0); break;
    default: w.tag(field, WIRE_VARINT); w.varint(v); break; // uint32, uint64, enum
  }
}

// isDefault reports whether a proto3 scalar is at its default (not sent).
function isDefault(kind, v) {
  if (v === undefined || v === null) return true;
  switch (kind) {
    case 'message': return false; // a set message is sent even when empty
    case 'string': return v === '';
    case 'bytes': return v.length === 0;
    case 'bool': return !v;
    default: return BigInt(v) === 0n;
  }
}

// encode returns the protobuf bytes of obj as message type typeName.
export function encode(typeName, obj) {
  const table = T[typeName];
  if (!table) throw new Error(`unknown message type ${typeName}`);
  const w = new Writer();
  for (const [num, [name, kind, type, repeated]] of Object.entries(table)) {
    const v = obj[name];
    const field = Number(num);
    if (repeated) {
      for (const item of v ?? []) encodeValue(w, field, kind, type, item);
    } else if (!isDefault(kind, v)) {
      encodeValue(w, field, kind, type, v);
    }
  }
  return w.finish();
}

class Reader {
  constructor(u8) { this.b = u8; this.p = 0; }
  eof() { return this.p >= this.b.length; }
  varint() {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.p >= this.b.length) throw new Error('truncated varint');
      const c = this.b[this.p++];
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return BigInt.asUintN(64, v);
    }
    throw new Error('varint too long');
  }
  take(n) {
    if (n > this.b.length - this.p) throw new Error('truncated field');
    const out = this.b.subarray(this.p, this.p + n);
    this.p += n;
    return out;
  }
  lenDelimited() {
    const n = this.varint();
    if (n > BigInt(this.b.length - this.p)) throw new Error('truncated field');
    return this.take(Number(n));
  }
  skip(wire) {
    switch (wire) {
      case WIRE_VARINT: this.varint(); break;
      case WIRE_I64: this.take(8); break;
      case WIRE_LEN: this.lenDelimited(); break;
      case WIRE_I32: this.take(4); break;
      default: throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

function uint64Value(v) {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

function wireOf(kind) {
  return kind === 'string' || kind === 'bytes' || kind === 'message' || kind === 'map' ? WIRE_LEN : WIRE_VARINT;
}

function decodeValue(r, kind, type) {
  switch (kind) {
    case 'string': return utf8Dec.decode(r.lenDelimited());
    case 'bytes': return r.lenDelimited().slice();
    case 'message': return decode(type, r.lenDelimited());
    case 'bool': return r.varint() !== 0n;
    case 'uint32': return Number(BigInt.asUintN(32, r.varint()));
    case 'enum': return Number(BigInt.asIntN(32, r.varint()));
    case 'uint64': return uint64Value(r.varint());
    default: throw new Error(`unknown kind ${kind}`);
  }
}

function decodeMapEntry(u8) {
  const r = new Reader(u8);
  let key = '', value = '';
  while (!r.eof()) {
    const tag = r.varint();
    const field = Number(tag >> 3n), wire = Number(tag & 7n);
    if ((field === 1 || field === 2) && wire === WIRE_LEN) {
      const s = utf8Dec.decode(r.lenDelimited());
      if (field === 1) key = s; else value = s;
    } else {
      r.skip(wire);
    }
  }
  return [key, value];
}

function defaults(table) {
  const out = {};
  for (const [name, kind, , repeated] of Object.values(table)) {
    if (repeated) out[name] = [];
    else if (kind === 'map') out[name] = Object.create(null); // keys such as __proto__ stay data
    else if (kind === 'string') out[name] = '';
    else if (kind === 'bool') out[name] = false;
    else if (kind === 'bytes') out[name] = new Uint8Array(0);
    else if (kind !== 'message') out[name] = 0;
  }
  return out;
}

// decode parses u8 as message type typeName. For ClientMessage and
// ServerMessage, the result's `kind` names the oneof member that was set.
export function decode(typeName, u8) {
  const table = T[typeName];
  if (!table) throw new Error(`unknown message type ${typeName}`);
  const out = defaults(table);
  const r = new Reader(u8);
  while (!r.eof()) {
    const tag = r.varint();
    const field = Number(tag >> 3n), wire = Number(tag & 7n);
    if (field === 0 || tag >> 3n > 0x1fffffffn) throw new Error('invalid field number');
    const spec = table[field];
    if (!spec || wireOf(spec[1]) !== wire) { r.skip(wire); continue; }
    const [name, kind, type, repeated] = spec;
    if (kind === 'map') {
      const [k, v] = decodeMapEntry(r.lenDelimited());
      out[name][k] = v;
    } else if (repeated) {
      out[name].push(decodeValue(r, kind, type));
    } else {
      // A singular field seen twice: the last occurrence wins (protobuf
      // would merge repeated sub-messages; encoders never send them).
      if (ONEOF[typeName] && field < 20) {
        if (out.kind && out.kind !== name) delete out[out.kind];
        out.kind = name;
      }
      out[name] = decodeValue(r, kind, type);
    }
  }
  return out;
}

export const encodeClientMessage = (msg) => encode('ClientMessage', msg);
export const encodeMhClientMessage = (msg) => encode('MhClientMessage', msg);
export const decodeServerMessage = (u8) => decode('ServerMessage', u8);

// frame prefixes payload with its 4-byte big-endian length.
export function frame(payload) {
  if (payload.length > MAX_FRAME) throw new Error('frame too large');
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

// FrameReader splits a byte stream into frames.
export class FrameReader {
  constructor() { this.buf = new Uint8Array(0); }
  // push appends chunk and returns the payloads of every complete frame.
  push(chunk) {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf);
    joined.set(chunk, this.buf.length);
    const frames = [];
    let off = 0;
    while (joined.length - off >= 4) {
      const n = new DataView(joined.buffer, off, 4).getUint32(0);
      if (n > MAX_FRAME) throw new Error('frame too large');
      if (joined.length - off - 4 < n) break;
      frames.push(joined.slice(off + 4, off + 4 + n));
      off += 4 + n;
    }
    this.buf = joined.slice(off);
    return frames;
  }
}
