// When to send `cria/prefetch`, so the server computes a document's prompt
// before the first suggestion is asked for: when a document becomes the
// active editor, right after its didOpen, when the model gets ready, and
// when the cursor settles after moving (not while typing: typing asks for
// suggestions anyway).
//
// Pure logic: the VS Code objects are seen through the few fields used, and
// `ctx.ts` feeds the events in and sends the notification.

/** Quiet time after a cursor move, and the least time between two prefetches of one document. */
export const PREFETCH_DEBOUNCE_MS = 250;

/** `vscode.TextEditorSelectionChangeKind`. */
export const SelectionKind = { Keyboard: 1, Mouse: 2, Command: 3 } as const;

export interface Cursor {
    line: number;
    character: number;
}

/** The part of a `vscode.TextDocument` read here. */
export interface PrefetchDocument {
    uri: { toString(): string };
    languageId: string;
    version: number;
}

/** The part of a `vscode.TextEditor` read here. */
export interface PrefetchEditor<D extends PrefetchDocument = PrefetchDocument> {
    document: D;
    selection: { active: Cursor };
}

/** What the prefetcher asks of the extension. */
export interface PrefetchHost<D extends PrefetchDocument> {
    activeEditor(): PrefetchEditor<D> | undefined;
    /** Whether the server wants the document (its language is enabled). */
    served(document: D): boolean;
    /** Whether to prefetch at all now: suggestions on, the model ready. */
    wanted(): boolean;
    send(document: D, cursor: Cursor): void;
}

export class Prefetcher<D extends PrefetchDocument = PrefetchDocument> {
    /** Documents the server has (didOpen sent, no didClose yet), by URI. */
    private readonly open = new Set<string>();
    /** When (`Date.now()`), at which version and where each document was last prefetched. */
    private readonly lastSent = new Map<string, { at: number; version: number } & Cursor>();
    /** Each document's version and cursor line at its last selection change, to tell typing from moving. */
    private readonly seen = new Map<string, { version: number; line: number }>();
    private timer: ReturnType<typeof setTimeout> | undefined;

    constructor(private readonly host: PrefetchHost<D>) {}

    /** After didOpen was sent: the visible editor's document is prefetched at once. */
    opened(document: D): void {
        this.open.add(document.uri.toString());
        const editor = this.host.activeEditor();
        if (editor !== undefined && editor.document.uri.toString() === document.uri.toString()) {
            this.remember(editor);
            this.sendOrDefer(editor);
        }
    }

    /** After didClose. */
    closed(document: D): void {
        const uri = document.uri.toString();
        this.open.delete(uri);
        this.lastSent.delete(uri);
        this.seen.delete(uri);
    }

    /** `window.onDidChangeActiveTextEditor`. */
    activeChanged(editor: PrefetchEditor<D> | undefined): void {
        if (editor === undefined) {
            return;
        }
        this.remember(editor);
        this.sendOrDefer(editor);
    }

    /**
     * `window.onDidChangeTextEditorSelection`: a click or a command, or the
     * cursor going to another line without a text change, prefetches once
     * the cursor stays put for PREFETCH_DEBOUNCE_MS. Typing does not.
     */
    selectionChanged(editor: PrefetchEditor<D>, kind: number | undefined): void {
        const uri = editor.document.uri.toString();
        const before = this.seen.get(uri);
        this.remember(editor);
        const active = this.host.activeEditor();
        if (active === undefined || active.document.uri.toString() !== uri) {
            return;
        }
        const pointed = kind === SelectionKind.Mouse || kind === SelectionKind.Command;
        const changedLine =
            before !== undefined && before.version === editor.document.version && before.line !== editor.selection.active.line;
        if (pointed || changedLine) {
            this.schedule(editor.document, PREFETCH_DEBOUNCE_MS);
        }
    }

    /** The model just became ready: prefetch the active editor's document. */
    ready(): void {
        const editor = this.host.activeEditor();
        if (editor !== undefined) {
            this.sendOrDefer(editor);
        }
    }

    /** The server stopped: it has no documents any more. */
    reset(): void {
        this.dispose();
        this.open.clear();
        this.lastSent.clear();
    }

    dispose(): void {
        clearTimeout(this.timer);
        this.timer = undefined;
    }

    private remember(editor: PrefetchEditor<D>): void {
        this.seen.set(editor.document.uri.toString(), { version: editor.document.version, line: editor.selection.active.line });
    }

    /**
     * Sends now, or when the document's last prefetch is PREFETCH_DEBOUNCE_MS
     * old; a repeat of that last prefetch within the interval is dropped.
     */
    private sendOrDefer(editor: PrefetchEditor<D>): void {
        const document = editor.document;
        const uri = document.uri.toString();
        if (!this.open.has(uri) || !this.host.served(document) || !this.host.wanted()) {
            return;
        }
        const { line, character } = editor.selection.active;
        const last = this.lastSent.get(uri);
        if (last !== undefined && Date.now() - last.at < PREFETCH_DEBOUNCE_MS) {
            const repeat = last.version === document.version && last.line === line && last.character === character;
            if (!repeat) {
                this.schedule(document, PREFETCH_DEBOUNCE_MS - (Date.now() - last.at));
            }
            return;
        }
        clearTimeout(this.timer);
        this.timer = undefined;
        this.lastSent.set(uri, { at: Date.now(), version: document.version, line, character });
        this.host.send(document, { line, character });
    }

    /**
     * One timer for the active document: when it fires, the document must
     * still be the active one, unedited; the cursor is read then.
     */
    private schedule(document: D, delayMs: number): void {
        clearTimeout(this.timer);
        const uri = document.uri.toString();
        const version = document.version;
        this.timer = setTimeout(() => {
            this.timer = undefined;
            const editor = this.host.activeEditor();
            if (editor !== undefined && editor.document.uri.toString() === uri && editor.document.version === version) {
                this.sendOrDefer(editor);
            }
        }, delayMs);
    }
}
