// A stand-in for the `vscode` module, enough for the extension and
// vscode-languageclient to activate, start the real server, sync documents
// and ask for inline completions in plain Node. What the extension and the
// client use is implemented (documents, events, settings, commands, the
// status-bar item, the output channel, provider registration, the few
// classes the converters build); anything else resolves to an inert stand-in
// so unused features can still be constructed. VS Code itself cannot run here.

import * as fs from 'node:fs';
import Module from 'node:module';
import * as path from 'node:path';

import { TextDocument as LspDocument } from 'vscode-languageserver-textdocument';

type Listener<T> = (e: T) => unknown;

export class Disposable {
    constructor(private readonly fn: () => void = () => undefined) {}
    static from(...items: { dispose(): unknown }[]): Disposable {
        return new Disposable(() => items.forEach((i) => i.dispose()));
    }
    dispose(): void {
        this.fn();
    }
}

export class EventEmitter<T> {
    private listeners = new Set<Listener<T>>();
    readonly event = (listener: Listener<T>, thisArg?: unknown, disposables?: Disposable[]): Disposable => {
        const bound: Listener<T> = (e) => listener.call(thisArg, e);
        this.listeners.add(bound);
        const d = new Disposable(() => this.listeners.delete(bound));
        disposables?.push(d);
        return d;
    };
    fire(e: T): void {
        for (const l of [...this.listeners]) {
            l(e);
        }
    }
    dispose(): void {
        this.listeners.clear();
    }
}

export class Position {
    constructor(
        readonly line: number,
        readonly character: number,
    ) {}
}

export class Range {
    readonly start: Position;
    readonly end: Position;
    constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
        if (typeof a === 'number') {
            this.start = new Position(a, b as number);
            this.end = new Position(c!, d!);
        } else {
            this.start = a;
            this.end = b as Position;
        }
    }
}

export class Uri {
    constructor(
        readonly scheme: string,
        readonly authority: string,
        readonly path: string,
        readonly query = '',
        readonly fragment = '',
    ) {}
    static file(p: string): Uri {
        return new Uri('file', '', p);
    }
    static parse(s: string): Uri {
        const u = new URL(s);
        return new Uri(u.protocol.slice(0, -1), u.host, decodeURIComponent(u.pathname), u.search.slice(1), u.hash.slice(1));
    }
    get fsPath(): string {
        return this.path;
    }
    with(change: Partial<Pick<Uri, 'scheme' | 'authority' | 'path' | 'query' | 'fragment'>>): Uri {
        return new Uri(
            change.scheme ?? this.scheme,
            change.authority ?? this.authority,
            change.path ?? this.path,
            change.query ?? this.query,
            change.fragment ?? this.fragment,
        );
    }
    toString(): string {
        return `${this.scheme}://${this.authority}${encodeURI(this.path)}`;
    }
    toJSON(): unknown {
        return { scheme: this.scheme, path: this.path };
    }
}

export class SnippetString {
    constructor(readonly value: string) {}
}

export class MarkdownString {
    isTrusted: unknown;
    constructor(
        readonly value = '',
        readonly supportThemeIcons = false,
    ) {}
}

export class ThemeColor {
    constructor(readonly id: string) {}
}

export class InlineCompletionItem {
    filterText?: string;
    constructor(
        public insertText: string | SnippetString,
        public range?: Range,
        public command?: { command: string; title: string; arguments?: unknown[] },
    ) {}
}

export class InlineCompletionList {
    constructor(public items: InlineCompletionItem[]) {}
}

export class CancellationTokenSource {
    private readonly emitter = new EventEmitter<void>();
    readonly token = { isCancellationRequested: false, onCancellationRequested: this.emitter.event };
    cancel(): void {
        this.token.isCancellationRequested = true;
        this.emitter.fire();
    }
    dispose(): void {
        this.emitter.dispose();
    }
}

/** A text document whose edits behave as VS Code's (the LSP reference implementation). */
export class FakeDocument {
    private doc: LspDocument;
    isClosed = false;
    readonly isUntitled = false;
    readonly isDirty = false;
    readonly eol = 1;
    constructor(
        readonly uri: Uri,
        readonly languageId: string,
        text: string,
    ) {
        this.doc = LspDocument.create(uri.toString(), languageId, 1, text);
    }
    get fileName(): string {
        return this.uri.fsPath;
    }
    get version(): number {
        return this.doc.version;
    }
    get lineCount(): number {
        return this.doc.lineCount;
    }
    getText(range?: Range): string {
        return this.doc.getText(range);
    }
    positionAt(offset: number): Position {
        const p = this.doc.positionAt(offset);
        return new Position(p.line, p.character);
    }
    offsetAt(p: Position): number {
        return this.doc.offsetAt(p);
    }
    /** Applies one edit and returns the change event VS Code would fire. */
    edit(range: Range, text: string): unknown {
        const rangeOffset = this.doc.offsetAt(range.start);
        const rangeLength = this.doc.offsetAt(range.end) - rangeOffset;
        this.doc = LspDocument.update(this.doc, [{ range, text }], this.doc.version + 1);
        return { document: this, contentChanges: [{ range, rangeOffset, rangeLength, text }], reason: undefined };
    }
}

/** A text editor: a document and the cursor in it. */
export class FakeEditor {
    selection: { active: Position; anchor: Position };
    constructor(
        readonly document: FakeDocument,
        cursor = new Position(0, 0),
    ) {
        this.selection = { active: cursor, anchor: cursor };
    }
}

/** Anything not implemented: callable, constructible, every property another stand-in. */
function standIn(name: string): unknown {
    return new Proxy(function () {}, {
        get(_t, prop) {
            if (prop === 'then') {
                return undefined;
            }
            if (prop === Symbol.toPrimitive) {
                return () => name;
            }
            return standIn(`${name}.${String(prop)}`);
        },
        apply() {
            return standIn(`${name}()`);
        },
        construct() {
            return standIn(`new ${name}`) as object;
        },
    });
}

/** A shallow object whose missing properties are stand-ins. */
function withFallback<T extends object>(name: string, impl: T): T {
    return new Proxy(impl, {
        get(target, prop, receiver) {
            if (prop in target || typeof prop === 'symbol' || prop === 'then' || prop === 'toJSON') {
                return Reflect.get(target, prop, receiver);
            }
            return standIn(`${name}.${String(prop)}`);
        },
    });
}

export interface StatusBarItem {
    text: string;
    /** Every text it showed, in order. */
    history: string[];
    tooltip: MarkdownString | string | undefined;
    command: unknown;
    backgroundColor: ThemeColor | undefined;
    name: string;
    visible: boolean;
}

interface Provider {
    selector: unknown;
    provider: Record<string, (...args: unknown[]) => unknown>;
}

/** The state of the fake editor, for the test to drive and inspect. */
export class FakeVscode {
    /** Setting values the user set, by full key (`cria.model`). */
    readonly user = new Map<string, unknown>();
    readonly defaults = new Map<string, unknown>();
    readonly commands = new Map<string, (...args: unknown[]) => unknown>();
    readonly executed: string[] = [];
    readonly messages: { kind: string; text: string }[] = [];
    readonly output: string[] = [];
    readonly statusBarItems: StatusBarItem[] = [];
    readonly inlineProviders: Provider[] = [];
    readonly completionProviders: Provider[] = [];
    readonly textDocuments: FakeDocument[] = [];
    readonly onDidOpen = new EventEmitter<FakeDocument>();
    readonly onDidChange = new EventEmitter<unknown>();
    readonly onDidClose = new EventEmitter<FakeDocument>();
    readonly onDidChangeConfiguration = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();
    readonly onDidChangeActiveTextEditor = new EventEmitter<FakeEditor | undefined>();
    readonly onDidChangeTextEditorSelection = new EventEmitter<{ textEditor: FakeEditor; selections: unknown[]; kind: number | undefined }>();
    readonly module: unknown;
    /** vscode.window: set `activeTextEditor` on it. */
    readonly window: Record<string, unknown> = {};

    constructor(packageJson: string) {
        const pkg = JSON.parse(fs.readFileSync(packageJson, 'utf8'));
        for (const [k, v] of Object.entries(pkg.contributes.configuration.properties as Record<string, { default: unknown }>)) {
            this.defaults.set(k, v.default);
        }
        this.module = this.build();
    }

    setting(key: string): unknown {
        const d = this.defaults.get(key);
        const u = this.user.get(key);
        if (u === undefined) {
            return d;
        }
        // VS Code merges object settings with their defaults.
        if (typeof d === 'object' && d !== null && !Array.isArray(d) && typeof u === 'object' && u !== null && !Array.isArray(u)) {
            return { ...d, ...u };
        }
        return u;
    }

    /** Changes a user setting and fires onDidChangeConfiguration, as the settings editor does. */
    setUser(key: string, value: unknown): void {
        if (value === undefined) {
            this.user.delete(key);
        } else {
            this.user.set(key, value);
        }
        this.onDidChangeConfiguration.fire({
            affectsConfiguration: (section) => key === section || key.startsWith(section + '.') || section.startsWith(key + '.'),
        });
    }

    open(doc: FakeDocument): void {
        this.textDocuments.push(doc);
        this.onDidOpen.fire(doc);
    }

    edit(doc: FakeDocument, range: Range, text: string): void {
        this.onDidChange.fire(doc.edit(range, text));
    }

    /** Makes an editor the active one, as switching tabs does. */
    activate(editor: FakeEditor | undefined): void {
        this.window.activeTextEditor = editor;
        this.window.visibleTextEditors = editor === undefined ? [] : [editor];
        this.onDidChangeActiveTextEditor.fire(editor);
    }

    /** Moves an editor's cursor; `kind` as `TextEditorSelectionChangeKind` (1 keyboard, 2 mouse, 3 command). */
    moveCursor(editor: FakeEditor, to: Position, kind: number | undefined): void {
        editor.selection = { active: to, anchor: to };
        this.onDidChangeTextEditorSelection.fire({ textEditor: editor, selections: [editor.selection], kind });
    }

    /** Types text at an editor's cursor: the edit, then the selection change VS Code fires for it. */
    type(editor: FakeEditor, text: string): void {
        const at = editor.selection.active;
        this.edit(editor.document, new Range(at, at), text);
        this.moveCursor(editor, editor.document.positionAt(editor.document.offsetAt(at) + text.length), 1);
    }

    private build(): unknown {
        const configuration = (section?: string) => {
            const full = (key: string) => (section ? `${section}.${key}` : key);
            return {
                get: (key: string, fallback?: unknown) => this.setting(full(key)) ?? fallback,
                has: (key: string) => this.setting(full(key)) !== undefined,
                inspect: (key: string) => ({ key: full(key), defaultValue: this.defaults.get(full(key)), globalValue: this.user.get(full(key)) }),
                update: async (key: string, value: unknown) => this.setUser(full(key), value),
            };
        };
        const message = (kind: string) => async (text: string) => {
            this.messages.push({ kind, text });
            return undefined;
        };
        const register = (list: Provider[]) => (selector: unknown, provider: Provider['provider']) => {
            const entry = { selector, provider };
            list.push(entry);
            return new Disposable(() => list.splice(list.indexOf(entry), 1));
        };
        const never = new EventEmitter<unknown>().event;
        const outputChannel = (name: string) =>
            withFallback(`OutputChannel(${name})`, {
                name,
                logLevel: 3,
                onDidChangeLogLevel: never,
                append: (s: string) => this.output.push(s),
                appendLine: (s: string) => this.output.push(s + '\n'),
                replace: () => undefined,
                clear: () => undefined,
                trace: (s: string) => this.output.push(`[trace] ${s}\n`),
                debug: (s: string) => this.output.push(`[debug] ${s}\n`),
                info: (s: string) => this.output.push(`[info] ${s}\n`),
                warn: (s: string) => this.output.push(`[warn] ${s}\n`),
                error: (s: unknown) => this.output.push(`[error] ${String(s)}\n`),
                show: () => this.executed.push(`show output ${name}`),
                hide: () => undefined,
                dispose: () => undefined,
            });
        Object.assign(this.window, {
            activeTextEditor: undefined,
            visibleTextEditors: [],
            tabGroups: { all: [], onDidChangeTabs: never, onDidChangeTabGroups: never },
            onDidChangeActiveTextEditor: this.onDidChangeActiveTextEditor.event,
            onDidChangeTextEditorSelection: this.onDidChangeTextEditorSelection.event,
            onDidChangeVisibleTextEditors: never,
            createOutputChannel: outputChannel,
            createStatusBarItem: () => {
                let text = '';
                const item: StatusBarItem & { show(): void; hide(): void; dispose(): void } = {
                    get text() {
                        return text;
                    },
                    set text(value: string) {
                        if (value !== text) {
                            item.history.push(value);
                        }
                        text = value;
                    },
                    history: [],
                    tooltip: undefined,
                    command: undefined,
                    backgroundColor: undefined,
                    name: '',
                    visible: false,
                    show: () => (item.visible = true),
                    hide: () => (item.visible = false),
                    dispose: () => (item.visible = false),
                };
                this.statusBarItems.push(item);
                return item;
            },
            showErrorMessage: message('error'),
            showWarningMessage: message('warning'),
            showInformationMessage: message('info'),
            setStatusBarMessage: (text: string) => {
                this.messages.push({ kind: 'status', text });
                return new Disposable();
            },
            withProgress: async (_options: unknown, task: (p: unknown, t: unknown) => Promise<unknown>) =>
                task({ report: () => undefined }, new CancellationTokenSource().token),
        });
        return withFallback('vscode', {
            version: '1.99.0',
            env: withFallback('vscode.env', { appName: 'Visual Studio Code', language: 'en', machineId: 'test', sessionId: 'test' }),
            Disposable,
            EventEmitter,
            Position,
            Range,
            Uri,
            SnippetString,
            MarkdownString,
            ThemeColor,
            InlineCompletionItem,
            InlineCompletionList,
            CancellationTokenSource,
            CancellationError: class CancellationError extends Error {},
            StatusBarAlignment: { Left: 1, Right: 2 },
            ConfigurationTarget: { Global: 1, Workspace: 2, WorkspaceFolder: 3 },
            InlineCompletionTriggerKind: { Invoke: 0, Automatic: 1 },
            TextEditorSelectionChangeKind: { Keyboard: 1, Mouse: 2, Command: 3 },
            ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
            LogLevel: { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 },
            workspace: withFallback('vscode.workspace', {
                workspaceFolders: undefined,
                textDocuments: this.textDocuments,
                notebookDocuments: [],
                getConfiguration: configuration,
                onDidChangeConfiguration: this.onDidChangeConfiguration.event,
                onDidOpenTextDocument: this.onDidOpen.event,
                onDidChangeTextDocument: this.onDidChange.event,
                onDidCloseTextDocument: this.onDidClose.event,
                onDidSaveTextDocument: never,
                onWillSaveTextDocument: never,
                onDidChangeWorkspaceFolders: never,
                onDidOpenNotebookDocument: never,
                onDidChangeNotebookDocument: never,
                onDidSaveNotebookDocument: never,
                onDidCloseNotebookDocument: never,
            }),
            window: withFallback('vscode.window', this.window),
            languages: withFallback('vscode.languages', {
                match: (selector: unknown, doc: FakeDocument) => {
                    const filters = (Array.isArray(selector) ? selector : [selector]) as { scheme?: string; language?: string }[];
                    return filters.some((f) => (!f.scheme || f.scheme === doc.uri.scheme) && (!f.language || f.language === doc.languageId)) ? 10 : 0;
                },
                registerInlineCompletionItemProvider: register(this.inlineProviders),
                registerCompletionItemProvider: register(this.completionProviders),
            }),
            commands: withFallback('vscode.commands', {
                registerCommand: (id: string, fn: (...args: unknown[]) => unknown) => {
                    if (this.commands.has(id)) {
                        throw new Error(`command '${id}' already exists`); // as VS Code does
                    }
                    this.commands.set(id, fn);
                    return new Disposable(() => this.commands.delete(id));
                },
                executeCommand: async (id: string, ...args: unknown[]) => {
                    this.executed.push(id);
                    const fn = this.commands.get(id);
                    return fn === undefined ? undefined : fn(...args);
                },
            }),
        });
    }

    /** Makes `require('vscode')` return this fake until the returned function is called. */
    install(): () => void {
        const mod = Module as unknown as { _load: (request: string, parent: unknown, isMain: boolean) => unknown };
        const original = mod._load;
        const fake = this.module;
        mod._load = function (this: unknown, request: string, parent: unknown, isMain: boolean) {
            return request === 'vscode' ? fake : original.call(this, request, parent, isMain);
        };
        return () => {
            mod._load = original;
        };
    }
}

/** The extension context activate() gets. */
export function extensionContext(extensionPath: string): unknown {
    return withFallback('ExtensionContext', {
        subscriptions: [] as Disposable[],
        extensionPath,
        extensionUri: Uri.file(extensionPath),
        asAbsolutePath: (p: string) => path.join(extensionPath, p),
    });
}
