// The Hocuspocus reference server for the benchmark: @hocuspocus/server 4.7.0 with no
// extensions and default settings, on 127.0.0.1:$PORT.
import { Server } from '@hocuspocus/server'

const port = Number(process.env.PORT || 1234)
const server = new Server({ port, address: '127.0.0.1', quiet: true, stopOnSignals: true })
await server.listen()
console.log(`@hocuspocus/server listening on 127.0.0.1:${port}`)
