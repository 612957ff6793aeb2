#!/usr/bin/env node
// Samen benchmark load generator.
//
// Every simulated client is a real Yjs document (yjs 13.6.33) speaking the wire protocol over a
// raw `ws` socket, with either y-websocket framing (document name in the URL path) or
// Hocuspocus framing (varString document name in front of every frame, Auth token first).
// One Node process drives all clients, so the writer's send time and the readers' receive
// time come from the same monotonic clock (performance.now()).
//
//   node loadgen.mjs --phase PHASE --protocol yws|hp --url URL [--pid SERVER_PID]
//                    [--scale full|quick] [--out FILE] [--no-deflate]
//                    [--urls URL1,URL2,...] [--doc-prefix PREFIX] [--pid-children]
//                    [--token TOKEN]
//
// PHASE: propagation | throughput | memory | sync | maxrate
// URL:   yws: prefix the document name is appended to, e.g. ws://127.0.0.1:8000/ws/
//        hp:  the Hocuspocus endpoint, e.g. ws://127.0.0.1:8000/hocuspocus
// --urls:  several servers (the nodes of a site, or federated sites), instead of --url: the
//          clients of a room are spread round-robin (room client i -> URL i % n; clients
//          outside a room likewise in creation order). With more than one URL the propagation
//          phase also reports sameUrlLatencyMs and crossUrlLatencyMs (writer and reader on
//          the same / a different URL).
// --pid:   one server process id, or several (comma-separated): CPU and memory are summed;
//          with --pid-children also over their child processes (e.g. worker pools).
// --doc-prefix: prepended to every document name (e.g. "bench/" for a federated space).
// --token: every client signs in with it (y-websocket: `?token=`; Hocuspocus: the Auth frame).
//
// Prints one JSON object (the phase's figures) on stdout, or writes it to --out.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

// ---------------------------------------------------------------------------------------------
// Configuration

const SCALES = {
  full: {
    propagation: { clients: 20, ratePerClient: 5, warmupSeconds: 2, seconds: 10 },
    throughput: { rooms: 10, clientsPerRoom: 10, warmupSeconds: 2, seconds: 10 },
    memory: { connections: 1000, docs: 100, docChars: 200, settleSeconds: 3, connectConcurrency: 50 },
    sync: { edits: 30000, window: 256, warmupRuns: 3, runs: 11, seed: 42 },
    maxrate: { clients: 10, stepSeconds: 5, startRate: 250, factor: 1.6, maxRate: 10000, bisect: 1, thresholdMs: 50, maxOtherCores: 0.25, budgetSeconds: 150 }
  },
  quick: {
    propagation: { clients: 20, ratePerClient: 5, warmupSeconds: 0.5, seconds: 2 },
    throughput: { rooms: 10, clientsPerRoom: 10, warmupSeconds: 0.5, seconds: 2 },
    memory: { connections: 200, docs: 20, docChars: 200, settleSeconds: 1, connectConcurrency: 50 },
    sync: { edits: 3000, window: 256, warmupRuns: 1, runs: 3, seed: 42 },
    maxrate: { clients: 10, stepSeconds: 1, startRate: 250, factor: 2, maxRate: 4000, bisect: 0, thresholdMs: 50, maxOtherCores: 0.25, budgetSeconds: 60 }
  }
}

const CONNECT_TIMEOUT_MS = 15000
const DRAIN_GRACE_MS = 2000

function parseArgs (argv) {
  const out = { scale: 'full', deflate: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--no-deflate') out.deflate = false
    else if (a === '--pid-children') out.pidChildren = true
    else if (a.startsWith('--')) out[a.slice(2)] = argv[++i]
    else throw new Error(`unexpected argument ${a}`)
  }
  if (out.urls) out.urls = out.urls.split(',').filter(u => u)
  if (!out.url && out.urls && out.urls.length) out.url = out.urls[0]
  if (!out.urls || !out.urls.length) out.urls = out.url ? [out.url] : []
  for (const k of ['phase', 'protocol', 'url']) if (!out[k]) throw new Error(`--${k} (or --urls) is required`)
  if (!['yws', 'hp'].includes(out.protocol)) throw new Error('--protocol must be yws or hp')
  if (!SCALES[out.scale]) throw new Error('--scale must be full or quick')
  out.pid = out.pid ? String(out.pid).split(',').map(Number) : null
  out.docPrefix = out['doc-prefix'] ?? ''
  return out
}

const args = parseArgs(process.argv.slice(2))
const HP = args.protocol === 'hp'
const RUN_ID = Math.random().toString(36).slice(2, 8) // keeps document names unique per run
const HANDSHAKE = -1 // ack-queue marker for the SyncStep2 a client sends during the handshake
const URLS = args.urls
const MULTI = URLS.length > 1 // several servers: latency is also split by same / different URL
let nextUrl = 0 // round-robin for clients outside a room

// ---------------------------------------------------------------------------------------------
// Small utilities

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const now = () => performance.now()

/** Growable Float64Array of latency samples (ms). */
class Samples {
  constructor () { this.a = new Float64Array(4096); this.n = 0; this.missing = 0 }
  push (v) {
    if (this.n === this.a.length) { const b = new Float64Array(this.a.length * 2); b.set(this.a); this.a = b }
    this.a[this.n++] = v
  }

  summary () {
    const total = this.n + this.missing
    if (total === 0) return { count: 0 }
    const s = this.a.slice(0, this.n).sort()
    // Undelivered samples count as +Infinity: they sort after every delivered one.
    const pct = p => { const i = Math.min(total - 1, Math.ceil(p / 100 * total) - 1); return i < this.n ? round(s[Math.max(0, i)]) : null }
    let sum = 0
    for (let i = 0; i < this.n; i++) sum += s[i]
    return {
      count: this.n,
      missing: this.missing,
      p50: pct(50),
      p90: pct(90),
      p99: pct(99),
      max: this.missing ? null : round(s[this.n - 1]),
      mean: this.n ? round(sum / this.n) : null
    }
  }
}

const round = (v, d = 3) => v === null || v === undefined || !Number.isFinite(v) ? v : Math.round(v * 10 ** d) / 10 ** d
const median = xs => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }

/** mulberry32: a tiny deterministic PRNG, so every server gets the same document. */
function prng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The server process's resident memory (KiB) and CPU seconds, from /proc (summed over the
 * processes when --pid names several, and over their descendants with --pid-children). */
function serverProc () {
  if (!args.pid) return null
  try {
    let rss = 0
    let hwm = 0
    let cpu = 0
    const read = pid => {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      rss += Number(/VmRSS:\s+(\d+) kB/.exec(status)[1])
      hwm += Number(/VmHWM:\s+(\d+) kB/.exec(status)[1])
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      cpu += (Number(fields[11]) + Number(fields[12])) / 100 // utime + stime, USER_HZ = 100
    }
    for (const pid of args.pid) {
      read(pid)
      if (args.pidChildren) for (const child of descendants(pid)) try { read(child) } catch { /* exited */ }
    }
    return { rssKiB: rss, hwmKiB: hwm, cpuSeconds: cpu }
  } catch (e) {
    return { error: String(e) }
  }
}

/** Every process below `pid` (from /proc/PID/task/TID/children). */
function descendants (pid) {
  const out = []
  const stack = [pid]
  while (stack.length) {
    const p = stack.pop()
    let tasks = []
    try { tasks = readdirSync(`/proc/${p}/task`) } catch { continue }
    for (const t of tasks) {
      let kids = ''
      try { kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8') } catch { continue }
      for (const k of kids.split(' ')) if (k.trim()) { out.push(Number(k)); stack.push(Number(k)) }
    }
  }
  return out
}

/** CPU seconds all cores have spent busy since boot (/proc/stat). */
function systemBusySeconds () {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].split(/\s+/).slice(1, 9).map(Number)
  return (f.reduce((a, b) => a + b, 0) - f[3] - f[4]) / 100
}

const ownCpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }

/** Snapshot for `contention`: system, server and own CPU seconds, and the time. */
const cpuMark = () => ({ sys: systemBusySeconds(), srv: serverProc(), own: ownCpuSeconds(), t: now() })

/** Cores used by anything but the server and this generator between two marks (other work
 * on the machine, plus kernel time not charged to either process). */
function contention (a, b) {
  if (!a.srv || !b.srv || a.srv.error || b.srv.error) return null
  const other = (b.sys - a.sys) - (b.srv.cpuSeconds - a.srv.cpuSeconds) - (b.own - a.own)
  return round(other / ((b.t - a.t) / 1000), 2)
}

function cpuDelta (before, after) {
  if (!before || !after || before.error || after.error) return null
  return round(after.cpuSeconds - before.cpuSeconds, 2)
}

// ---------------------------------------------------------------------------------------------
// Wire encoding

function namePrefix (name) {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, name)
  return encoding.toUint8Array(e)
}

/** `[prefix] varUint(outer) [varUint(sub)] [varUint8Array(payload)]` as one frame. */
function frame (prefix, outer, sub, payload) {
  const e = encoding.createEncoder()
  if (prefix) encoding.writeUint8Array(e, prefix)
  encoding.writeVarUint(e, outer)
  if (sub !== null) encoding.writeVarUint(e, sub)
  if (payload !== null) encoding.writeVarUint8Array(e, payload)
  return encoding.toUint8Array(e)
}

function authFrame (prefix, token) {
  const e = encoding.createEncoder()
  encoding.writeUint8Array(e, prefix)
  encoding.writeVarUint(e, 2) // Auth
  encoding.writeVarUint(e, 0) // Token
  encoding.writeVarString(e, token)
  return encoding.toUint8Array(e)
}

// ---------------------------------------------------------------------------------------------
// Global counters (per phase process)

const stats = {
  connects: 0,
  unexpectedCloses: [], // { doc, code, reason } for closes we did not ask for (first 20)
  unexpectedCloseCount: 0,
  errors: [],
  unknownFrames: 0,
  permissionDenied: 0,
  syncStatusRejected: 0,
  extensions: new Set(),
  framesIn: 0,
  framesOut: 0
}

function noteError (msg) {
  if (stats.errors.length < 20) stats.errors.push(msg)
}

// ---------------------------------------------------------------------------------------------
// Client

class Client {
  /**
   * @param {string} name document name
   * @param {Room|null} room latency bookkeeping, or null
   */
  constructor (name, room = null) {
    this.name = args.docPrefix + name
    this.room = room
    // Which server it uses: round-robin over --urls within its room (else in creation order).
    this.urlIndex = (room ? room.clients.length : nextUrl++) % URLS.length
    this.url = URLS[this.urlIndex]
    this.doc = new Y.Doc()
    this.id = this.doc.clientID
    this.text = this.doc.getText('t')
    this.prefix = HP ? namePrefix(this.name) : null
    this.ws = null
    this.synced = false
    this.closing = false
    this.sendTimes = [] // own clock -> send time (ms) or NaN when not measured
    this.seen = null // per room writer index: next clock not yet applied here
    this.updatesIn = 0 // sync Update frames received (echoes included)
    this.syncStep2In = 0 // SyncStep2 frames received (answers to our SyncStep1s)
    this.acks = 0 // SyncStatus(1) for our own updates (handshake ack excluded)
    this.ackQueue = [] // send times of our SyncStep2/Updates not yet acknowledged (hp)
    this.ackSamples = null // Samples for ack latency, when measuring
    this.onProgress = null // called after each received update / ack
    this.syncedAt = 0
    this.openedAt = 0
    this.startedAt = 0
    this.syncBytes = 0
    this.pendingSendTime = NaN
    // Subscribed only around local edits (see edit()): with a listener attached, Yjs encodes
    // an update for every transaction, the remote ones included.
    this._send = update => this.sendUpdate(update)
    if (room) room.add(this)
  }

  connect () {
    return new Promise((resolve, reject) => {
      const url = HP ? this.url : this.url + this.name + (args.token ? `?token=${encodeURIComponent(args.token)}` : '')
      this.startedAt = now()
      const ws = new WebSocket(url, { perMessageDeflate: args.deflate })
      this.ws = ws
      ws.binaryType = 'nodebuffer'
      let settled = false
      const timer = setTimeout(() => {
        if (!settled) { settled = true; reject(new Error(`${this.name}: not synced after ${CONNECT_TIMEOUT_MS} ms`)); ws.terminate() }
      }, CONNECT_TIMEOUT_MS)
      this._resolveSync = () => { if (!settled) { settled = true; clearTimeout(timer); resolve(this) } }
      ws.on('open', () => {
        this.openedAt = now()
        stats.connects++
        stats.extensions.add(ws.extensions || 'none')
        if (HP) this.send(authFrame(this.prefix, args.token ?? 'benchmark-token'))
        this.send(frame(this.prefix, 0, 0, Y.encodeStateVector(this.doc))) // SyncStep1
      })
      ws.on('message', data => this.onMessage(data))
      ws.on('error', err => {
        noteError(`${this.name}: socket error ${err.message}`)
        if (!settled) { settled = true; clearTimeout(timer); reject(err) }
      })
      ws.on('close', (code, reason) => {
        if (!this.closing) {
          stats.unexpectedCloseCount++
          if (stats.unexpectedCloses.length < 20) stats.unexpectedCloses.push({ doc: this.name, code, reason: reason.toString() })
        }
        if (!settled) { settled = true; clearTimeout(timer); reject(new Error(`${this.name}: closed ${code} ${reason} before sync`)) }
      })
    })
  }

  send (buf) {
    if (this.ws.readyState === WebSocket.OPEN) { this.ws.send(buf); stats.framesOut++ }
  }

  sendUpdate (update) {
    if (HP) this.ackQueue.push(this.pendingSendTime)
    this.send(frame(this.prefix, 0, 2, update))
  }

  onMessage (data) {
    stats.framesIn++
    if (HP && data.length === 1) { // v4 keepalive: bare Ping (09) / Pong (0a), no name
      if (data[0] === 9) this.send(Uint8Array.of(10))
      return
    }
    const dec = decoding.createDecoder(data)
    if (HP) decoding.readVarString(dec)
    const type = decoding.readVarUint(dec)
    if (type === 0) {
      const sub = decoding.readVarUint(dec)
      const payload = decoding.readVarUint8Array(dec)
      if (sub === 0) { // server SyncStep1: answer with SyncStep2
        if (HP) this.ackQueue.push(HANDSHAKE)
        this.send(frame(this.prefix, 0, 1, Y.encodeStateAsUpdate(this.doc, payload)))
      } else if (sub === 1 || sub === 2) {
        Y.applyUpdate(this.doc, payload)
        const t = now()
        if (sub === 2) this.updatesIn++
        else this.syncStep2In++
        if (this.room) this.room.applied(this, t)
        if (sub === 1 && !this.synced) {
          this.synced = true
          this.syncedAt = t
          this.syncBytes = payload.length
          this._resolveSync()
        }
        if (this.onProgress) this.onProgress()
      } else {
        stats.unknownFrames++
      }
    } else if (type === 1) {
      // awareness: nothing to do, these clients publish no presence
    } else if (type === 2) {
      const authType = decoding.readVarUint(dec)
      if (HP && authType === 0) this.send(authFrame(this.prefix, args.token ?? 'benchmark-token'))
      else if (authType === 1 || (!HP && authType === 0)) {
        stats.permissionDenied++
        noteError(`${this.name}: permission denied: ${decoding.readVarString(dec)}`)
      }
    } else if (type === 3) {
      // queryAwareness: we hold no presence to report
    } else if (HP && type === 8) {
      const ok = decoding.readVarUint(dec)
      if (!ok) stats.syncStatusRejected++
      const sent = this.ackQueue.shift()
      if (sent !== HANDSHAKE && sent !== undefined) {
        this.acks++
        if (this.ackSamples && sent === sent) this.ackSamples.push(now() - sent)
      }
      if (this.onProgress) this.onProgress()
    } else if (HP && (type === 5 || type === 7)) {
      // stateless / close: ignored
    } else {
      stats.unknownFrames++
    }
  }

  /**
   * Type one character, sent as one update; records the send time when measuring. It goes
   * at index 0: Yjs resolves index 0 without walking its search markers, which keeps 100
   * clients in one process cheap, and the server sees the same one-character updates.
   */
  type (measuring) {
    const clock = Y.getState(this.doc.store, this.id)
    const t = measuring ? now() : NaN
    this.sendTimes[clock] = t
    this.pendingSendTime = t
    this.edit(() => this.text.insert(0, String.fromCharCode(97 + (clock % 26))))
  }

  /** Run a local change; the update it produces is sent as one sync Update frame. */
  edit (fn) {
    this.doc.on('update', this._send)
    try { fn() } finally { this.doc.off('update', this._send) }
  }

  close () {
    this.closing = true
    if (!this.ws) return Promise.resolve()
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve()
    return new Promise(resolve => {
      const t = setTimeout(() => { this.ws.terminate(); resolve() }, 2000)
      this.ws.once('close', () => { clearTimeout(t); resolve() })
      this.ws.close(1000)
    })
  }
}

/** A document with several clients: works out which writer edits each applied update holds. */
class Room {
  constructor (name) {
    this.name = name
    this.clients = []
    this.writers = []
    this.samples = new Samples()
    this.same = MULTI ? new Samples() : null // writer and reader on the same URL (--urls)
    this.cross = MULTI ? new Samples() : null // on different URLs
    this.delivered = 0 // (edit, receiving client) pairs applied, echoes excluded
    this.countDelivered = false
    this.onDelivered = null // (writer, clock) => void, once per receiving client
  }

  add (client) { this.clients.push(client) }

  setWriters (writers) {
    this.writers = writers
    for (const c of this.clients) {
      c.seen = new Array(writers.length).fill(0)
      for (let i = 0; i < writers.length; i++) c.seen[i] = Y.getState(c.doc.store, writers[i].id)
    }
  }

  applied (reader, t) {
    const writers = this.writers
    const seen = reader.seen
    if (!seen) return
    const store = reader.doc.store
    for (let i = 0; i < writers.length; i++) {
      const w = writers[i]
      if (w === reader) continue
      const clock = Y.getState(store, w.id)
      let c = seen[i]
      if (clock <= c) continue
      seen[i] = clock
      const st = w.sendTimes
      for (; c < clock; c++) {
        const s = st[c]
        if (s === s && s !== undefined) {
          this.samples.push(t - s)
          if (MULTI) (w.urlIndex === reader.urlIndex ? this.same : this.cross).push(t - s)
        }
        if (this.countDelivered) this.delivered++
        if (this.onDelivered) this.onDelivered(w, c)
      }
    }
  }
}

async function connectAll (clients, concurrency = 50) {
  let next = 0
  const worker = async () => {
    while (next < clients.length) {
      const c = clients[next++]
      await c.connect()
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, clients.length) }, worker))
}

const closeAll = clients => Promise.all(clients.map(c => c.close()))

async function waitFor (cond, timeoutMs, step = 5) {
  const end = now() + timeoutMs
  while (!cond()) {
    if (now() > end) return false
    await sleep(step)
  }
  return true
}

/** Warm the server's code paths (and the JIT) before measuring: two clients, 300 edits. */
async function warmup () {
  const room = new Room(`warmup-${RUN_ID}`)
  const a = new Client(room.name, room)
  const b = new Client(room.name, room)
  await connectAll([a, b])
  for (let i = 0; i < 300; i++) {
    a.type(false)
    if (i % 50 === 49) await sleep(5)
  }
  const ok = await waitFor(() => Y.getState(b.doc.store, a.id) >= 300, 10000)
  if (!ok) noteError('warmup: the second client did not receive all 300 edits within 10 s')
  await closeAll([a, b])
}

// ---------------------------------------------------------------------------------------------
// Phases

/** 20 clients in one room, each typing 5 characters/s (open loop): propagation latency. */
async function phasePropagation (cfg) {
  const room = new Room(`prop-${RUN_ID}`)
  const clients = Array.from({ length: cfg.clients }, () => new Client(room.name, room))
  await connectAll(clients)
  room.setWriters(clients)
  const interval = 1000 / cfg.ratePerClient
  let measuring = false
  let running = true
  const timers = clients.map((c, i) => {
    let h = null
    const start = setTimeout(() => {
      h = setInterval(() => { if (running) c.type(measuring) }, interval)
    }, (interval * i) / clients.length) // stagger the writers evenly
    return () => { clearTimeout(start); clearInterval(h) }
  })
  const p0 = serverProc()
  const g0 = process.cpuUsage()
  await sleep(cfg.warmupSeconds * 1000)
  measuring = true
  const t0 = now()
  await sleep(cfg.seconds * 1000)
  measuring = false
  running = false
  const elapsed = (now() - t0) / 1000
  timers.forEach(stop => stop())
  const caughtUp = () => clients.every(r => clients.every(w => Y.getState(r.doc.store, w.id) === Y.getState(w.doc.store, w.id)))
  await waitFor(caughtUp, DRAIN_GRACE_MS)
  const p1 = serverProc()
  const edits = clients.reduce((n, c) => n + c.sendTimes.filter(x => x === x).length, 0)
  const sent = edits * (clients.length - 1)
  room.samples.missing = Math.max(0, sent - room.samples.n)
  if (MULTI) { // expected samples per bucket: each measured edit × the readers on the same / other URLs
    let same = 0
    for (const w of clients) {
      const peers = clients.filter(r => r !== w && r.urlIndex === w.urlIndex).length
      same += w.sendTimes.filter(x => x === x).length * peers
    }
    room.same.missing = Math.max(0, same - room.same.n)
    room.cross.missing = Math.max(0, sent - same - room.cross.n)
  }
  const converged = caughtUp() && clients.every(c => c.text.toString() === clients[0].text.toString())
  await closeAll(clients)
  return {
    clients: cfg.clients,
    editsPerSecondOffered: cfg.clients * cfg.ratePerClient,
    measuredEdits: edits,
    measuredSeconds: round(elapsed, 2),
    latencyMs: room.samples.summary(),
    ...(MULTI ? {
      sameUrlLatencyMs: room.same.summary(),
      crossUrlLatencyMs: room.cross.summary(),
      clientsPerUrl: URLS.map((_, i) => clients.filter(c => c.urlIndex === i).length)
    } : {}),
    converged,
    serverCpuSeconds: cpuDelta(p0, p1),
    generatorCpuSeconds: round((process.cpuUsage(g0).user + process.cpuUsage(g0).system) / 1e6, 2)
  }
}

/** 10 rooms of 10 clients; each client sends its next edit once the others have its last one. */
async function phaseThroughput (cfg) {
  const rooms = []
  const all = []
  const samples = new Samples()
  for (let r = 0; r < cfg.rooms; r++) {
    const room = new Room(`tp-${RUN_ID}-${r}`)
    room.samples = samples
    rooms.push(room)
    for (let i = 0; i < cfg.clientsPerRoom; i++) all.push(new Client(room.name, room))
  }
  await connectAll(all)
  let running = true
  let measuring = false
  for (const room of rooms) {
    room.setWriters(room.clients)
    const others = room.clients.length - 1
    const remaining = new Map() // writer -> receivers still missing its in-flight edit
    room.onDelivered = (w, clock) => {
      if (clock !== w.inflight) return
      const left = remaining.get(w) - 1
      remaining.set(w, left)
      if (left === 0 && running) { remaining.set(w, others); w.inflight = Y.getState(w.doc.store, w.id); w.type(measuring) }
    }
    for (const w of room.clients) { remaining.set(w, others); w.inflight = Y.getState(w.doc.store, w.id) }
    for (const w of room.clients) w.type(false)
  }
  await sleep(cfg.warmupSeconds * 1000)
  const p0 = serverProc()
  const g0 = process.cpuUsage()
  measuring = true
  for (const room of rooms) room.countDelivered = true
  const t0 = now()
  await sleep(cfg.seconds * 1000)
  for (const room of rooms) room.countDelivered = false
  measuring = false
  const elapsed = (now() - t0) / 1000
  const p1 = serverProc()
  const g = process.cpuUsage(g0)
  running = false
  await sleep(500) // let the last in-flight edits land
  const delivered = rooms.reduce((n, r) => n + r.delivered, 0)
  const edits = all.reduce((n, c) => n + c.sendTimes.filter(x => x === x).length, 0)
  samples.missing = Math.max(0, edits * (cfg.clientsPerRoom - 1) - samples.n)
  await waitFor(() => rooms.every(r => r.clients.every(c => c.text.length === r.clients[0].text.length)), DRAIN_GRACE_MS)
  const converged = rooms.every(r => r.clients.every(c => c.text.toString() === r.clients[0].text.toString()))
  await closeAll(all)
  return {
    rooms: cfg.rooms,
    clientsPerRoom: cfg.clientsPerRoom,
    measuredSeconds: round(elapsed, 2),
    editsPerSecond: round(edits / elapsed, 1),
    deliveredPerSecond: round(delivered / elapsed, 1),
    latencyMs: samples.summary(),
    converged,
    serverCpuSeconds: cpuDelta(p0, p1),
    serverCpuMicrosPerDelivered: p0 && p1 && delivered ? round(cpuDelta(p0, p1) / delivered * 1e6, 2) : null,
    generatorCpuSeconds: round((g.user + g.system) / 1e6, 2)
  }
}

/** RSS of the server before and after 1000 idle, synced connections over 100 small documents. */
async function phaseMemory (cfg) {
  // Open and close a few connections first, so lazily loaded code is not counted.
  const warm = Array.from({ length: 20 }, (_, i) => new Client(`memwarm-${RUN_ID}-${i % 4}`))
  await connectAll(warm)
  await closeAll(warm)
  await sleep(1500)
  const before = serverProc()
  const clients = Array.from({ length: cfg.connections }, (_, i) => new Client(`mem-${RUN_ID}-${i % cfg.docs}`))
  const t0 = now()
  await connectAll(clients, cfg.connectConcurrency)
  const connectSeconds = (now() - t0) / 1000
  // The first client of each document writes a short paragraph; every client receives it.
  const paragraph = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(10).slice(0, cfg.docChars)
  for (let d = 0; d < cfg.docs; d++) clients[d].edit(() => clients[d].text.insert(0, paragraph))
  const ok = await waitFor(() => clients.every(c => c.text.length === cfg.docChars), 20000, 20)
  if (!ok) noteError(`memory: ${clients.filter(c => c.text.length !== cfg.docChars).length} clients lack the paragraph after 20 s`)
  await sleep(cfg.settleSeconds * 1000)
  const after = serverProc()
  const openSockets = clients.filter(c => c.ws.readyState === WebSocket.OPEN).length
  await closeAll(clients)
  await sleep(2000)
  const closed = serverProc()
  const perConn = before && after && !before.error && !after.error ? (after.rssKiB - before.rssKiB) / cfg.connections : null
  return {
    connections: cfg.connections,
    docs: cfg.docs,
    openAtMeasurement: openSockets,
    connectSeconds: round(connectSeconds, 2),
    rssBeforeKiB: before && before.rssKiB,
    rssAfterKiB: after && after.rssKiB,
    rssAfterCloseKiB: closed && closed.rssKiB,
    kibPerConnection: round(perConn, 2)
  }
}

/** One client types 30,000 single characters (pipelined), then fresh clients sync the doc. */
async function phaseSync (cfg) {
  const name = `sync-${RUN_ID}`
  const writer = new Client(name)
  // A fixed client ID (5 bytes as a varUint, like most random ones): every server then holds
  // a byte-identical document.
  writer.doc.clientID = writer.id = 3141592653
  await writer.connect()
  const rand = prng(cfg.seed)
  // Confirmed = acknowledged with SyncStatus (Hocuspocus), or, with y-websocket, covered by
  // the answer to a SyncStep1 sent after it: servers handle one connection's messages in
  // order, so that SyncStep2 means every earlier edit was applied. (Counting echoes does not
  // work: Samen and the Hocuspocus server merge the echoes of one event-loop turn.)
  const probes = [] // edits sent before each SyncStep1 probe, in order
  const probeEvery = Math.max(1, cfg.window >> 2)
  const confirmedByProbes = () => {
    const answered = writer.syncStep2In - 1 // the first SyncStep2 answered the handshake
    return answered > 0 ? probes[Math.min(answered, probes.length) - 1] : 0
  }
  const probe = sent => { probes.push(sent); writer.send(frame(writer.prefix, 0, 0, Y.encodeStateVector(writer.doc))) }
  const confirmed = () => HP ? writer.acks : confirmedByProbes()
  let wake = null
  writer.onProgress = () => { if (wake) { const w = wake; wake = null; w() } }
  let cursor = 0
  let inserts = 0
  let deletes = 0
  const t0 = now()
  for (let sent = 0; sent < cfg.edits; sent++) {
    while (sent - confirmed() >= cfg.window) {
      const progressed = await Promise.race([new Promise(resolve => { wake = resolve }), sleep(10000).then(() => 'timeout')])
      if (progressed === 'timeout') throw new Error(`sync: no progress for 10 s after ${sent} edits (${confirmed()} confirmed)`)
    }
    if (sent % 200 === 199) cursor = Math.floor(rand() * (writer.text.length + 1)) // the user clicks elsewhere
    if (cursor > 0 && rand() < 0.1) { // backspace
      writer.edit(() => writer.text.delete(cursor - 1, 1))
      cursor--
      deletes++
    } else {
      const ch = String.fromCharCode(97 + Math.floor(rand() * 26))
      writer.edit(() => writer.text.insert(cursor, ch))
      cursor++
      inserts++
    }
    if (!HP && (sent + 1) % probeEvery === 0) probe(sent + 1)
  }
  if (!HP && probes[probes.length - 1] !== cfg.edits) probe(cfg.edits)
  const ok = await waitFor(() => confirmed() >= cfg.edits, 60000, 10)
  if (!ok) noteError(`sync: only ${confirmed()} of ${cfg.edits} edits confirmed after 60 s`)
  const writeSeconds = (now() - t0) / 1000
  await sleep(1000)
  const expected = writer.text.toString()
  const runs = []
  for (let r = -cfg.warmupRuns; r < cfg.runs; r++) { // runs below 0 only warm both sides up
    const fresh = new Client(name)
    await fresh.connect()
    const correct = fresh.text.toString() === expected
    if (!correct) noteError(`sync run ${r}: fresh client's text differs from the writer's (${fresh.text.length} vs ${expected.length} chars)`)
    if (r >= 0) runs.push({
      fromOpenMs: round(fresh.syncedAt - fresh.openedAt),
      fromConnectMs: round(fresh.syncedAt - fresh.startedAt),
      syncStep2Bytes: fresh.syncBytes,
      correct
    })
    await fresh.close()
    await sleep(200)
  }
  await writer.close()
  return {
    edits: cfg.edits,
    inserts,
    deletes,
    finalChars: expected.length,
    writeSeconds: round(writeSeconds, 2),
    writeEditsPerSecond: round(cfg.edits / writeSeconds, 1),
    runs,
    medianFromOpenMs: round(median(runs.map(r => r.fromOpenMs))),
    medianFromConnectMs: round(median(runs.map(r => r.fromConnectMs))),
    allCorrect: runs.every(r => r.correct)
  }
}

/** Ramp the edit rate in one room of 10 writers; the last step whose delivered p99 <= 50 ms. */
async function phaseMaxrate (cfg) {
  const steps = []
  const runStep = async rate => {
    const room = new Room(`rate-${RUN_ID}-${Math.round(rate)}-${steps.length}`)
    const clients = Array.from({ length: cfg.clients }, () => new Client(room.name, room))
    try {
      await connectAll(clients)
    } catch (e) { // e.g. the server is still busy with the previous step's backlog
      await closeAll(clients)
      const step = { rate: Math.round(rate), pass: false, connectFailed: String(e.message || e), otherCores: null }
      steps.push(step)
      await sleep(2000)
      return step
    }
    room.setWriters(clients)
    for (const c of clients) if (HP) c.ackSamples = new Samples()
    const total = Math.round(rate * cfg.stepSeconds)
    const m0 = cpuMark()
    const p0 = serverProc()
    const g0 = process.cpuUsage()
    let sent = 0
    const t0 = now()
    let tLast = t0
    // Open loop, but never more than 10 ms worth of edits in one burst: a generator that falls
    // behind must not stop reading its sockets to catch up. If it cannot keep the rate, the
    // step ends at 1.2 × its length with fewer edits sent, and fails as generator-bound.
    const maxBurst = Math.ceil(rate / 100)
    await new Promise(resolve => {
      const tick = () => {
        const elapsed = (now() - t0) / 1000
        const due = Math.min(total, Math.floor(elapsed * rate))
        for (let burst = 0; sent < due && burst < maxBurst; burst++) { clients[sent % clients.length].type(true); sent++ }
        tLast = now()
        if (sent >= total || elapsed > cfg.stepSeconds * 1.2) { clearInterval(h); resolve() }
      }
      const h = setInterval(tick, 1)
    })
    const expected = sent * (clients.length - 1)
    await waitFor(() => room.samples.n >= expected, DRAIN_GRACE_MS)
    const p1 = serverProc()
    const m1 = cpuMark()
    const g = process.cpuUsage(g0)
    const stepSeconds = (now() - t0) / 1000
    room.samples.missing = expected - room.samples.n
    const s = room.samples.summary()
    const achieved = sent / ((tLast - t0) / 1000)
    const ack = new Samples()
    if (HP) for (const c of clients) for (let i = 0; i < c.ackSamples.n; i++) ack.push(c.ackSamples.a[i])
    await closeAll(clients)
    const pass = s.p99 !== null && s.p99 <= cfg.thresholdMs && achieved >= 0.95 * rate
    const step = {
      rate: Math.round(rate),
      achievedRate: round(achieved, 1),
      latencyMs: s,
      ackLatencyMs: HP ? ack.summary() : undefined,
      pass,
      otherCores: contention(m0, m1),
      serverCores: p0 && p1 ? round(cpuDelta(p0, p1) / stepSeconds, 2) : null,
      generatorCores: round((g.user + g.system) / 1e6 / stepSeconds, 2)
    }
    steps.push(step)
    await sleep(500)
    return step
  }
  // A step that fails while other work used a noticeable share of the machine is run once
  // more: the figure should describe the server, not the neighbours.
  const judgedStep = async rate => {
    let step = await runStep(rate)
    for (let retry = 0; retry < 1 && !step.pass && step.otherCores !== null && step.otherCores > cfg.maxOtherCores; retry++) {
      step.retried = true
      step = await runStep(rate)
    }
    return step
  }
  let lastPass = null
  let firstFail = null
  const began = now()
  const overBudget = () => (now() - began) / 1000 > cfg.budgetSeconds
  for (let rate = cfg.startRate; !overBudget(); rate = Math.min(rate * cfg.factor, cfg.maxRate)) {
    const step = await judgedStep(rate)
    if (step.pass) lastPass = rate
    else { firstFail = rate; break }
    if (rate >= cfg.maxRate) break // the last step runs at the cap itself
  }
  if (lastPass !== null && firstFail !== null) {
    for (let i = 0; i < cfg.bisect && !overBudget(); i++) {
      const mid = Math.sqrt(lastPass * firstFail)
      const step = await judgedStep(mid)
      if (step.pass) lastPass = mid
      else firstFail = mid
    }
  }
  // A failing step where the generator could not even send the target rate is a limit of
  // this machine's second core, not of the server: say so.
  const failing = steps.findLast(s => !s.pass && Math.round(firstFail) === s.rate)
  return {
    clients: cfg.clients,
    stepSeconds: cfg.stepSeconds,
    thresholdMs: cfg.thresholdMs,
    maxSustainedRate: lastPass === null ? 0 : Math.round(lastPass),
    firstFailingRate: firstFail === null ? null : Math.round(firstFail),
    generatorBound: failing && !failing.connectFailed ? failing.achievedRate < 0.95 * failing.rate || failing.generatorCores >= 0.9 : false,
    reachedMaxRate: firstFail === null,
    stoppedByBudget: overBudget(),
    steps
  }
}

// ---------------------------------------------------------------------------------------------

const PHASES = { propagation: phasePropagation, throughput: phaseThroughput, memory: phaseMemory, sync: phaseSync, maxrate: phaseMaxrate }

async function main () {
  const fn = PHASES[args.phase]
  if (!fn) throw new Error(`unknown phase ${args.phase}`)
  const cfg = SCALES[args.scale][args.phase]
  const started = now()
  let result
  let failure = null
  try {
    if (args.phase !== 'memory') await warmup()
    result = await fn(cfg)
  } catch (e) {
    failure = String(e && e.stack ? e.stack : e)
  }
  const out = {
    phase: args.phase,
    protocol: args.protocol,
    url: args.url,
    ...(MULTI ? { urls: URLS } : {}),
    ...(args.docPrefix ? { docPrefix: args.docPrefix } : {}),
    scale: args.scale,
    config: cfg,
    seconds: round((now() - started) / 1000, 2),
    result: result ?? null,
    failure,
    wire: {
      connects: stats.connects,
      framesIn: stats.framesIn,
      framesOut: stats.framesOut,
      unknownFrames: stats.unknownFrames,
      permissionDenied: stats.permissionDenied,
      syncStatusRejected: stats.syncStatusRejected,
      unexpectedCloseCount: stats.unexpectedCloseCount,
      unexpectedCloses: stats.unexpectedCloses,
      errors: stats.errors,
      extensions: [...stats.extensions]
    }
  }
  const text = JSON.stringify(out)
  if (args.out) writeFileSync(args.out, text + '\n')
  else process.stdout.write(text + '\n')
  process.exit(failure ? 1 : 0)
}

main()
