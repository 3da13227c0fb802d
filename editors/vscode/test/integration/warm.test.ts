// Never cold: the built extension (out/main.js), in the stand-in VS Code,
// against a scripted stand-in server (stub_server.ts) instead of cria, so
// the timing of `cria/status` is the test's to choose. It checks the
// `cria/prefetch` notifications (after didOpen once the model is ready, on a
// new active editor, when the cursor settles after a click or a move to
// another line, not while typing, not for switched-off languages), the
// status bar while warming, and the one re-ask after warming or a late answer.
//
// Needs no cria binary or model.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';

import type { CriaStatus, PrefetchParams } from '../../src/lsp_ext';
import { FakeDocument, FakeEditor, FakeVscode, Position, Uri, extensionContext } from './fake_vscode';
import { CONTROL_COMMAND, Control, Received } from './stub_server';

const EXTENSION_ROOT = path.join(__dirname, '../../..');
const BUNDLE = path.join(EXTENSION_ROOT, 'out', 'main.js');
const TRIGGER = 'editor.action.inlineSuggest.trigger';

interface Extension {
    activate(context: unknown): Promise<void>;
    deactivate(): Promise<void>;
}

/** An executable that starts the stub with this Node. */
function stubExecutable(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cria-stub-'));
    const file = path.join(dir, 'cria');
    const script = path.join(__dirname, 'stub_server.js');
    fs.writeFileSync(file, `#!/bin/sh\nexec '${process.execPath}' '${script}' "$@"\n`, { mode: 0o755 });
    return file;
}

function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('prefetch, warming and the re-ask, with a stand-in server', { timeout: 60_000 }, () => {
    const fake = new FakeVscode(path.join(EXTENSION_ROOT, 'package.json'));
    let restore: (() => void) | undefined;
    let ext: Extension | undefined;
    const a = new FakeDocument(Uri.file('/tmp/cria-warm-test/a.py'), 'python', 'import os\n\n\ndef main():\n    pass\n');
    const b = new FakeDocument(Uri.file('/tmp/cria-warm-test/b.py'), 'python', 'x = 1\ny = 2\nz = 3\n');
    const md = new FakeDocument(Uri.file('/tmp/cria-warm-test/notes.md'), 'markdown', '# notes\n');
    const editorA = new FakeEditor(a, new Position(3, 4));
    const editorB = new FakeEditor(b, new Position(1, 0));
    const token = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };

    const bar = () => fake.statusBarItems[0];
    const control = (c: Control) => fake.commands.get(CONTROL_COMMAND)!(c) as Promise<unknown>;
    const status = (s: CriaStatus) => control({ op: 'status', status: s });
    const received = async () => (await control({ op: 'received' })) as Received[];
    /** The prefetches the server got, as `uri line:character`. */
    const prefetches = async () =>
        (await received())
            .filter((m) => m.method === 'cria/prefetch')
            .map((m) => {
                const p = m.params as PrefetchParams;
                return `${path.basename(p.textDocument.uri)} ${p.position.line}:${p.position.character}`;
            });
    const triggers = () => fake.executed.filter((c) => c === TRIGGER).length;

    async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 5_000): Promise<T> {
        const started = Date.now();
        for (;;) {
            const value = await check();
            if (value !== undefined) {
                return value;
            }
            if (Date.now() - started > timeoutMs) {
                throw new Error(`timed out waiting for ${what}; status bar: ${JSON.stringify(bar()?.history)}\n${fake.output.join('').slice(-2000)}`);
            }
            await sleep(20);
        }
    }

    async function suggest(editor: FakeEditor): Promise<unknown[]> {
        const result = (await fake.inlineProviders[0].provider.provideInlineCompletionItems(
            editor.document,
            editor.selection.active,
            { triggerKind: 1, selectedCompletionInfo: undefined },
            token,
        )) as { items: unknown[] } | unknown[] | undefined | null;
        return !result ? [] : Array.isArray(result) ? result : result.items;
    }

    after(async () => {
        await ext?.deactivate();
        restore?.();
    });

    test('activates against the stand-in; nothing is prefetched while the model loads', async () => {
        assert.ok(fs.existsSync(BUNDLE), `${BUNDLE} is missing: npm run bundle`);
        fake.user.set('cria.serverPath', stubExecutable());
        fake.open(a);
        fake.activate(editorA);
        restore = fake.install();
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        ext = require(BUNDLE) as Extension;
        await ext.activate(extensionContext(EXTENSION_ROOT));
        await until('the stub to be running', () => (fake.commands.has(CONTROL_COMMAND) ? true : undefined));
        await until('the loading state', () => (bar().text.startsWith('$(loading~spin) cria: loading stub') ? true : undefined));
        const methods = (await received()).map((m) => m.method);
        assert.ok(methods.includes('textDocument/didOpen'), JSON.stringify(methods));
        assert.deepEqual(await prefetches(), []);
    });

    test('when the model is ready, the active editor is prefetched at its cursor', async () => {
        await status({ model: 'stub', state: 'ready' });
        assert.deepEqual(await until('a prefetch', async () => ((await prefetches()).length > 0 ? prefetches() : undefined)), ['a.py 3:4']);
        assert.equal(bar().text, '$(sparkle) stub');
    });

    test('a click prefetches where the cursor settles; typing does not', async () => {
        fake.moveCursor(editorA, new Position(0, 2), 2);
        await sleep(50);
        fake.moveCursor(editorA, new Position(4, 8), 2);
        await until('the click prefetch', async () => ((await prefetches()).length === 2 ? true : undefined));
        assert.deepEqual((await prefetches())[1], 'a.py 4:8');
        for (const ch of ' # done') {
            fake.type(editorA, ch);
        }
        await sleep(600);
        assert.equal((await prefetches()).length, 2, 'no prefetch while typing');
        // Down to another line with the keyboard.
        fake.moveCursor(editorA, new Position(3, 0), 1);
        await until('the prefetch after a move to another line', async () => ((await prefetches()).length === 3 ? true : undefined));
        assert.deepEqual((await prefetches())[2], 'a.py 3:0');
    });

    test('a new active editor is prefetched at once; a switched-off language is not', async () => {
        fake.open(b);
        fake.open(md);
        await sleep(100);
        assert.equal((await prefetches()).length, 3, 'opening in the background prefetches nothing');
        fake.activate(editorB);
        await until('the prefetch of b.py', async () => ((await prefetches()).length === 4 ? true : undefined));
        assert.deepEqual((await prefetches())[3], 'b.py 1:0');
        fake.activate(new FakeEditor(md));
        await sleep(400);
        assert.equal((await prefetches()).length, 4, 'markdown is off in cria.enabledLanguages');
        fake.activate(editorB);
    });

    test('warming shows in the status bar', async () => {
        await status({ model: 'stub', state: 'warming', warming: { uri: b.uri.toString(), percentage: 40 }, kvCacheMb: 130, kvSlots: 2 });
        await until('warming in the status bar', () => (bar().text === '$(sync~spin) stub · warming 40%' ? true : undefined));
        const tooltip = (bar().tooltip as { value: string }).value;
        assert.match(tooltip, /warming the prompt for `b\.py` 40%/);
        assert.match(tooltip, /KV cache: 2 slots, 130 MB/);
    });

    test('an empty answer while warming is asked again once, when warming ends', async () => {
        assert.deepEqual(await suggest(editorB), []);
        assert.equal(triggers(), 0);
        await status({ model: 'stub', state: 'warming', warming: { uri: b.uri.toString(), percentage: 90 } });
        await sleep(100);
        assert.equal(triggers(), 0, 'still warming');
        await status({ model: 'stub', state: 'ready' });
        await until('the re-ask', () => (triggers() === 1 ? true : undefined));
        await status({ model: 'stub', state: 'ready', lastLatencyMs: 20 });
        await sleep(100);
        assert.equal(triggers(), 1, 'only once');
        // An answer with a suggestion is not asked again.
        await control({ op: 'answer', items: ['print(x)'] });
        await status({ model: 'stub', state: 'warming', warming: { uri: b.uri.toString(), percentage: 10 } });
        assert.equal((await suggest(editorB)).length, 1);
        await status({ model: 'stub', state: 'ready' });
        await sleep(100);
        assert.equal(triggers(), 1);
        await control({ op: 'answer', items: [] });
    });

    test("a suggestion shown is asked again once its document's late answer is cached", async () => {
        await control({ op: 'answer', items: ['    total = 0\n'] });
        assert.equal((await suggest(editorB)).length, 1);
        await status({ model: 'stub', state: 'ready', lastLatencyMs: 250 });
        await status({ model: 'stub', state: 'ready', lateAnswer: { uri: a.uri.toString() } });
        await sleep(100);
        assert.equal(triggers(), 1, 'no late answer for b.py yet');
        await status({ model: 'stub', state: 'ready', lateAnswer: { uri: b.uri.toString() } });
        await until('the re-ask', () => (triggers() === 2 ? true : undefined));
        await status({ model: 'stub', state: 'ready', lateAnswer: { uri: b.uri.toString() } });
        await sleep(100);
        assert.equal(triggers(), 2, 'only once');
        await control({ op: 'answer', items: [] });
    });

    test('no re-ask after the cursor moved', async () => {
        await status({ model: 'stub', state: 'warming', warming: { uri: b.uri.toString(), percentage: 10 } });
        await until('warming', () => (bar().text.includes('warming') ? true : undefined));
        assert.deepEqual(await suggest(editorB), []);
        fake.moveCursor(editorB, new Position(2, 0), 1);
        await status({ model: 'stub', state: 'ready' });
        await until('ready', () => (bar().text === '$(sparkle) stub' ? true : undefined));
        await sleep(100);
        assert.equal(triggers(), 2);
    });

    test('deactivate stops the stand-in', async () => {
        await ext!.deactivate();
        ext = undefined;
        assert.equal(bar().text, '$(stop-circle) cria: stopped');
    });
});
