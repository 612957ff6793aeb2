// Samen integration-test driver: real y-prosemirror editors, no browser.
//
// Each client is a Y.Doc synced by @hocuspocus/provider (v3) and a ProseMirror EditorState
// with the Tiptap schema (getSchema of StarterKit + tables, task lists, mentions, images)
// and y-prosemirror's ySyncPlugin. There is no DOM: a headless view holds the state,
// applies transactions and runs the plugin views after each one, as EditorView does, so
// the sync plugin's binding (ProsemirrorBinding) works exactly as in a browser.
//
// Protocol (one JSON object per line):
//   stdin   {"id": <int>, "cmd": <name>, ...args}
//   stdout  {"id": <same>, "ok": true, "result": ...} | {"id": <same>, "ok": false, "error": "..."}
//   stderr  free-form logs
// Commands (each answered when done; commands run concurrently):
//   open {cid, url, document, token}  sync a page document; answers once synced
//   script {cid, anchor, steps}       type into the section after the level-2 heading `anchor`,
//                                     one transaction per keystroke (see runStep)
//   json {cid}                        the editor's document as ProseMirror JSON
//   converged {cids, within}          answers when every client's document is the same and
//                                     nothing is unacknowledged (waits on events)
//   refused {cid, within}            answers once the server refused the client's document
//   close {cid}, exit
// The Python side is tests/integration/prosemirror_driver.py.

import readline from 'node:readline'

import * as Y from 'yjs'
import WebSocket from 'ws'
import { getSchema } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import { Table, TableRow, TableHeader, TableCell } from '@tiptap/extension-table'
import { TaskList, TaskItem } from '@tiptap/extension-list'
import Mention from '@tiptap/extension-mention'
import Image from '@tiptap/extension-image'
import { EditorState } from 'prosemirror-state'
import { ySyncPlugin } from 'y-prosemirror'
import * as hocuspocus from 'hocuspocus-provider-v3'

const log = (...args) => console.error('[pm-driver]', ...args)
console.log = console.info = console.debug = (...args) => console.error(...args)
process.on('uncaughtException', (err) => log('uncaught exception:', err?.stack ?? err))
process.on('unhandledRejection', (err) => log('unhandled rejection:', err?.stack ?? err))

// The schema of a Tiptap editor with these extensions (nested task lists, as wikis allow).
export const schema = getSchema([
  StarterKit, Table, TableRow, TableHeader, TableCell, TaskList, TaskItem.configure({ nested: true }),
  Mention, Image
])

const clients = new Map()
const waiters = new Set() // re-checked whenever a document or a provider changes

function changed () {
  for (const check of [...waiters]) check()
}

/** The part of EditorView that plugins use: state, dispatch, plugin views, focus. */
class HeadlessView {
  constructor (state) {
    this.state = state
    this.pluginViews = []
    for (const plugin of state.plugins) {
      if (plugin.spec.view) this.pluginViews.push(plugin.spec.view(this))
    }
  }

  dispatch (tr) {
    const previous = this.state
    this.state = this.state.apply(tr)
    for (const view of this.pluginViews) view.update?.(this, previous)
    changed()
  }

  hasFocus () { return false }

  destroy () {
    for (const view of this.pluginViews) view.destroy?.()
  }
}

function open ({ cid, url, document, token }) {
  if (clients.has(cid)) throw new Error(`client ${cid} exists`)
  const ydoc = new Y.Doc()
  const socket = new hocuspocus.HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  const provider = new hocuspocus.HocuspocusProvider({ websocketProvider: socket, name: document, document: ydoc, token })
  const client = { cid, ydoc, socket, provider, view: null, synced: false, failed: null }
  clients.set(cid, client)
  ydoc.on('update', changed)
  provider.on('unsyncedChanges', changed)
  provider.on('authenticationFailed', ({ reason }) => { client.failed = reason; changed() })
  provider.attach()
  return new Promise((resolve, reject) => {
    provider.on('synced', () => {
      if (client.view !== null) return
      const fragment = ydoc.getXmlFragment('default')
      client.view = new HeadlessView(EditorState.create({ schema, plugins: [ySyncPlugin(fragment)] }))
      client.synced = true
      resolve({ doc: client.view.state.doc.toJSON() })
    })
    provider.on('authenticationFailed', ({ reason }) => reject(new Error(`authentication failed: ${reason}`)))
  })
}

// -- editing -------------------------------------------------------------------------------

/** [from, to) of the top-level blocks after the level-2 heading `anchor`, up to the next one. */
function section (doc, anchor) {
  let start = null
  let end = doc.content.size
  doc.forEach((node, offset) => {
    const isSectionHeading = node.type.name === 'heading' && node.attrs.level === 2
    if (start === null && isSectionHeading && node.textContent === anchor) {
      start = offset + node.nodeSize
    } else if (start !== null && isSectionHeading && end === doc.content.size && offset >= start) {
      end = offset
    }
  })
  if (start === null) throw new Error(`no section ${anchor}`)
  return [start, end]
}

/** Where typing goes: the end of the last textblock of the section. */
function cursor (doc, anchor) {
  const [start, end] = section(doc, anchor)
  let at = null
  doc.nodesBetween(start, end, (node, pos) => {
    if (node.isTextblock) at = pos + 1 + node.content.size
  })
  if (at === null) throw new Error(`nothing to type into in ${anchor}`)
  return at
}

const pause = () => new Promise((resolve) => setImmediate(resolve))

async function runStep (client, anchor, step) {
  const view = client.view
  const { state } = view
  switch (step.op) {
    case 'block': { // a block at the end of the section (a paste, or Enter at its end)
      const [, end] = section(state.doc, anchor)
      view.dispatch(state.tr.insert(end, schema.nodeFromJSON(step.node)))
      return
    }
    case 'type': { // keystrokes, each its own transaction (and Yjs update)
      const marks = (step.marks ?? []).map((m) => schema.mark(m.type, m.attrs ?? null))
      for (const ch of step.text) {
        const at = cursor(view.state.doc, anchor)
        view.dispatch(view.state.tr.insert(at, schema.text(ch, marks)))
        await pause()
      }
      return
    }
    case 'inline': { // an inline node at the cursor (a mention picked from the list)
      const at = cursor(state.doc, anchor)
      view.dispatch(state.tr.insert(at, schema.nodeFromJSON(step.node)))
      return
    }
    case 'check': { // tick the last task of the section
      const [start, end] = section(state.doc, anchor)
      let found = null
      state.doc.nodesBetween(start, end, (node, pos) => {
        if (node.type.name === 'taskItem') found = [node, pos]
      })
      if (found === null) throw new Error(`no task in ${anchor}`)
      view.dispatch(state.tr.setNodeMarkup(found[1], null, { ...found[0].attrs, checked: true }))
      return
    }
    default:
      throw new Error(`unknown step ${step.op}`)
  }
}

async function script ({ cid, anchor, steps }) {
  const client = need(cid)
  for (const step of steps) {
    await runStep(client, anchor, step)
    await pause()
  }
  return { doc: client.view.state.doc.toJSON() }
}

// -- waiting -------------------------------------------------------------------------------

function need (cid) {
  const client = clients.get(cid)
  if (client === undefined || client.view === null) throw new Error(`no synced client ${cid}`)
  return client
}

function converged ({ cids, within = 20000 }) {
  const group = cids.map(need)
  const describe = () => group.map((c) => ({
    cid: c.cid, unsynced: c.provider.unsyncedChanges, failed: c.failed, doc: JSON.stringify(c.view.state.doc.toJSON())
  }))
  return new Promise((resolve, reject) => {
    const check = () => {
      const docs = group.map((c) => JSON.stringify(c.view.state.doc.toJSON()))
      const idle = group.every((c) => c.provider.unsyncedChanges === 0 && !c.provider.hasUnsyncedChanges)
      if (idle && docs.every((d) => d === docs[0])) {
        done()
        resolve({ doc: JSON.parse(docs[0]) })
      }
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`not converged: ${JSON.stringify(describe())}`))
    }, within)
    const done = () => { clearTimeout(timer); waiters.delete(check) }
    waiters.add(check)
    check()
  })
}

/** Answers once the server refused the client's document (PermissionDenied), with the reason. */
function refused ({ cid, within = 20000 }) {
  const client = clients.get(cid)
  if (client === undefined) throw new Error(`no client ${cid}`)
  return new Promise((resolve, reject) => {
    const check = () => {
      if (client.failed !== null) { done(); resolve({ reason: client.failed }) }
    }
    const timer = setTimeout(() => { done(); reject(new Error(`${cid} was not refused`)) }, within)
    const done = () => { clearTimeout(timer); waiters.delete(check) }
    waiters.add(check)
    check()
  })
}

function close ({ cid }) {
  const client = clients.get(cid)
  if (client === undefined) return null
  clients.delete(cid)
  client.view?.destroy()
  client.provider.destroy()
  client.socket.destroy()
  return null
}

// -- the command loop ----------------------------------------------------------------------

const COMMANDS = {
  ping: () => 'pong',
  open,
  script,
  json: ({ cid }) => need(cid).view.state.doc.toJSON(),
  converged,
  refused,
  close,
  exit: () => {
    for (const cid of [...clients.keys()]) close({ cid })
    setImmediate(() => process.exit(0))
    return null
  }
}

const input = readline.createInterface({ input: process.stdin })
input.on('line', async (line) => {
  let id = null
  try {
    const message = JSON.parse(line)
    id = message.id
    const command = COMMANDS[message.cmd]
    if (command === undefined) throw new Error(`unknown command ${message.cmd}`)
    const result = await command(message)
    process.stdout.write(JSON.stringify({ id, ok: true, result: result ?? null }) + '\n')
  } catch (err) {
    process.stdout.write(JSON.stringify({ id, ok: false, error: String(err?.message ?? err) }) + '\n')
  }
})
input.on('close', () => {
  for (const cid of [...clients.keys()]) close({ cid })
  process.exit(0)
})
