// A stand-in for `cria lsp` that the extension's tests script: it answers
// initialize like cria, records every message it gets, answers inline
// completions with what it was told (nothing by default), and sends the
// `cria/status` it is told to. The test drives it through the extension's
// own client, with the command `stub.control` (`workspace/executeCommand`),
// so its orders arrive in line with the editor's notifications.
//
//   node stub_server.js lsp

import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';

import type { CriaStatus } from '../../src/lsp_ext';

/** What `stub.control` takes. */
export type Control =
    /** Every message received so far (method and params). */
    | { op: 'received' }
    /** Sends this `cria/status`. */
    | { op: 'status'; status: CriaStatus }
    /** The insert texts of the next inline completions' items. */
    | { op: 'answer'; items: string[] };

export interface Received {
    method: string;
    params: unknown;
}

export const CONTROL_COMMAND = 'stub.control';

function main(): void {
    const conn = createMessageConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(process.stdout));
    const received: Received[] = [];
    let items: string[] = [];

    conn.onRequest((method, params) => {
        received.push({ method, params });
        switch (method) {
            case 'initialize':
                return {
                    capabilities: {
                        positionEncoding: 'utf-16',
                        textDocumentSync: { openClose: true, change: 2 },
                        inlineCompletionProvider: true,
                        executeCommandProvider: { commands: ['cria.accepted', CONTROL_COMMAND] },
                    },
                    serverInfo: { name: 'cria-stub', version: '0' },
                };
            case 'textDocument/inlineCompletion':
                return { items: items.map((insertText) => ({ insertText })) };
            case 'workspace/executeCommand': {
                const { command, arguments: args } = params as { command: string; arguments?: unknown[] };
                if (command !== CONTROL_COMMAND) {
                    return null;
                }
                const control = args?.[0] as Control;
                switch (control.op) {
                    case 'received':
                        return received;
                    case 'status':
                        void conn.sendNotification('cria/status', control.status);
                        return null;
                    case 'answer':
                        items = control.items;
                        return null;
                }
                return null;
            }
            case 'shutdown':
                return null;
            default:
                return null;
        }
    });
    conn.onNotification((method, params) => {
        received.push({ method, params });
        if (method === 'initialized') {
            void conn.sendNotification('cria/status', { model: 'stub', state: 'loading' });
        } else if (method === 'exit') {
            process.exit(0);
        }
    });
    conn.listen();
}

if (require.main === module) {
    main();
}
