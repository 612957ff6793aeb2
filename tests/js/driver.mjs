// Samen integration-test driver: one Node process hosting any number of real Yjs clients
// (y-websocket 3.1.0 and @hocuspocus/provider 2.x / 3.x / 4.x), controlled over stdin/stdout.
//
// Protocol (one JSON object per line):
//   stdin   {"id": <int>, "cmd": <name>, ...args}
//   stdout  {"id": <same>, "ok": true, "result": ...} | {"id": <same>, "ok": false, "error": "..."}
//           {"event": "state", "client": <cid>, "state": <snapshot>}   (pushed whenever it changes)
//   stderr  free-form logs
// Commands: ping, connect, edit, awareness, snapshot, disconnect, kill, exit.
// Values of map-set / array-push / array-insert may be typed: {"$type": "map", "entries": {...}},
// {"$type": "text", "text": "..."} or {"$type": "array", "items": [...]} become a nested Y.Map,
// Y.Text or Y.Array (recursively); anything else is stored as the JSON value it is. An op with
// "path" (and "root": "array" | "map") acts on the nested type found by following the path
// (array indices, map keys) from the root named "name", e.g. the body Text of a message.
// The Python side is tests/integration/yjs_driver.py; see its docstring for the snapshot format.

import readline from 'node:readline'

import * as Y from 'yjs'
import { Awareness } from 'y-protocols/awareness'
import { readAuthMessage } from 'y-protocols/auth'
import * as decoding from 'lib0/decoding'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as hocuspocusV2 from 'hocuspocus-provider-v2'
import * as hocuspocusV3 from 'hocuspocus-provider-v3'
import * as hocuspocusV4 from 'hocuspocus-provider-v4'

const HOCUSPOCUS = {
  'hocuspocus-v2': hocuspocusV2,
  'hocuspocus-v3': hocuspocusV3,
  'hocuspocus-v4': hocuspocusV4
}
const KINDS = ['y-websocket', ...Object.keys(HOCUSPOCUS)]
const CLOSE_TIMEOUT_MS = 5000

// stdout carries the protocol only: libraries that log with console.log/info/debug go to stderr.
const log = (...args) => console.error('[driver]', ...args)
console.log = console.info = console.debug = (...args) => console.error(...args)
// One client per document per process is normal here; y-websocket adds a process 'exit' listener each.
process.setMaxListeners(0)

process.on('uncaughtException', (err) => log('uncaught exception:', err && err.stack ? err.stack : err))
process.on('unhandledRejection', (err) => log('unhandled rejection:', err && err.stack ? err.stack : err))

// ---------------------------------------------------------------------------------------------
// Output

let stdoutBroken = false
process.stdout.on('error', () => {
  stdoutBroken = true
  process.exit(0)
})

const jsonReplacer = (_key, value) => (typeof value === 'bigint' ? value.toString() : value)

function writeLine (obj) {
  if (!stdoutBroken) process.stdout.write(JSON.stringify(obj, jsonReplacer) + '\n')
}

/** Deep copy with object keys sorted, so equal states serialise identically. */
function canonical (value) {
  if (Array.isArray(value)) return value.map(canonical)
  if (value instanceof Uint8Array) return Array.from(value)
  if (value !== null && typeof value === 'object') {
    const out = {}
    for (const key of Object.keys(value).sort()) out[key] = canonical(value[key])
    return out
  }
  return value === undefined ? null : value
}

// ---------------------------------------------------------------------------------------------
// Clients and snapshots

/** @type {Map<string, ClientRecord>} */
const clients = new Map()

// Root names reported in every snapshot. Names used by `edit` ops are added, so that a root one
// client writes shows up in the snapshots of the other clients (of this process) too.
const rootNames = {
  text: new Set(['t']),
  map: new Set(['m']),
  array: new Set(['a']),
  xml: new Set(['default'])
}
const DEFAULT_ROOT = { text: 't', map: 'm', array: 'a', xml: 'default' }

class ClientRecord {
  constructor (cid, kind) {
    this.cid = cid
    this.kind = kind
    this.closed = false
    /** @type {Map<string, DocEntry>} */
    this.docs = new Map()
    /** Hocuspocus only: the shared HocuspocusProviderWebsocket. */
    this.socket = null
    this.lastJson = null
  }
}

class DocEntry {
  constructor (name, ydoc, awareness) {
    this.name = name
    this.ydoc = ydoc
    this.awareness = awareness
    this.provider = null
    this.authFailed = null
    this.authFailures = [] // every permission-denied reason, oldest first (at most 10)
    this.syncRefused = 0 // Hocuspocus: SyncStatus messages that said "not applied"
    this.syncStep1s = 0 // y-websocket: SyncStep1 messages from the server (the first greets; more: resyncs)
    /** y-websocket only: the code and reason of the last close by the server. */
    this.lastClose = null
  }
}

function readRoot (ydoc, type, name) {
  switch (type) {
    case 'text': return ydoc.getText(name).toString()
    case 'map': return canonical(ydoc.getMap(name).toJSON())
    case 'array': return canonical(ydoc.getArray(name).toJSON())
    case 'xml': return ydoc.getXmlFragment(name).toString()
  }
}

function safeReadRoot (ydoc, type, name) {
  try {
    return readRoot(ydoc, type, name)
  } catch (err) {
    return `<error: ${err.message}>`
  }
}

function docStatus (client, entry) {
  if (client.closed) return 'disconnected'
  if (client.kind === 'y-websocket') {
    const p = entry.provider
    return p.wsconnected ? 'connected' : p.wsconnecting ? 'connecting' : 'disconnected'
  }
  return client.socket.status
}

function docSnapshot (client, entry) {
  const { ydoc, awareness, provider } = entry
  const hocuspocus = client.kind !== 'y-websocket'
  const text = {}
  for (const name of [...rootNames.text].sort()) text[name] = safeReadRoot(ydoc, 'text', name)
  const other = {}
  for (const type of ['map', 'array', 'xml']) {
    for (const name of [...rootNames[type]].sort()) {
      if (name !== DEFAULT_ROOT[type]) other[`${type}:${name}`] = safeReadRoot(ydoc, type, name)
    }
  }
  const peers = {}
  const ids = [...awareness.getStates().keys()].filter((id) => id !== ydoc.clientID).sort((a, b) => a - b)
  for (const id of ids) peers[String(id)] = canonical(awareness.getStates().get(id))
  return {
    synced: Boolean(provider.synced),
    status: docStatus(client, entry),
    unsynced: hocuspocus ? provider.unsyncedChanges : null,
    hasUnsyncedChanges: hocuspocus ? provider.hasUnsyncedChanges : null,
    authenticated: hocuspocus ? Boolean(provider.isAuthenticated) : null,
    authFailed: entry.authFailed,
    authFailures: entry.authFailures,
    syncRefused: hocuspocus ? entry.syncRefused : null,
    syncStep1s: hocuspocus ? null : entry.syncStep1s,
    closeCode: entry.lastClose ? entry.lastClose.code : null,
    closeReason: entry.lastClose ? entry.lastClose.reason : null,
    scope: hocuspocus ? (provider.authorizedScope ?? null) : null,
    text,
    map: safeReadRoot(ydoc, 'map', 'm'),
    array: safeReadRoot(ydoc, 'array', 'a'),
    xml: safeReadRoot(ydoc, 'xml', 'default'),
    other,
    awareness: peers,
    clientID: ydoc.clientID
  }
}

function snapshot (client) {
  const docs = {}
  for (const name of [...client.docs.keys()].sort()) docs[name] = docSnapshot(client, client.docs.get(name))
  return { cid: client.cid, kind: client.kind, closed: client.closed, docs }
}

// State events are coalesced: a burst of changes in one tick gives one event per client, and an
// event is only written when the snapshot differs from the last one written for that client.
const dirty = new Set()
let flushScheduled = false

function markDirty (client) {
  dirty.add(client)
  if (!flushScheduled) {
    flushScheduled = true
    setImmediate(flushDirty)
  }
}

function emitState (client) {
  let state
  try {
    state = snapshot(client)
  } catch (err) {
    log(`snapshot of ${client.cid} failed:`, err.stack || err)
    return
  }
  const json = JSON.stringify(state, jsonReplacer)
  if (json === client.lastJson) return
  client.lastJson = json
  writeLine({ event: 'state', client: client.cid, state })
}

function flushDirty () {
  flushScheduled = false
  const pending = [...dirty]
  dirty.clear()
  for (const client of pending) emitState(client)
}

/** Calls markDirty after every event the object emits (works for lib0 Observable and Hocuspocus' EventEmitter). */
function watchEmits (obj, client) {
  const emit = obj.emit
  obj.emit = function (...args) {
    try {
      return emit.apply(this, args)
    } finally {
      markDirty(client)
    }
  }
}

function newDoc (client, name) {
  const ydoc = new Y.Doc()
  for (const type of Object.keys(DEFAULT_ROOT)) safeReadRoot(ydoc, type, DEFAULT_ROOT[type])
  const awareness = new Awareness(ydoc)
  ydoc.on('update', () => markDirty(client))
  awareness.on('change', () => markDirty(client))
  const entry = new DocEntry(name, ydoc, awareness)
  client.docs.set(name, entry)
  return entry
}

// ---------------------------------------------------------------------------------------------
// Argument checks

class BadArgument extends Error {}

function need (cond, message) {
  if (!cond) throw new BadArgument(message)
}
const isInt = (v) => Number.isInteger(v) && v >= 0
const isStr = (v) => typeof v === 'string'
const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)

function getClient (args, { open = false } = {}) {
  need(isStr(args.cid), 'cid must be a string')
  const client = clients.get(args.cid)
  need(client !== undefined, `unknown client ${JSON.stringify(args.cid)}`)
  need(!open || !client.closed, `client ${JSON.stringify(args.cid)} is closed`)
  return client
}

function getDoc (client, name) {
  need(isStr(name), 'doc must be a string')
  const entry = client.docs.get(name)
  need(entry !== undefined, `client ${client.cid} has no document ${JSON.stringify(name)}`)
  return entry
}

const splitRoot = (root) => [root.slice(0, root.indexOf(':')), root.slice(root.indexOf(':') + 1)]
const isRootName = (v) => isStr(v) && Object.hasOwn(rootNames, splitRoot(v)[0]) && splitRoot(v)[1].length > 0

function withQuery (url, params) {
  if (!params || Object.keys(params).length === 0) return url
  const query = new URLSearchParams(params).toString()
  return url + (url.includes('?') ? '&' : '?') + query
}

// ---------------------------------------------------------------------------------------------
// Commands

function cmdConnect (args) {
  const { cid, kind, url, docs } = args
  need(isStr(cid) && cid.length > 0, 'cid must be a non-empty string')
  need(KINDS.includes(kind), `kind must be one of ${KINDS.join(', ')}`)
  need(isStr(url) && /^wss?:\/\//.test(url) && URL.canParse(url), 'url must be a ws:// or wss:// URL')
  need(Array.isArray(docs) && docs.length > 0 && docs.every((d) => isStr(d) && d.length > 0),
    'docs must be a non-empty list of non-empty strings')
  need(new Set(docs).size === docs.length, 'docs must not repeat a name')
  need(args.token == null || isStr(args.token), 'token must be a string')
  need(args.user == null || isStr(args.user), 'user must be a string')
  need(args.params == null || isPlainObject(args.params), 'params must be an object')
  need(args.options == null || isPlainObject(args.options), 'options must be an object')
  need(args.roots == null || (Array.isArray(args.roots) && args.roots.every(isRootName)),
    'roots must be a list of "text:NAME", "map:NAME", "array:NAME" or "xml:NAME"')
  const existing = clients.get(cid)
  need(existing === undefined || existing.closed, `client ${JSON.stringify(cid)} already exists`)

  for (const root of args.roots ?? []) {
    const [type, name] = splitRoot(root)
    rootNames[type].add(name)
  }
  const client = new ClientRecord(cid, kind)
  try {
    buildClient(client, args)
  } catch (err) {
    abandon(client)
    throw err
  }
  clients.set(cid, client)
  return snapshot(client)
}

/** Best-effort teardown of a client whose construction failed half-way. */
function abandon (client) {
  client.closed = true
  const attempt = (what, fn) => {
    try { fn() } catch (err) { log(`${client.cid}: cleanup (${what}) failed: ${err.message}`) }
  }
  if (client.socket) attempt('socket', () => neverReconnect(client.socket))
  for (const entry of client.docs.values()) {
    if (entry.provider) {
      attempt('provider', () => { entry.provider.shouldConnect = false })
      attempt('provider', () => entry.provider.destroy())
    }
    attempt('awareness', () => entry.awareness.destroy())
  }
  if (client.socket) attempt('socket', () => client.socket.destroy())
}

function buildClient (client, args) {
  const { cid, kind, url, docs } = args
  const options = args.options ?? {}
  if (kind === 'y-websocket') {
    need(docs.length === 1, 'y-websocket takes exactly one document')
    const entry = newDoc(client, docs[0])
    const provider = new WebsocketProvider(url, docs[0], entry.ydoc, {
      WebSocketPolyfill: WebSocket,
      awareness: entry.awareness,
      // Several clients of one process share lib0's in-process BroadcastChannel: without this,
      // two clients of the same room would sync with each other without the server.
      disableBc: true,
      params: args.params ?? {},
      ...options
    })
    entry.provider = provider
    // y-websocket only console.warns a permission-denied auth message; record the reason.
    provider.messageHandlers[2] = (_encoder, decoder) => {
      readAuthMessage(decoder, entry.ydoc, (_ydoc, reason) => {
        log(`${cid}/${entry.name}: permission denied: ${reason}`)
        entry.authFailed = reason
        if (entry.authFailures.length < 10) entry.authFailures.push(reason)
        markDirty(client)
      })
    }
    countSyncStep1s(provider, entry, client)
    provider.on('connection-close', (event) => {
      if (event) entry.lastClose = { code: event.code, reason: event.reason }
      markDirty(client)
    })
    provider.on('connection-error', (event) => log(`${cid}/${entry.name}: connection error: ${event?.message ?? event?.type ?? event}`))
    watchEmits(provider, client)
    if (args.user != null) entry.awareness.setLocalState({ user: { name: args.user } })
  } else {
    const mod = HOCUSPOCUS[kind]
    const socket = new mod.HocuspocusProviderWebsocket({
      url: withQuery(url, args.params),
      WebSocketPolyfill: WebSocket,
      ...options
    })
    client.socket = socket
    watchEmits(socket, client)
    for (const name of docs) {
      const entry = newDoc(client, name)
      const config = {
        websocketProvider: socket,
        name,
        document: entry.ydoc,
        awareness: entry.awareness,
        token: args.token ?? 'token'
      }
      // v2 also syncs through lib0's in-process BroadcastChannel unless told not to.
      if (kind === 'hocuspocus-v2') config.broadcast = false
      const provider = new mod.HocuspocusProvider(config)
      entry.provider = provider
      countRefusals(provider, entry, client)
      provider.on('authenticationFailed', (data) => {
        log(`${cid}/${name}: authentication failed: ${data?.reason}`)
        entry.authFailed = data?.reason ?? 'unknown'
        if (entry.authFailures.length < 10) entry.authFailures.push(entry.authFailed)
      })
      provider.on('authenticated', () => {
        entry.authFailed = null
      })
      watchEmits(provider, client)
      if (args.user != null) entry.awareness.setLocalState({ user: { name: args.user } })
      // v3/v4 only attach by themselves when they own the socket; v2 attached in its constructor.
      if (kind !== 'hocuspocus-v2') provider.attach()
    }
  }
}

const HOCUSPOCUS_SYNC_STATUS = 8

/** Count the server's SyncStatus(false) answers: the providers only log them. */
function countRefusals (provider, entry, client) {
  const onMessage = provider.onMessage
  provider.onMessage = function (event) {
    try {
      const decoder = decoding.createDecoder(new Uint8Array(event.data))
      decoding.readVarString(decoder)
      if (decoding.readVarUint(decoder) === HOCUSPOCUS_SYNC_STATUS && decoding.readVarInt(decoder) !== 1) {
        entry.syncRefused += 1
        markDirty(client)
      }
    } catch (err) {
      log(`${client.cid}/${entry.name}: could not peek at a message: ${err.message}`)
    }
    return onMessage.call(this, event)
  }
}

const YWEBSOCKET_SYNC = 0
const SYNC_STEP1 = 0

/** Count the server's SyncStep1 messages (after a refused update the server sends one again). */
function countSyncStep1s (provider, entry, client) {
  const handle = provider.messageHandlers[YWEBSOCKET_SYNC]
  provider.messageHandlers[YWEBSOCKET_SYNC] = (encoder, decoder, ...rest) => {
    try {
      if (decoding.readVarUint(decoding.clone(decoder)) === SYNC_STEP1) {
        entry.syncStep1s += 1
        markDirty(client)
      }
    } catch (err) {
      log(`${client.cid}/${entry.name}: could not peek at a sync message: ${err.message}`)
    }
    return handle(encoder, decoder, ...rest)
  }
}

/** A JSON value, or a typed one ({"$type": "map" | "text" | "array", ...}) as a new Yjs type. */
function toY (value) {
  if (!isPlainObject(value) || !Object.hasOwn(value, '$type')) {
    if (Array.isArray(value)) return value.map(toY)
    return value
  }
  switch (value.$type) {
    case 'map': {
      need(isPlainObject(value.entries), 'a typed map needs entries (an object)')
      const map = new Y.Map()
      for (const [key, item] of Object.entries(value.entries)) map.set(key, toY(item))
      return map
    }
    case 'text':
      need(isStr(value.text), 'a typed text needs text (a string)')
      return new Y.Text(value.text)
    case 'array': {
      need(Array.isArray(value.items), 'a typed array needs items (a list)')
      const array = new Y.Array()
      array.insert(0, value.items.map(toY))
      return array
    }
  }
  throw new BadArgument(`unknown $type ${JSON.stringify(value.$type)}`)
}

/**
 * The type an op acts on: its root (by the op's own type), or, with `path`, the nested type
 * reached from root `op.root` (named `op.name`) by array indices and map keys.
 */
function target (doc, op, kind) {
  if (op.path === undefined) {
    const get = { text: 'getText', map: 'getMap', array: 'getArray' }[kind]
    return () => doc[get](op.name)
  }
  need(Array.isArray(op.path) && op.path.every((step) => isInt(step) || isStr(step)),
    'path must be a list of array indices and map keys')
  need(op.root === 'array' || op.root === 'map', 'an op with a path needs root "array" or "map"')
  need(isStr(op.name) && op.name.length > 0, 'an op with a path needs the root name')
  const want = { text: Y.Text, map: Y.Map, array: Y.Array }[kind]
  return () => {
    let node = op.root === 'array' ? doc.getArray(op.name) : doc.getMap(op.name)
    for (const step of op.path) {
      const next = node instanceof Y.Array || node instanceof Y.Map ? node.get(step) : undefined
      if (next === undefined) throw new BadArgument(`nothing at ${JSON.stringify(step)} of path ${JSON.stringify(op.path)}`)
      node = next
    }
    if (!(node instanceof want)) throw new BadArgument(`path ${JSON.stringify(op.path)} does not lead to a ${kind}`)
    return node
  }
}

/** The root type whose name an op makes show in snapshots. */
const rootType = (op, kind) => (op.path === undefined ? kind : op.root)

const OPS = {
  'text-insert': (doc, op) => {
    need(isInt(op.index) && isStr(op.value), 'text-insert needs index (int >= 0) and value (string)')
    need(op.format == null || isPlainObject(op.format), 'format must be an object')
    const text = target(doc, op, 'text')
    return { type: rootType(op, 'text'), apply: () => text().insert(op.index, op.value, op.format ?? undefined) }
  },
  'text-delete': (doc, op) => {
    need(isInt(op.index) && isInt(op.length), 'text-delete needs index and length (ints >= 0)')
    const text = target(doc, op, 'text')
    return { type: rootType(op, 'text'), apply: () => text().delete(op.index, op.length) }
  },
  'map-set': (doc, op) => {
    need(isStr(op.key) && 'value' in op, 'map-set needs key (string) and value')
    const map = target(doc, op, 'map')
    return { type: rootType(op, 'map'), apply: () => map().set(op.key, toY(op.value)) }
  },
  'map-delete': (doc, op) => {
    need(isStr(op.key), 'map-delete needs key (string)')
    const map = target(doc, op, 'map')
    return { type: rootType(op, 'map'), apply: () => map().delete(op.key) }
  },
  'array-push': (doc, op) => {
    need(Array.isArray(op.values), 'array-push needs values (list)')
    const array = target(doc, op, 'array')
    return { type: rootType(op, 'array'), apply: () => array().push(op.values.map(toY)) }
  },
  'array-insert': (doc, op) => {
    need(isInt(op.index) && Array.isArray(op.values), 'array-insert needs index (int >= 0) and values (list)')
    const array = target(doc, op, 'array')
    return { type: rootType(op, 'array'), apply: () => array().insert(op.index, op.values.map(toY)) }
  },
  'array-delete': (doc, op) => {
    need(isInt(op.index) && isInt(op.length), 'array-delete needs index and length (ints >= 0)')
    const array = target(doc, op, 'array')
    return { type: rootType(op, 'array'), apply: () => array().delete(op.index, op.length) }
  },
  'xml-insert-paragraph': (doc, op) => {
    need(isInt(op.index) && isStr(op.text), 'xml-insert-paragraph needs index (int >= 0) and text (string)')
    return {
      type: 'xml',
      apply: () => {
        const paragraph = new Y.XmlElement('paragraph')
        doc.getXmlFragment(op.name).insert(op.index, [paragraph])
        paragraph.insert(0, [new Y.XmlText(op.text)])
      }
    }
  },
  'xml-delete': (doc, op) => {
    need(isInt(op.index) && isInt(op.length), 'xml-delete needs index and length (ints >= 0)')
    return { type: 'xml', apply: () => doc.getXmlFragment(op.name).delete(op.index, op.length) }
  }
}

function cmdEdit (args) {
  const client = getClient(args)
  const entry = getDoc(client, args.doc)
  need(Array.isArray(args.ops), 'ops must be a list')
  // Check every op before applying any, so that a malformed op does not leave half an edit.
  const steps = args.ops.map((op, i) => {
    need(isPlainObject(op) && Object.hasOwn(OPS, op.type), `op ${i}: unknown op type ${JSON.stringify(op?.type)}`)
    need(op.name === undefined || (isStr(op.name) && op.name.length > 0), `op ${i}: name must be a non-empty string`)
    let prepared
    try {
      prepared = OPS[op.type](entry.ydoc, op)
    } catch (err) {
      throw err instanceof BadArgument ? new BadArgument(`op ${i}: ${err.message}`) : err
    }
    if (op.name === undefined) op.name = DEFAULT_ROOT[prepared.type]
    return { ...prepared, name: op.name }
  })
  // Index errors (e.g. past the end) can still throw inside the transaction; Yjs has no rollback,
  // so the ops before the failing one stay applied. The error is reported to the caller.
  entry.ydoc.transact(() => {
    for (const step of steps) step.apply()
  })
  for (const step of steps) rootNames[step.type].add(step.name)
  markDirty(client)
  return null
}

function cmdAwareness (args) {
  const client = getClient(args)
  const entry = getDoc(client, args.doc)
  need('state' in args, 'state is required (an object or null)')
  need(args.state === null || isPlainObject(args.state), 'state must be an object or null')
  entry.awareness.setLocalState(args.state)
  markDirty(client)
  return null
}

function cmdSnapshot (args) {
  return snapshot(getClient(args))
}

/** Resolves once the `ws` socket is closed; terminates it if that takes longer than timeoutMs. */
function whenClosed (ws, timeoutMs = CLOSE_TIMEOUT_MS) {
  if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      log(`socket to ${ws.url} did not close within ${timeoutMs} ms; terminating it`)
      try { ws.terminate() } catch (err) { log('terminate failed:', err) }
      resolve()
    }, timeoutMs)
    ws.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

const rawSockets = (client) => client.kind === 'y-websocket'
  ? [...client.docs.values()].map((e) => e.provider.ws).filter(Boolean)
  : [client.socket.webSocket].filter(Boolean)

/** A `ws` socket closed while still CONNECTING emits 'error'; without a listener that is an uncaught exception. */
function tolerateErrors (client, sockets) {
  for (const ws of sockets) ws.on('error', (err) => log(`${client.cid}: error while closing: ${err.message}`))
}

/**
 * Make sure a Hocuspocus socket never connects again. v3 schedules `setTimeout(connect, delay)`
 * after a server-side close without keeping the timer, and connect() sets shouldConnect = true
 * again: destroying the socket inside that window would otherwise resurrect it a moment later.
 */
function neverReconnect (socket) {
  socket.shouldConnect = false
  socket.connect = async () => {}
  if (socket.cancelWebsocketRetry) socket.cancelWebsocketRetry()
  if (socket.clearReconnectTimeout) socket.clearReconnectTimeout()
}

async function closeGracefully (client) {
  if (client.socket) neverReconnect(client.socket)
  const sockets = rawSockets(client)
  tolerateErrors(client, sockets)
  const closed = Promise.all(sockets.map((ws) => whenClosed(ws)))
  if (client.kind === 'y-websocket') {
    for (const entry of client.docs.values()) {
      // destroy() -> disconnect(): sends the awareness removal (same clock, state null), then closes.
      entry.provider.destroy()
    }
  } else {
    // Each provider sends its awareness removal and (v3/v4: on detach, v2: in destroy) a CLOSE
    // message; the socket's destroy() then closes the WebSocket with a close handshake.
    for (const entry of client.docs.values()) entry.provider.destroy()
    client.socket.destroy()
  }
  await closed
  for (const entry of client.docs.values()) entry.awareness.destroy()
}

async function killAbruptly (client) {
  // 1. No reconnect, whatever happens next.
  if (client.kind === 'y-websocket') {
    for (const entry of client.docs.values()) entry.provider.shouldConnect = false
  } else {
    neverReconnect(client.socket)
  }
  // 2. Destroy the TCP socket: no close frame, and nothing queued after this reaches the wire
  //    (both providers only send while readyState is OPEN; afterwards it is CLOSING/CLOSED).
  const sockets = rawSockets(client)
  tolerateErrors(client, sockets)
  const closed = Promise.all(sockets.map((ws) => whenClosed(ws)))
  for (const ws of sockets) ws.terminate()
  // 3. Wait until the providers have seen the close, then tear them down. Their awareness
  //    removal and CLOSE messages now go nowhere (queued on a dead socket, then dropped).
  await closed
  for (const entry of client.docs.values()) entry.provider.destroy()
  if (client.socket) client.socket.destroy()
  for (const entry of client.docs.values()) entry.awareness.destroy()
}

async function cmdClose (args, abrupt) {
  const client = getClient(args, { open: true })
  client.closed = true
  if (abrupt) await killAbruptly(client)
  else await closeGracefully(client)
  markDirty(client)
  return null
}

async function closeAll () {
  const open = [...clients.values()].filter((client) => !client.closed)
  await Promise.all(open.map(async (client) => {
    client.closed = true
    try {
      await closeGracefully(client)
    } catch (err) {
      log(`closing ${client.cid} failed:`, err.stack || err)
    }
  }))
}

let exiting = false

async function shutdown (code) {
  if (exiting) return
  exiting = true
  await closeAll()
  flushDirty()
  if (stdoutBroken) process.exit(code)
  process.stdout.write('', () => process.exit(code))
}

const COMMANDS = {
  ping: () => 'pong',
  connect: cmdConnect,
  edit: cmdEdit,
  awareness: cmdAwareness,
  snapshot: cmdSnapshot,
  disconnect: (args) => cmdClose(args, false),
  kill: (args) => cmdClose(args, true)
}

// ---------------------------------------------------------------------------------------------
// Main loop: commands run one at a time, in arrival order.

let queue = Promise.resolve()

function reply (id, ok, payload) {
  flushDirty() // state events caused by a command precede its reply
  writeLine(ok ? { id, ok: true, result: payload === undefined ? null : payload } : { id, ok: false, error: payload })
}

async function handleLine (line) {
  if (line.trim() === '') return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    reply(null, false, `invalid JSON: ${err.message}`)
    return
  }
  const id = isPlainObject(msg) && Number.isInteger(msg.id) ? msg.id : null
  if (id === null) {
    reply(null, false, 'a command needs an integer "id"')
    return
  }
  if (msg.cmd === 'exit') {
    reply(id, true, null)
    await shutdown(0)
    return
  }
  if (!Object.hasOwn(COMMANDS, msg.cmd)) {
    reply(id, false, `unknown command ${JSON.stringify(msg.cmd)}`)
    return
  }
  try {
    const result = await COMMANDS[msg.cmd](msg)
    reply(id, true, result)
  } catch (err) {
    if (!(err instanceof BadArgument)) log(`command ${msg.cmd} failed:`, err.stack || err)
    reply(id, false, err && err.message ? err.message : String(err))
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  queue = queue.then(() => handleLine(line))
})
rl.on('close', () => {
  queue = queue.then(() => shutdown(0))
})
log(`ready (node ${process.version}, yjs clients: ${KINDS.join(', ')})`)
