// Drives the real `cria` binary over stdio the way the extension's client
// does: the same client capabilities (computed by the installed
// vscode-languageclient), the same initializationOptions (from the
// extension's own settings mapping), progress and status handling, document
// sync with incremental edits, an inline completion and the accepted command.
//
// Needs the binary (env CRIA_BIN, default ../../target/debug/cria) and the
// model smollm2-135m-instruct in $CRIA_HOME/models. Without either it fails:
// it never skips.

import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';

import { MessageConnection, StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import {
    DidChangeConfigurationNotification,
    DidChangeTextDocumentNotification,
    DidCloseTextDocumentNotification,
    DidOpenTextDocumentNotification,
    ExecuteCommandRequest,
    ExitNotification,
    InitializeRequest,
    InitializeResult,
    InitializedNotification,
    InlineCompletionItem,
    InlineCompletionRequest,
    InlineCompletionTriggerKind,
    MessageType,
    Position,
    ShowMessageNotification,
    ShowMessageParams,
    ShutdownRequest,
    TextDocumentContentChangeEvent,
    WorkDoneProgress,
    WorkDoneProgressBegin,
    WorkDoneProgressCreateRequest,
    WorkDoneProgressEnd,
    WorkDoneProgressReport,
} from 'vscode-languageserver-protocol';
import { TextDocument } from 'vscode-languageserver-textdocument';

import * as lsp_ext from '../../src/lsp_ext';
import { serverSettings } from '../../src/settings';
import { INITIAL_STATUS, StatusState, onClientState, onLoadProgress, onServerStatus, render } from '../../src/status';
import { languageClientCapabilities } from './client_capabilities';

const EXTENSION_ROOT = path.join(__dirname, '../../..');
const BIN = path.resolve(EXTENSION_ROOT, process.env.CRIA_BIN ?? '../../target/debug/cria');
const MODEL = 'smollm2-135m-instruct';
const LOAD_TIMEOUT_MS = 180_000;
const LOG = path.join(EXTENSION_ROOT, 'test-out', 'cria-server.log');

/** The settings as VS Code would hand them over: package.json defaults, with the test's model and a generous budget (CI machines are slow). */
function settings(overrides: Record<string, unknown> = {}): ReturnType<typeof serverSettings> {
    const pkg = JSON.parse(fs.readFileSync(path.join(EXTENSION_ROOT, 'package.json'), 'utf8'));
    const props = pkg.contributes.configuration.properties as Record<string, { default: unknown }>;
    const values: Record<string, unknown> = Object.fromEntries(Object.entries(props).map(([k, v]) => [k.replace(/^cria\./, ''), v.default]));
    Object.assign(values, { model: MODEL, latencyBudgetMs: 30_000, logLevel: 'info' }, overrides);
    return serverSettings((key) => values[key], os.homedir());
}

/** Waits for a condition on what has arrived, up to a deadline. */
function until<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
        const started = Date.now();
        const tick = () => {
            let value: T | undefined;
            try {
                value = check();
            } catch (e) {
                reject(e);
                return;
            }
            if (value !== undefined) {
                resolve(value);
            } else if (serverGone !== undefined) {
                reject(new Error(`${serverGone} while waiting for ${what}\n--- server log (tail) ---\n${logTail()}`));
            } else if (Date.now() - started > timeoutMs) {
                reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n--- server log (tail) ---\n${logTail()}`));
            } else {
                setTimeout(tick, 20);
            }
        };
        tick();
    });
}

let serverLog = '';
/** Why the server is not there (never started, exited), once it is not. */
let serverGone: string | undefined = 'the server was not started';
function logTail(): string {
    return serverLog.slice(-3000);
}

describe(`cria over stdio, as the VS Code client drives it (${BIN})`, { timeout: LOAD_TIMEOUT_MS + 120_000 }, () => {
    let proc: ChildProcess;
    let conn: MessageConnection;
    let init: InitializeResult;
    let exited: Promise<number | null>;
    const statuses: lsp_ext.CriaStatus[] = [];
    const messages: ShowMessageParams[] = [];
    const created: string[] = [];
    const progress: { token: string; value: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd }[] = [];
    /** The status bar, fed exactly as ctx.ts feeds it. */
    let bar: StatusState = INITIAL_STATUS;

    const uri = 'file:///tmp/cria-vscode-test/fib.py';
    let doc = TextDocument.create(
        uri,
        'python',
        1,
        ['def add(a, b):', '    return a + b', '', '', 'def mul(a, b):', '    return a * b', ''].join('\n'),
    );

    /** Fails the test at once when an earlier step left no server to talk to. */
    function live(): void {
        assert.equal(serverGone, undefined, serverGone);
        assert.ok(conn !== undefined && init !== undefined, 'the server did not answer initialize');
    }

    /** Applies edits to the reference document and sends them in one didChange, as VS Code does. */
    async function change(...edits: { range: { start: Position; end: Position }; text: string }[]): Promise<void> {
        const changes: TextDocumentContentChangeEvent[] = edits;
        doc = TextDocument.update(doc, changes, doc.version + 1);
        await conn.sendNotification(DidChangeTextDocumentNotification.type, {
            textDocument: { uri, version: doc.version },
            contentChanges: changes,
        });
    }

    /** The UTF-16 position of the n-th occurrence of a string. */
    function find(needle: string, nth = 0): Position {
        const text = doc.getText();
        let at = -1;
        for (let i = 0; i <= nth; i++) {
            at = text.indexOf(needle, at + 1);
            assert.notEqual(at, -1, `"${needle}" not in the document`);
        }
        return doc.positionAt(at);
    }

    /** Waits while the latest cria/status says a prompt is being warmed (answers may be empty meanwhile). */
    function warmed(): Promise<true> {
        return until('warming to end', 60_000, () => (statuses[statuses.length - 1]?.state === 'warming' ? undefined : true));
    }

    function after_(needle: string, nth = 0): Position {
        const p = find(needle, nth);
        return { line: p.line, character: p.character + needle.length };
    }

    test('the binary starts and answers initialize with the client capabilities of vscode-languageclient', async () => {
        assert.ok(
            fs.existsSync(BIN),
            `the cria binary is missing at ${BIN}: build it (cargo build -p cria --bin cria) or point CRIA_BIN at it`,
        );
        fs.accessSync(BIN, fs.constants.X_OK);
        fs.mkdirSync(path.dirname(LOG), { recursive: true });
        const log = fs.createWriteStream(LOG);
        proc = spawn(BIN, ['lsp'], { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
        serverGone = undefined;
        exited = new Promise((resolve) =>
            proc.on('exit', (code, signal) => {
                serverGone = `the server exited (code ${code}, signal ${signal})`;
                resolve(code);
            }),
        );
        proc.stderr!.on('data', (chunk: Buffer) => {
            serverLog += chunk.toString();
            log.write(chunk);
        });
        conn = createMessageConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
        conn.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
            const token = String(params.token);
            created.push(token);
            // vscode-languageclient's ProgressPart listens to the token from here on.
            conn.onProgress(WorkDoneProgress.type, params.token, (value) => {
                progress.push({ token, value });
                if (token.startsWith(lsp_ext.LOAD_PROGRESS_PREFIX)) {
                    bar = onLoadProgress(bar, value);
                }
            });
        });
        conn.onNotification(lsp_ext.status, (s) => {
            statuses.push(s);
            bar = onServerStatus(bar, s);
        });
        conn.onNotification(ShowMessageNotification.type, (m) => {
            messages.push(m);
        });
        conn.listen();

        bar = onClientState(bar, 'starting');
        const { capabilities, version } = languageClientCapabilities();
        assert.deepEqual(capabilities.general?.positionEncodings, ['utf-16'], `vscode-languageclient ${version}`);
        assert.ok(capabilities.textDocument?.inlineCompletion, `vscode-languageclient ${version} offers inline completion`);
        assert.ok(capabilities.window?.workDoneProgress);

        init = await conn.sendRequest(InitializeRequest.type, {
            processId: process.pid,
            clientInfo: { name: 'Visual Studio Code', version: '1.99.0' },
            locale: 'en',
            rootPath: null,
            rootUri: null,
            capabilities,
            initializationOptions: settings(),
            trace: 'off',
            workspaceFolders: null,
        });
        await conn.sendNotification(InitializedNotification.type, {});
        bar = onClientState(bar, 'running');
    });

    after(async () => {
        if (proc && proc.exitCode === null) {
            proc.kill();
        }
        conn?.dispose();
    });

    test('initialize: utf-16 positions, incremental sync, inline completion, cria.accepted', () => {
        live();
        const caps = init.capabilities;
        assert.equal(caps.positionEncoding, 'utf-16');
        const sync = caps.textDocumentSync;
        assert.ok(typeof sync === 'object' && sync.change === 2 && sync.openClose === true, JSON.stringify(sync));
        assert.ok(caps.inlineCompletionProvider, 'inlineCompletionProvider');
        assert.ok(caps.executeCommandProvider?.commands.includes(lsp_ext.ACCEPTED_COMMAND));
        assert.equal(init.serverInfo?.name, 'cria');
    });

    test(`the model loads with progress and cria/status, and the status bar follows`, { timeout: LOAD_TIMEOUT_MS + 5_000 }, async () => {
        live();
        const ready = await until(`cria/status ready for ${MODEL}`, LOAD_TIMEOUT_MS, () => {
            const failed = statuses.find((s) => s.state === 'error');
            if (failed) {
                throw new Error(`the model failed to load: ${failed.message}\n(is ${MODEL} in $CRIA_HOME/models? scripts/fetch-models)`);
            }
            return statuses.find((s) => s.state === 'ready');
        });
        assert.equal(ready.model, MODEL);
        assert.ok(statuses[0].state === 'loading', `first status: ${JSON.stringify(statuses[0])}`);
        assert.equal(created.length, 1);
        assert.ok(created[0].startsWith(lsp_ext.LOAD_PROGRESS_PREFIX), created[0]);
        const kinds = progress.map((p) => p.value.kind);
        assert.equal(kinds[0], 'begin');
        assert.equal(kinds[kinds.length - 1], 'end');
        assert.equal(bar.phase, 'ready');
        assert.equal(render(bar, true).text, `$(sparkle) ${MODEL}`);
        assert.deepEqual(messages.filter((m) => m.type === MessageType.Error), []);
    });

    test('didOpen and incremental didChange (emoji included) leave the server with the editor’s text', async () => {
        live();
        await conn.sendNotification(DidOpenTextDocumentNotification.type, {
            textDocument: { uri, languageId: doc.languageId, version: doc.version, text: doc.getText() },
        });
        // A comment with an astral-plane emoji (two UTF-16 units) at the top.
        await change({ range: { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } }, text: '# 🦀 crab maths\n' });
        // An edit after the emoji on the same line: positions count UTF-16 units.
        const crab = find('crab');
        assert.equal(crab.character, 5);
        await change({ range: { start: crab, end: after_('crab') }, text: "Ferris's" });
        // Two changes in one notification, applied in order: an emoji at the end of
        // line 0, then a rename on line 1.
        await change(
            { range: { start: after_('maths'), end: after_('maths') }, text: ' 🎉' },
            { range: { start: find('add'), end: after_('add') }, text: 'plus' },
        );
        // A ZWJ sequence and a BMP symbol in the middle of a line, then text after them.
        await change({ range: { start: after_('Ferris'), end: after_('Ferris') }, text: ' ✨👩‍💻' });
        await change({ range: { start: after_('👩‍💻'), end: after_('👩‍💻') }, text: ' and' });
        // A deletion across lines: the two blank lines between the functions become one.
        await change({ range: { start: after_('a + b'), end: find('def mul') }, text: '\n\n' });
        // Type a function character by character at the end, as keystrokes arrive.
        let at = doc.positionAt(doc.getText().length);
        for (const ch of '\n\ndef fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n    return ') {
            await change({ range: { start: at, end: at }, text: ch });
            at = doc.positionAt(doc.getText().length);
        }
        // A typo and its correction: a selection replaced, then a backspace.
        await change({ range: { start: find('n-th'), end: after_('n-th') }, text: 'nth' });
        await change({ range: { start: find('nth'), end: after_('nth') }, text: 'n-thh' });
        const extra = find('h Fib');
        await change({ range: { start: extra, end: { line: extra.line, character: extra.character + 1 } }, text: '' });

        const expected = [
            "# 🦀 Ferris ✨👩‍💻 and's maths 🎉",
            'def plus(a, b):',
            '    return a + b',
            '',
            'def mul(a, b):',
            '    return a * b',
            '',
            '',
            'def fibonacci(n):',
            '    """Return the n-th Fibonacci number."""',
            '    if n < 2:',
            '        return n',
            '    return ',
        ].join('\n');
        assert.equal(doc.getText(), expected, 'the reference document');
        const text = await conn.sendRequest(lsp_ext.documentText, { uri });
        assert.equal(text, expected);
    });

    test('cria/prefetch at the cursor is taken quietly; warming, if any, ends in ready', { timeout: 90_000 }, async () => {
        live();
        const before = statuses.length;
        const position = doc.positionAt(doc.getText().length);
        const params: lsp_ext.PrefetchParams = { textDocument: { uri }, position };
        await conn.sendNotification(lsp_ext.prefetch, params);
        assert.equal(await conn.sendRequest(lsp_ext.documentText, { uri }), doc.getText(), 'the server still answers');
        await warmed();
        for (const s of statuses.slice(before).filter((s) => s.state === 'warming')) {
            assert.equal(s.warming?.uri, uri, JSON.stringify(s));
            assert.ok(s.warming.percentage >= 0 && s.warming.percentage <= 100, JSON.stringify(s));
        }
        assert.deepEqual(messages.filter((m) => m.type === MessageType.Error || m.type === MessageType.Warning), []);
    });

    test('textDocument/inlineCompletion returns a suggestion, and the status bar shows its numbers', { timeout: 60_000 }, async (t) => {
        live();
        await warmed();
        const before = statuses.length;
        const position = doc.positionAt(doc.getText().length);
        const result = await conn.sendRequest(InlineCompletionRequest.type, {
            textDocument: { uri },
            position,
            context: { triggerKind: InlineCompletionTriggerKind.Invoked },
        });
        const items: InlineCompletionItem[] = result === null ? [] : Array.isArray(result) ? result : result.items;
        assert.ok(items.length > 0, `no suggestion at ${JSON.stringify(position)}\n--- server log (tail) ---\n${logTail()}`);
        const insert = items[0].insertText;
        const text = typeof insert === 'string' ? insert : insert.value;
        assert.ok(text.trim().length > 0, `empty suggestion ${JSON.stringify(items[0])}`);
        t.diagnostic(`suggestion: ${JSON.stringify(items[0])}`);
        if (items[0].range) {
            assert.deepEqual(items[0].range.start, position);
        }

        const stats = await until('cria/status after the completion', 10_000, () =>
            statuses.slice(before).find((s) => s.lastLatencyMs !== undefined),
        );
        // On a busy machine the answer may have come from a quick prompt
        // while the full one warms: the status says so, then ends in ready.
        assert.ok(stats.state === 'ready' || stats.state === 'warming', JSON.stringify(stats));
        if (stats.state === 'warming') {
            await until('ready after the warm-up', 60_000, () => (statuses[statuses.length - 1]?.state === 'ready' ? true : undefined));
        }
        assert.ok(stats.lastLatencyMs! <= 30_000 + 1_000, `latency ${stats.lastLatencyMs}`);
        assert.ok((stats.promptTokens ?? 0) > 0);
        const shown = render(bar, true).text;
        assert.match(shown, new RegExp(`^\\$\\(sparkle\\) ${MODEL} · \\d+(\\.\\d)? m?s( · [\\d.]+ tok/s)?$`), shown);

        // Accepting it runs cria.accepted on the server with what the middleware attaches.
        const command = lsp_ext.acceptedCommand({ uri, languageId: doc.languageId, text });
        const answer = await conn.sendRequest(ExecuteCommandRequest.type, { command: command.command, arguments: command.arguments });
        assert.equal(answer, null);
    });

    test('didChangeConfiguration: good settings apply quietly, a bad value is reported', async () => {
        live();
        await conn.sendNotification(DidChangeConfigurationNotification.type, { settings: settings({ maxTokens: 24 }) });
        await conn.sendNotification(DidChangeConfigurationNotification.type, { settings: { latencyBudgetMs: 'fast' } });
        const error = await until('a showMessage error about latencyBudgetMs', 10_000, () =>
            messages.find((m) => m.type === MessageType.Error && m.message.includes('latencyBudgetMs')),
        );
        assert.match(error.message, /keeping the previous value/);
        assert.equal(messages.filter((m) => m.type === MessageType.Error).length, 1, JSON.stringify(messages));
        // Same model: no reload.
        assert.equal(created.length, 1);
    });

    test('didClose, then shutdown and exit end the process cleanly', { timeout: 20_000 }, async () => {
        live();
        await conn.sendNotification(DidCloseTextDocumentNotification.type, { textDocument: { uri } });
        assert.equal(await conn.sendRequest(lsp_ext.documentText, { uri }), null);
        await conn.sendRequest(ShutdownRequest.type);
        await conn.sendNotification(ExitNotification.type);
        const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 10_000).unref())]);
        assert.equal(code, 0);
    });
});
