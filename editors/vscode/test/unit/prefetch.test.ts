import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';

import { Cursor, PREFETCH_DEBOUNCE_MS, PrefetchDocument, PrefetchEditor, Prefetcher, SelectionKind } from '../../src/prefetch';

/** A document whose version goes up on every edit, as VS Code's do. */
class Doc implements PrefetchDocument {
    version = 1;
    constructor(
        readonly uri: string,
        readonly languageId = 'python',
    ) {}
}

class Editor implements PrefetchEditor<Doc> {
    selection: { active: Cursor };
    constructor(
        readonly document: Doc,
        line = 0,
        character = 0,
    ) {
        this.selection = { active: { line, character } };
    }
    /** Moves the cursor (no text change). */
    move(line: number, character: number): this {
        this.selection = { active: { line, character } };
        return this;
    }
    /** Types a character: a new version and the cursor one further (or on the next line after a newline). */
    type(text: string): this {
        this.document.version++;
        const { line, character } = this.selection.active;
        this.selection = { active: text === '\n' ? { line: line + 1, character: 0 } : { line, character: character + text.length } };
        return this;
    }
}

function setup(o: { wanted?: () => boolean; served?: (d: Doc) => boolean } = {}) {
    const sent: { uri: string; line: number; character: number }[] = [];
    let active: Editor | undefined;
    const prefetcher = new Prefetcher<Doc>({
        activeEditor: () => active,
        served: o.served ?? ((d) => d.languageId !== 'markdown'),
        wanted: o.wanted ?? (() => true),
        send: (document, cursor) => sent.push({ uri: document.uri, ...cursor }),
    });
    return {
        sent,
        prefetcher,
        /** Makes an editor active and fires the event, as VS Code does. */
        activate(editor: Editor | undefined) {
            active = editor;
            prefetcher.activeChanged(editor);
        },
        setActive(editor: Editor | undefined) {
            active = editor;
        },
    };
}

describe('Prefetcher', () => {
    beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
    afterEach(() => mock.timers.reset());

    test('the active editor is prefetched when it changes, once its document is open on the server', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'), 3, 4);
        const b = new Editor(new Doc('file:///b.py'), 7, 0);
        t.prefetcher.opened(a.document);
        t.prefetcher.opened(b.document);
        t.activate(a);
        assert.deepEqual(t.sent, [{ uri: 'file:///a.py', line: 3, character: 4 }]);
        t.activate(b);
        assert.deepEqual(t.sent[1], { uri: 'file:///b.py', line: 7, character: 0 });
        t.activate(undefined);
        assert.equal(t.sent.length, 2);
    });

    test('right after didOpen for the visible editor; a document the server does not have is not prefetched', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'), 1, 2);
        // VS Code may show the editor before the client has sent didOpen.
        t.activate(a);
        assert.deepEqual(t.sent, []);
        t.prefetcher.opened(a.document);
        assert.deepEqual(t.sent, [{ uri: 'file:///a.py', line: 1, character: 2 }]);
        // didOpen of a document in the background: nothing.
        t.prefetcher.opened(new Doc('file:///other.py'));
        assert.equal(t.sent.length, 1);
        // Closed: no longer served.
        t.prefetcher.closed(a.document);
        t.activate(a);
        assert.equal(t.sent.length, 1);
    });

    test('not for languages switched off, nor while the model is not ready', () => {
        let ready = false;
        const t = setup({ wanted: () => ready });
        const md = new Editor(new Doc('file:///a.md', 'markdown'));
        const py = new Editor(new Doc('file:///a.py'));
        t.prefetcher.opened(md.document);
        t.prefetcher.opened(py.document);
        t.activate(md);
        t.activate(py);
        assert.deepEqual(t.sent, []);
        // The model gets ready: the active document is prefetched.
        ready = true;
        t.prefetcher.ready();
        assert.deepEqual(t.sent, [{ uri: 'file:///a.py', line: 0, character: 0 }]);
    });

    test('a click or a command prefetches once the cursor rests for the debounce time', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'));
        t.prefetcher.opened(a.document);
        t.activate(a);
        t.sent.length = 0;
        mock.timers.tick(1000);
        t.prefetcher.selectionChanged(a.move(10, 2), SelectionKind.Mouse);
        mock.timers.tick(100);
        t.prefetcher.selectionChanged(a.move(12, 5), SelectionKind.Mouse);
        mock.timers.tick(PREFETCH_DEBOUNCE_MS - 1);
        assert.deepEqual(t.sent, [], 'not before the cursor rested');
        mock.timers.tick(1);
        assert.deepEqual(t.sent, [{ uri: 'file:///a.py', line: 12, character: 5 }], 'once, where the cursor rests');
        t.prefetcher.selectionChanged(a.move(12, 9), SelectionKind.Command);
        mock.timers.tick(PREFETCH_DEBOUNCE_MS);
        assert.deepEqual(t.sent[1], { uri: 'file:///a.py', line: 12, character: 9 });
    });

    test('moving to another line with the keyboard prefetches; typing does not', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'), 5, 0);
        t.prefetcher.opened(a.document);
        t.activate(a);
        t.sent.length = 0;
        mock.timers.tick(1000);
        // Typing on the line, then a newline: text changes, no prefetch.
        for (const ch of ['x', ' ', '=', '\n', 'y']) {
            t.prefetcher.selectionChanged(a.type(ch), SelectionKind.Keyboard);
            mock.timers.tick(50);
        }
        mock.timers.tick(1000);
        assert.deepEqual(t.sent, [], 'typing');
        // Left and right on the same line: no prefetch.
        t.prefetcher.selectionChanged(a.move(6, 0), SelectionKind.Keyboard);
        mock.timers.tick(1000);
        assert.deepEqual(t.sent, [], 'same line');
        // Down: another line, no text change.
        t.prefetcher.selectionChanged(a.move(7, 0), SelectionKind.Keyboard);
        t.prefetcher.selectionChanged(a.move(8, 0), undefined);
        mock.timers.tick(PREFETCH_DEBOUNCE_MS);
        assert.deepEqual(t.sent, [{ uri: 'file:///a.py', line: 8, character: 0 }], 'arrow down');
    });

    test('typing after a click cancels the pending prefetch', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'));
        t.prefetcher.opened(a.document);
        t.activate(a);
        t.sent.length = 0;
        mock.timers.tick(1000);
        t.prefetcher.selectionChanged(a.move(4, 0), SelectionKind.Mouse);
        mock.timers.tick(100);
        t.prefetcher.selectionChanged(a.type('z'), SelectionKind.Keyboard);
        mock.timers.tick(1000);
        assert.deepEqual(t.sent, []);
    });

    test('a selection change in an editor that is not the active one is ignored', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'));
        const b = new Editor(new Doc('file:///b.py'));
        t.prefetcher.opened(a.document);
        t.prefetcher.opened(b.document);
        t.activate(a);
        t.sent.length = 0;
        mock.timers.tick(1000);
        t.prefetcher.selectionChanged(b.move(3, 3), SelectionKind.Mouse);
        mock.timers.tick(1000);
        assert.deepEqual(t.sent, []);
    });

    test('never more than once per debounce interval per document', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'));
        const b = new Editor(new Doc('file:///b.py'));
        t.prefetcher.opened(a.document);
        t.prefetcher.opened(b.document);
        t.activate(a);
        mock.timers.tick(50);
        t.activate(b);
        mock.timers.tick(50);
        t.activate(a.move(9, 1));
        assert.deepEqual(
            t.sent.map((s) => s.uri),
            ['file:///a.py', 'file:///b.py'],
            'a.py again 100 ms later waits',
        );
        mock.timers.tick(PREFETCH_DEBOUNCE_MS - 100 - 1);
        assert.equal(t.sent.length, 2);
        mock.timers.tick(1);
        assert.deepEqual(t.sent[2], { uri: 'file:///a.py', line: 9, character: 1 });
        // The same editor becoming active twice in a row, cursor unmoved, sends once.
        mock.timers.tick(1000);
        t.activate(b);
        t.activate(b);
        mock.timers.tick(1000);
        assert.equal(t.sent.filter((s) => s.uri === 'file:///b.py').length, 2);
    });

    test('reset forgets the open documents (a new server)', () => {
        const t = setup();
        const a = new Editor(new Doc('file:///a.py'));
        t.prefetcher.opened(a.document);
        t.prefetcher.reset();
        t.activate(a);
        assert.deepEqual(t.sent, []);
    });
});
