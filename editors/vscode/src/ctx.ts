// The extension's state: the language client's life cycle, the status-bar
// item, the output channel, and everything to dispose.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as readline from 'node:readline';
import type { Readable } from 'node:stream';
import * as vscode from 'vscode';
import {
    DidChangeConfigurationNotification,
    LanguageClient,
    LanguageClientOptions,
    Middleware,
    RevealOutputChannelOn,
    ServerOptions,
    State,
} from 'vscode-languageclient/node';

import { Config } from './config';
import * as lsp_ext from './lsp_ext';
import { ServerLogParser } from './server_log';
import { resolveServerPath } from './server_path';
import { attachAcceptedCommand, placeAtCursor, wantSuggestion } from './inline';
import { Prefetcher } from './prefetch';
import { Reask, Spot } from './reask';
import { LaunchSettings, languageEnabled, requiresRestart } from './settings';
import {
    ClientState,
    INITIAL_STATUS,
    StatusState,
    TOOLTIP_COMMANDS,
    failed,
    onClientState,
    onLoadProgress,
    onServerStatus,
    render,
} from './status';

/** A file this user may run. */
function isExecutable(p: string): boolean {
    try {
        if (!fs.statSync(p).isFile()) {
            return false;
        }
        if (process.platform !== 'win32') {
            fs.accessSync(p, fs.constants.X_OK);
        }
        return true;
    } catch {
        return false;
    }
}

/** Copies the server's log lines into the output channel at their level. */
function pipeLog(input: Readable, channel: vscode.LogOutputChannel): void {
    const parser = new ServerLogParser();
    readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', (raw: string) => {
        const { level, text } = parser.line(raw);
        channel[level](text);
    });
}

/** Where an editor's cursor is, for the re-ask after warming. */
function spotOf(document: vscode.TextDocument, position: vscode.Position): Spot {
    return { uri: document.uri.toString(), version: document.version, line: position.line, character: position.character };
}

function activeSpot(): Spot | undefined {
    const editor = vscode.window.activeTextEditor;
    return editor === undefined ? undefined : spotOf(editor.document, editor.selection.active);
}

function clientState(state: State): ClientState | 'failed' {
    switch (state) {
        case State.Starting:
            return 'starting';
        case State.Running:
            return 'running';
        case State.StartFailed:
            return 'failed';
        default:
            return 'stopped';
    }
}

export class Ctx implements vscode.Disposable {
    readonly config = new Config();
    readonly outputChannel: vscode.LogOutputChannel;
    private readonly statusBar: vscode.StatusBarItem;
    private readonly disposables: vscode.Disposable[] = [];
    /** Disposables of the current client (its notification handlers). */
    private clientDisposables: vscode.Disposable[] = [];
    private _client: LanguageClient | undefined;
    private status: StatusState = INITIAL_STATUS;
    /** Start, stop and restart run one after the other. */
    private queue: Promise<void> = Promise.resolve();
    /** The launch settings the running server was started with. */
    private launched: LaunchSettings | undefined;
    /** Set while the extension itself stops the server, so that stop is not taken for a crash. */
    private stopping = false;
    /** Sends `cria/prefetch` when the active document or the cursor in it changes. */
    private readonly prefetcher: Prefetcher<vscode.TextDocument>;
    /** Asks once more for a suggestion that came back empty while warming, or with a block's first lines. */
    private readonly reask = new Reask();

    constructor(readonly extension: vscode.ExtensionContext) {
        this.outputChannel = vscode.window.createOutputChannel('cria', { log: true });
        this.statusBar = vscode.window.createStatusBarItem('cria.status', vscode.StatusBarAlignment.Right, 100);
        this.statusBar.name = 'cria';
        this.statusBar.command = 'cria.showLog';
        this.prefetcher = new Prefetcher({
            activeEditor: () => vscode.window.activeTextEditor,
            served: (document) => languageEnabled(this.config.enabledLanguages, document.languageId),
            wanted: () => this.config.enabled && (this.status.phase === 'ready' || this.status.phase === 'warming'),
            send: (document, cursor) => this.sendPrefetch(document, cursor),
        });
        this.disposables.push(
            this.outputChannel,
            this.statusBar,
            this.prefetcher,
            vscode.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)),
            vscode.window.onDidChangeActiveTextEditor((editor) => this.prefetcher.activeChanged(editor)),
            vscode.window.onDidChangeTextEditorSelection((e) => {
                this.prefetcher.selectionChanged(e.textEditor, e.kind);
                this.reask.moved(spotOf(e.textEditor.document, e.textEditor.selection.active));
            }),
        );
        this.updateStatusBar();
        this.statusBar.show();
    }

    /** The running client, if any. */
    get client(): LanguageClient | undefined {
        return this._client;
    }

    log(message: string): void {
        this.outputChannel.info(message);
    }

    /** Starts the server (if it is not running). */
    start(): Promise<void> {
        return this.enqueue(() => this.doStart());
    }

    /** Stops the server. */
    stop(): Promise<void> {
        return this.enqueue(() => this.doStop());
    }

    /** Stops the server and starts a new one, with the current settings. */
    restart(): Promise<void> {
        return this.enqueue(async () => {
            await this.doStop();
            await this.doStart();
        });
    }

    private enqueue(work: () => Promise<void>): Promise<void> {
        const next = this.queue.then(work, work);
        this.queue = next.catch(() => undefined);
        return next;
    }

    private async doStart(): Promise<void> {
        if (this._client !== undefined) {
            return;
        }
        const launch = this.config.launch;
        const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
        const resolved = resolveServerPath(launch.serverPath, {
            platform: process.platform,
            env: process.env,
            home: os.homedir(),
            workspaceFolder: folder?.scheme === 'file' ? folder.fsPath : undefined,
            extensionPath: this.extension.extensionPath,
            isExecutable,
        });
        if ('error' in resolved) {
            this.log(resolved.error);
            this.setStatus(failed(this.status, resolved.error));
            void vscode.window.showErrorMessage(resolved.error, 'Open Settings').then((choice) => {
                if (choice === 'Open Settings') {
                    void vscode.commands.executeCommand('workbench.action.openSettings', 'cria.serverPath');
                }
            });
            return;
        }
        this.log(`starting ${resolved.path} (from ${resolved.source})`);
        const serverOptions: ServerOptions = {
            command: resolved.path,
            // No `transport`: with TransportKind.stdio the client appends `--stdio`,
            // which `cria lsp` does not take; stdio is what it speaks anyway.
            args: ['lsp'],
            options: { env: { ...process.env, ...launch.serverEnv } },
        };
        const clientOptions: LanguageClientOptions = {
            documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
            outputChannel: this.outputChannel,
            revealOutputChannelOn: RevealOutputChannelOn.Never,
            // Computed at each start, so a restart sends the current settings.
            initializationOptions: () => this.config.server,
            middleware: this.middleware(),
            stdioOptions: { stdout: pipeLog, stderr: pipeLog },
        };
        const client = new LanguageClient('cria', 'cria', serverOptions, clientOptions);
        this._client = client;
        this.launched = launch;
        this.clientDisposables.push(
            client.onDidChangeState((e) => this.onClientStateChanged(e.newState)),
            client.onNotification(lsp_ext.status, (s) => this.onServerStatus(s)),
        );
        try {
            await client.start();
        } catch (e) {
            const message = `cria: the server did not start: ${e instanceof Error ? e.message : String(e)}`;
            this.log(message);
            this.setStatus(failed(this.status, message));
            await this.disposeClient();
        }
    }

    private async doStop(): Promise<void> {
        this.stopping = true;
        try {
            await this.disposeClient();
        } finally {
            this.stopping = false;
        }
        this.setStatus({ phase: 'stopped' });
    }

    private async disposeClient(): Promise<void> {
        const client = this._client;
        this._client = undefined;
        this.launched = undefined;
        this.prefetcher.reset();
        for (const d of this.clientDisposables) {
            d.dispose();
        }
        this.clientDisposables = [];
        if (client !== undefined) {
            try {
                await client.dispose(2000);
            } catch (e) {
                this.log(`stopping the server: ${e instanceof Error ? e.message : String(e)}`);
            }
        }
    }

    /** The client's hooks: status from load progress, suggestions gated by the settings and reported when accepted. */
    private middleware(): Middleware {
        return {
            handleWorkDoneProgress: (token, params, next) => {
                if (typeof token === 'string' && token.startsWith(lsp_ext.LOAD_PROGRESS_PREFIX)) {
                    this.setStatus(onLoadProgress(this.status, params));
                    // The status-bar item shows the load; the client's own
                    // window progress only gets the end, to clean up.
                    if (params.kind === 'end') {
                        next(token, params);
                    }
                    return;
                }
                next(token, params);
            },
            provideInlineCompletionItems: async (document, position, context, token, next) => {
                const wanted = wantSuggestion({
                    enabled: this.config.enabled,
                    invoked: context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke,
                    languages: this.config.enabledLanguages,
                    languageId: document.languageId,
                });
                if (!wanted) {
                    return undefined;
                }
                const result = await next(document, position, context, token);
                const items = !result ? [] : Array.isArray(result) ? result : result.items;
                placeAtCursor(items, () => new vscode.Range(position, position));
                if (items.length > 0 && this.serverHasCommand(lsp_ext.ACCEPTED_COMMAND)) {
                    attachAcceptedCommand(items, { uri: document.uri.toString(), languageId: document.languageId });
                }
                if (!token.isCancellationRequested) {
                    this.reask.answered(spotOf(document, position), items.length === 0, this.status.phase === 'warming');
                }
                return result;
            },
            // Documents the server has, and the visible one prefetched right after its didOpen.
            didOpen: async (document, next) => {
                await next(document);
                this.prefetcher.opened(document);
            },
            didClose: async (document, next) => {
                this.prefetcher.closed(document);
                await next(document);
            },
            // The server also answers textDocument/completion with the same
            // suggestion, for editors without inline completion. In VS Code it
            // would show twice and cost a second model run per keystroke.
            provideCompletionItem: () => undefined,
        };
    }

    private sendPrefetch(document: vscode.TextDocument, cursor: { line: number; character: number }): void {
        const client = this._client;
        if (client === undefined || !client.isRunning()) {
            return;
        }
        const params: lsp_ext.PrefetchParams = { textDocument: { uri: client.code2ProtocolConverter.asUri(document.uri) }, position: cursor };
        client.sendNotification(lsp_ext.prefetch, params).catch((err: unknown) => this.log(`sending cria/prefetch: ${String(err)}`));
    }

    /** A `cria/status`: the status bar; a prefetch when the model got ready; the re-ask when warming ended. */
    private onServerStatus(s: lsp_ext.CriaStatus): void {
        const wasReady = this.status.phase === 'ready' || this.status.phase === 'warming';
        this.setStatus(onServerStatus(this.status, s));
        if (!wasReady && this.status.phase === 'ready') {
            this.prefetcher.ready();
        }
        if (this.reask.status(s.state, activeSpot(), s.lateAnswer?.uri) !== undefined) {
            void vscode.commands.executeCommand('editor.action.inlineSuggest.trigger');
        }
    }

    private serverHasCommand(command: string): boolean {
        const commands = this._client?.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
        return commands.includes(command);
    }

    private onClientStateChanged(state: State): void {
        const s = clientState(state);
        if (s === 'failed') {
            this.setStatus(failed(this.status, 'cria: the server failed to start; see the log.'));
            return;
        }
        if (s === 'stopped' && !this.stopping && this.status.phase !== 'error') {
            this.setStatus(failed(this.status, 'cria: the server stopped unexpectedly; see the log. Run "cria: Restart Server" to start it again.'));
            return;
        }
        this.setStatus(onClientState(this.status, s));
    }

    private onConfigurationChanged(e: vscode.ConfigurationChangeEvent): void {
        if (this.config.affectsClient(e)) {
            this.updateStatusBar();
        }
        if (this._client === undefined) {
            // A server that could not start gets another try with the new settings.
            if (this.status.phase === 'error' && this.config.affectsLaunch(e)) {
                void this.start();
            }
            return;
        }
        if (this.config.affectsLaunch(e) && this.launched !== undefined && requiresRestart(this.launched, this.config.launch)) {
            this.log('settings changed that need a new server: restarting');
            void this.restart();
            return;
        }
        if (this.config.affectsServer(e)) {
            const settings = this.config.server;
            this.launched = { ...(this.launched ?? this.config.launch), model: this.config.launch.model };
            void this._client
                .sendNotification(DidChangeConfigurationNotification.type, { settings })
                .catch((err: unknown) => this.log(`sending settings: ${String(err)}`));
        }
    }

    private setStatus(state: StatusState): void {
        this.status = state;
        this.updateStatusBar();
    }

    private updateStatusBar(): void {
        const r = render(this.status, this.config.enabled);
        this.statusBar.text = r.text;
        const tooltip = new vscode.MarkdownString(r.tooltip, true);
        tooltip.isTrusted = { enabledCommands: [...TOOLTIP_COMMANDS] };
        this.statusBar.tooltip = tooltip;
        this.statusBar.backgroundColor =
            r.severity === 'error'
                ? new vscode.ThemeColor('statusBarItem.errorBackground')
                : r.severity === 'warning'
                  ? new vscode.ThemeColor('statusBarItem.warningBackground')
                  : undefined;
    }

    async dispose(): Promise<void> {
        await this.stop();
        for (const d of this.disposables) {
            d.dispose();
        }
    }
}
