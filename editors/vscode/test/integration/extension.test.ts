// The built extension (out/main.js) activated against a stand-in `vscode`
// module (fake_vscode.ts) and the real `cria` binary: vscode-languageclient
// starts the server, the status-bar item follows the load, documents sync,
// the registered inline provider returns a suggestion carrying cria.accepted,
// and the commands (toggle, restart, check document) work.
//
// Like server.test.ts it needs the binary (CRIA_BIN) and the model
// smollm2-135m-instruct, and fails without them.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';

import { FakeDocument, FakeEditor, FakeVscode, InlineCompletionItem, InlineCompletionList, Position, Range, Uri, extensionContext } from './fake_vscode';

const EXTENSION_ROOT = path.join(__dirname, '../../..');
const BIN = path.resolve(EXTENSION_ROOT, process.env.CRIA_BIN ?? '../../target/debug/cria');
const BUNDLE = path.join(EXTENSION_ROOT, 'out', 'main.js');
const MODEL = 'smollm2-135m-instruct';
const LOAD_TIMEOUT_MS = 180_000;

interface Extension {
    activate(context: unknown): Promise<void>;
    deactivate(): Promise<void>;
}

type InlineResult = InlineCompletionItem[] | InlineCompletionList | undefined | null;

function until<T>(what: string, timeoutMs: number, check: () => T | undefined, context: () => string): Promise<T> {
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
            } else if (Date.now() - started > timeoutMs) {
                reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`));
            } else {
                setTimeout(tick, 20);
            }
        };
        tick();
    });
}

describe('the extension in a stand-in VS Code, with the real server', { timeout: LOAD_TIMEOUT_MS + 120_000 }, () => {
    const fake = new FakeVscode(path.join(EXTENSION_ROOT, 'package.json'));
    let restore: (() => void) | undefined;
    let ext: Extension | undefined;
    const doc = new FakeDocument(Uri.file('/tmp/cria-vscode-test/ext.py'), 'python', 'def add(a, b):\n    return a + b\n');
    const token = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };

    const bar = () => {
        assert.equal(fake.statusBarItems.length, 1, 'one status-bar item');
        return fake.statusBarItems[0];
    };
    const context = () =>
        `status bar: ${JSON.stringify(fake.statusBarItems[0]?.history)}\nmessages: ${JSON.stringify(fake.messages)}\n` +
        `--- output (tail) ---\n${fake.output.join('').slice(-3000)}`;
    /** Waits for the status bar to match; an error on it ends the wait at once unless it is what is awaited. */
    const waitForBar = (what: string, re: RegExp, timeoutMs = 30_000, errorsEnd = true) =>
        until(
            what,
            timeoutMs,
            () => {
                const text = bar().text;
                if (re.test(text)) {
                    return text;
                }
                if (errorsEnd && text.startsWith('$(error)')) {
                    throw new Error(`the status bar shows an error while waiting for ${what}\n${context()}`);
                }
                return undefined;
            },
            context,
        );

    async function suggest(triggerKind: 0 | 1): Promise<InlineCompletionItem[] | undefined> {
        assert.equal(fake.inlineProviders.length, 1, 'one inline provider');
        // While the server warms the document's prompt its answers may be empty.
        await until('warming to end', 60_000, () => (bar().text.includes('warming') ? undefined : true), context);
        const position = doc.positionAt(doc.getText().length);
        const result = (await fake.inlineProviders[0].provider.provideInlineCompletionItems(
            doc,
            position,
            { triggerKind, selectedCompletionInfo: undefined },
            token,
        )) as InlineResult;
        if (result === undefined || result === null) {
            return undefined;
        }
        return Array.isArray(result) ? result : result.items;
    }

    after(async () => {
        await ext?.deactivate();
        restore?.();
    });

    test('activates: starts the server from cria.serverPath and shows the load in the status bar', { timeout: LOAD_TIMEOUT_MS + 10_000 }, async () => {
        assert.ok(fs.existsSync(BIN), `the cria binary is missing at ${BIN}: build it or set CRIA_BIN`);
        assert.ok(fs.existsSync(BUNDLE), `${BUNDLE} is missing: npm run bundle`);
        fake.user.set('cria.serverPath', BIN);
        fake.user.set('cria.model', MODEL);
        fake.user.set('cria.latencyBudgetMs', 30_000);
        fake.user.set('cria.logLevel', 'info');
        restore = fake.install();
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        ext = require(BUNDLE) as Extension;
        await ext.activate(extensionContext(EXTENSION_ROOT));

        await waitForBar('the model to be ready', new RegExp(`^\\$\\(sparkle\\) ${MODEL}$`), LOAD_TIMEOUT_MS);
        const history = bar().history;
        assert.ok(history.some((t) => t.startsWith('$(loading~spin)')), JSON.stringify(history));
        assert.equal(bar().visible, true);
        assert.equal(bar().command, 'cria.showLog');
        assert.deepEqual(fake.messages.filter((m) => m.kind === 'error'), []);
        for (const c of ['cria.toggle', 'cria.restartServer', 'cria.stopServer', 'cria.showLog', 'cria.triggerSuggestion', 'cria.checkDocumentSync', 'cria.accepted']) {
            assert.ok(fake.commands.has(c), `command ${c} registered`);
        }
        assert.equal(fake.completionProviders.length, 1);
    });

    test('documents sync through the client, emoji included', async () => {
        fake.open(doc);
        const end = () => doc.positionAt(doc.getText().length);
        fake.edit(doc, new Range(new Position(0, 0), new Position(0, 0)), '# 🦀 sums and products\n');
        fake.edit(doc, new Range(new Position(0, 5), new Position(0, 9)), 'adds');
        for (const ch of '\n\ndef mul(a, b):\n    """Multiply two numbers."""\n    return ') {
            fake.edit(doc, new Range(end(), end()), ch);
        }
        // The editor becomes the active one: the extension sends cria/prefetch, which the server takes quietly.
        fake.activate(new FakeEditor(doc, end()));
        await fake.commands.get('cria.checkDocumentSync')!();
        const last = fake.messages[fake.messages.length - 1];
        assert.equal(last.kind, 'info', context());
        assert.match(last.text, /matches/);
    });

    test('the inline provider returns a suggestion with cria.accepted, and accepting it reaches the server', { timeout: 60_000 }, async (t) => {
        const items = await suggest(1);
        assert.ok(items && items.length > 0, `no suggestion\n${context()}`);
        const item = items[0];
        const text = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
        t.diagnostic(`suggestion: ${JSON.stringify(text)}`);
        assert.ok(text.trim().length > 0);
        assert.equal(item.command?.command, 'cria.accepted');
        assert.deepEqual(item.command?.arguments, [{ uri: doc.uri.toString(), languageId: 'python', text }]);
        // VS Code runs the item's command on acceptance; the client sends it to the server.
        const answer = await fake.commands.get('cria.accepted')!(...(item.command?.arguments ?? []));
        assert.equal(answer, null);
        await waitForBar('latency in the status bar', new RegExp(`^\\$\\(sparkle\\) ${MODEL} · \\d+(\\.\\d)? m?s`));
        // The plain completion the server also offers is not shown in VS Code.
        const plain = await fake.completionProviders[0].provider.provideCompletionItems(doc, new Position(0, 0), { triggerKind: 0 }, token);
        assert.equal(plain, undefined);
    });

    test('toggle: off stops suggestions as you type, not those asked for', { timeout: 60_000 }, async () => {
        await fake.commands.get('cria.toggle')!();
        assert.equal(fake.setting('cria.enable'), false);
        assert.equal(bar().text, '$(circle-slash) cria: off');
        assert.equal(await suggest(1), undefined);
        const asked = await suggest(0);
        assert.ok(asked && asked.length > 0, 'an explicit trigger still gets a suggestion');
        await fake.commands.get('cria.toggle')!();
        assert.equal(fake.setting('cria.enable'), true);
        assert.match(bar().text, /^\$\(sparkle\)/);
    });

    test('settings: a language switched off gets nothing; a bad value is reported by the server', async () => {
        fake.setUser('cria.enabledLanguages', { python: false });
        assert.equal(await suggest(0), undefined);
        fake.setUser('cria.enabledLanguages', undefined);
        fake.setUser('cria.maxTokens', 'lots');
        const error = await until(
            'the server to report the bad maxTokens',
            10_000,
            () => fake.messages.find((m) => m.kind === 'error' && m.text.includes('maxTokens')),
            context,
        );
        assert.match(error.text, /keeping the previous value/);
        fake.setUser('cria.maxTokens', undefined);
    });

    test('restart: a new server loads the model again', { timeout: LOAD_TIMEOUT_MS + 10_000 }, async () => {
        const before = bar().history.length;
        await fake.commands.get('cria.restartServer')!();
        await waitForBar('the model to be ready again', new RegExp(`^\\$\\(sparkle\\) ${MODEL}$`), LOAD_TIMEOUT_MS);
        const since = bar().history.slice(before);
        assert.ok(since.some((t) => t.startsWith('$(loading~spin)')), JSON.stringify(since));
        assert.equal(fake.inlineProviders.length, 1, 'the old client’s provider is gone');
        assert.ok(fake.commands.has('cria.accepted'));
        assert.deepEqual(fake.messages.filter((m) => m.kind === 'error' && !m.text.includes('maxTokens')), []);
    });

    test('a missing binary shows an error in the status bar', async () => {
        fake.setUser('cria.serverPath', '/nonexistent/cria');
        await waitForBar('the error', /^\$\(error\) cria: error$/);
        assert.ok(fake.messages.some((m) => m.kind === 'error' && m.text.includes('/nonexistent/cria')), context());
        // Setting a good path again starts the server.
        fake.setUser('cria.serverPath', BIN);
        await waitForBar('the model to be ready again', new RegExp(`^\\$\\(sparkle\\) ${MODEL}$`), LOAD_TIMEOUT_MS, false);
    });

    test('deactivate stops the server', async () => {
        await ext!.deactivate();
        ext = undefined;
        assert.equal(bar().text, '$(stop-circle) cria: stopped');
    });
});
